import json
import subprocess
import sys

import pytest
import torch
import trimesh
import yaml
from PIL import Image

from dream3d.cli.main import main
from dream3d.pipelines import outputs
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from tests.fast_run import FAST_RUN as FAST

FILES = [
    "checkpoint.pt",
    "config.yaml",
    "mesh.glb",
    "mesh.obj",
    "mesh.ply",
    "metrics.json",
    "progress.png",
    "turntable.gif",
    "turntable.mp4",
    "views.png",
]


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "fast.yaml"
    path.write_text(yaml.safe_dump(FAST))
    return str(path)


def _subprocess(*args):
    """`dream3d run ARGS` as a user runs it: a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "dream3d.cli.main", "run", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prompt", "a purple xylophone"], "not in the toy world's vocabulary (objects: chair"),
        (["--prompt", "a red chair", "--steps", "0"], "must be a positive integer, got 0"),
        (["--prompt", "a red chair", "--guidance", "vsd"], "invalid choice: 'vsd'"),
        (["--prompt", "a red chair", "--particles", "0"], "--particles: must be a positive"),
        (["--prompt", "a red chair", "--set", "particles=0"], "particles must be >= 1, got 0"),
        (["--prompt", "a red chair", "--preset", "fastest"], "unknown preset 'fastest'"),
        (["--prompt", "a red chair", "--weights", "/no/such.safetensors"], "no tiny teacher"),
        (["--prompt", "a purple elephant"], "not in the toy world's vocabulary"),
        (["--prompt", "a red chair", "--cfg", "-5"], "cfg scale must be a finite number >= 0"),
        (["--prompt", "a red chair", "--cfg", "nan"], "guidance.cfg_scale: expected a finite"),
        (["--prompt", "a red chair", "--set", "guidance.cfg_scale=nan"], "a finite number"),
        (["--prompt", "a red chair", "--set", "train.steps=banana"], "train.steps: expected a"),
        (["--prompt", "a red chair", "--set", "nerf.render.samplez=3"], "unknown setting samplez"),
        (["--prompt", "a red chair", "--set", "nerf.render.samples=0"], "samples must be >= 1"),
        (["--prompt", "a red chair", "--set", "steps"], "--set expects KEY.PATH=VALUE"),
        (["--prompt", "a red chair", "--guidance", "sds", "--fake-steps", "2"], "fake_steps"),
        (["--prompt", "a red chair", "--teacher", "oracle", "--weights", "x"], "weights"),
        (["--config", "/no/such/config.yaml"], "no config file at /no/such/config.yaml"),
        ([], "the prompt is missing"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, words, tmp_path):
    result = cli("run", "--out", str(tmp_path), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr


@pytest.mark.parametrize(
    "setting, words",
    [
        ({"nerf": {"field": {"activation": "relu"}}}, "nerf.field.activation: 'relu' is not one"),
        ({"guidance": {"name": "ikl", "anneal": "cosine"}}, "guidance.anneal: 'cosine' is not"),
        ({"train": {"lr_typo": 0.1}}, "train: unknown setting lr_typo"),
        ({"train": {"steps": "banana"}}, "train.steps: expected a whole number, got 'banana'"),
        ({"train": {"steps": 0}}, "train: steps must be >= 1, got 0"),
        ({"train": 5}, "train: expected a mapping of settings, got 5"),
        ({"guidance": {"name": "vsd"}}, "guidance: unknown name 'vsd'; choose one of: sds, ikl"),
        ({"nerf": {"render": {"samples": 2.5}}}, "nerf.render.samples: expected a whole number"),
        ({"nerf": {"cameras": {"fov": 0}}}, "nerf.cameras.fov must be in (0, 180), got 0.0"),
    ],
)
def test_bad_preset_settings_are_one_line_and_exit_2(cli, setting, words, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**FAST, **setting}))
    result = cli(
        "run", "--prompt", "a red chair", "--preset", str(path), "--out", str(tmp_path / "o")
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    assert str(path) in lines[0] and not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize(
    "text, words",
    [("train: [1, 2\n", "is not valid yaml (line 2)"), ("- 1\n", "expected a mapping")],
)
def test_a_malformed_preset_is_one_line_and_exit_2(cli, text, words, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = cli(
        "run", "--prompt", "a red chair", "--preset", str(path), "--out", str(tmp_path / "o")
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr


def test_bad_weights_and_a_corrupt_checkpoint_are_one_line_and_lose_nothing(cli, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(bytes(range(256)) * 8)
    result = cli(
        "run", "--prompt", "a red chair", "--weights", str(junk), "--out", str(tmp_path / "o")
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and str(junk) in lines[0], result.stderr
    assert not (tmp_path / "o" / "config.yaml").exists()
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    result = cli("run", "--prompt", "a red chair", "--resume", "--out", str(out))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "checkpoint" in lines[0], result.stderr
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint at all"


def test_resume_without_checkpoint_and_cuda_without_cuda(cli, tmp_path):
    result = cli("run", "--prompt", "a red chair", "--resume", "--out", str(tmp_path))
    assert result.returncode == 2 and "--resume: no checkpoint at" in result.stderr
    if not torch.cuda.is_available():
        result = cli("run", "--prompt", "a red chair", "--device", "cuda", "--out", str(tmp_path))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "no CUDA device" in lines[0]


# What seed 0 of "a red cube" reaches in the FAST run's 20 steps with the oracle teacher
# (measured; CPU, 2 threads). The untrained NeRF of seed 0 (the blob) has silhouette IoU
# 0.4267 on the held-out views: 20 steps of either guidance gain ~0.05 on it.
REACHED = {
    "sds": {"silhouette_iou": 0.4806, "occupancy_iou": 0.3446},
    "ikl": {"silhouette_iou": 0.4742, "occupancy_iou": 0.3377},
}
BLOB_SILHOUETTE_IOU = 0.4267


def test_compare_runs_each_guidance_for_20_steps_and_every_output_is_written(
    preset, tmp_path, capsys
):
    args = ["compare", "--prompt", "a red cube", "--teacher", "oracle", "--preset", preset]
    assert main(args + ["--seeds", "1", "--out", str(tmp_path), "--quiet"]) == 0
    truths = {}
    for guidance in ("sds", "ikl"):
        out = tmp_path / f"{guidance}-0"
        assert sorted(p.name for p in out.iterdir()) == FILES
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["guidance"] == guidance and metrics["steps"] == 20
        truth = truths[guidance] = metrics["truth"]
        assert truth["closest_variant"] == "cube" and truth["asked_colour"] == "red"
        for score, reached in REACHED[guidance].items():  # a regression moves these by more
            assert truth[score] == pytest.approx(reached, abs=0.015), score
        assert truth["silhouette_iou"] > BLOB_SILHOUETTE_IOU + 0.03  # it learnt the cube
        config = yaml.safe_load((out / "config.yaml").read_text())
        assert config["guidance"]["name"] == guidance and config["train"]["seed"] == 0
        assert config["guidance"]["cfg_scale"] == {"sds": 20.0, "ikl": 7.5}[guidance]
        mesh = trimesh.load(out / "mesh.ply", process=False)
        assert len(mesh.vertices) == metrics["mesh"]["vertices"] > 0
        assert mesh.visual.vertex_colors.shape[1] == 4
    assert truths["sds"] != truths["ikl"]  # two guidances, two NeRFs
    names = {p.name for p in tmp_path.iterdir()}
    assert {"compare.png", "compare.mp4", "compare.gif", "compare.md", "compare.csv"} <= names
    table = (tmp_path / "compare.md").read_text().splitlines()
    # header, rule, a row per run, a mean per guidance; then the intervals (one seed: none)
    assert table[5].startswith("| ikl | mean |") and "| sds | 0 |" in table[2]
    sil = json.loads((tmp_path / "ikl-0" / "metrics.json").read_text())["truth"]["silhouette_iou"]
    assert f"| a red cube | ikl | 1 | {sil:.3f} [{sil:.3f}, {sil:.3f}] |" in "\n".join(table)
    with Image.open(tmp_path / "compare.gif") as gif:
        assert gif.n_frames == FAST["outputs"]["video_frames"] and gif.width == 2 * gif.height
    # config.yaml holds the whole tree: --config repeats the run, to the same numbers
    again = tmp_path / "again"
    config = tmp_path / "ikl-0" / "config.yaml"
    assert main(["run", "--config", str(config), "--out", str(again), "--quiet"]) == 0
    assert (again / "config.yaml").read_text() == config.read_text()
    first = json.loads((tmp_path / "ikl-0" / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert second["truth"] == first["truth"] and second["final_loss"] == first["final_loss"]


def test_compare_gives_each_guidance_the_settings_it_has(preset, tmp_path, monkeypatch):
    from dream3d.pipelines import compare
    from dream3d.pipelines.sweep import Outcome

    seen = []

    def run_all(jobs, progress, ray, cpus):
        seen.extend(c for c, _ in jobs)
        return [Outcome(c, out, {}, None) for c, out in jobs]

    monkeypatch.setattr(compare, "run_all", run_all)
    monkeypatch.setattr(compare, "row_of", lambda metrics: {"guidance": "x"})
    for name in ("side_by_side_views", "side_by_side_video"):
        monkeypatch.setattr(compare, name, lambda *a: None)
    monkeypatch.setattr(compare, "write_table", lambda *a: (tmp_path / "compare.md").touch())
    args = ["compare", "--prompt", "a red cube", "--preset", preset, "--seeds", "2", "--quiet"]
    args += ["--out", str(tmp_path), "--cfg", "30", "--set", "guidance.fake_steps=3"]
    assert main(args) == 0
    assert [(c.guidance.name, c.train.seed) for c in seen] == [
        ("sds", 0),
        ("ikl", 0),
        ("sds", 1),
        ("ikl", 1),
    ]
    assert all(c.guidance.cfg_scale == 30 for c in seen) and seen[1].guidance.fake_steps == 3
    assert seen[0].train.steps == FAST["train"]["steps"]


def _tiny_teacher(path):
    """A random small tiny teacher with the run's captions cached (no MiniLM needed)."""
    torch.manual_seed(0)
    config = TinyConfig(size=32, block_out_channels=(8, 16), head_dim=8)
    teacher = TinyTeacher(config, encoder=lambda p: torch.randn(len(p), 384))
    teacher.add_captions(
        [f"a blue sphere, {v} view" for v in ("front", "side", "back", "overhead")]
    )
    teacher.save(path)
    return str(path)


@pytest.mark.parametrize("particles", ["1", "2"])
def test_resume_after_a_crash_ends_where_the_uninterrupted_run_ends(
    particles, preset, tmp_path, monkeypatch
):
    """IKL with the tiny teacher (fake = its copy, shared by the particles): crash after the
    step-10 checkpoint, resume."""
    for name in ("write_outputs", "write_particle_outputs"):
        monkeypatch.setattr(outputs, name, lambda *a, **k: {})  # training only
    weights = _tiny_teacher(tmp_path / "tiny.safetensors")
    base = ["run", "--prompt", "a blue sphere", "--guidance", "ikl", "--teacher", "tiny"]
    base += ["--weights", weights]
    base += ["--preset", preset, "--quiet", "--particles", particles]
    assert main(base + ["--out", str(tmp_path / "whole")]) == 0

    import dream3d.train as train_module

    real_step = train_module._step

    def crash(generator, guidance, config, opt, sched, cond_fn, state, clock):
        if state.step == 13:
            raise RuntimeError("power cut")
        return real_step(generator, guidance, config, opt, sched, cond_fn, state, clock)

    monkeypatch.setattr(train_module, "_step", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        main(base + ["--out", str(tmp_path / "split")])
    monkeypatch.setattr(train_module, "_step", real_step)
    assert main(base + ["--out", str(tmp_path / "split"), "--resume"]) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert whole["step"] == split["step"] == 20
    for name, value in whole["generator"].items():
        assert torch.equal(value, split["generator"][name]), name
    for name, value in whole["guidance"]["fake"].items():
        assert torch.equal(value, split["guidance"]["fake"][name]), name
    tables = [k for k in whole["generator"] if k.endswith("encoding.table")]
    assert len(tables) == int(particles)  # every particle's field is in the checkpoint


def test_a_mapped_prompt_says_what_it_was_read_as_before_anything_runs(tmp_path):
    """The real command line, end to end, on an --out it cannot write (a file where a folder
    should be; in-process for every command: tests/dream3d/cli/test_main.py)."""
    (tmp_path / "blocker").write_text("mine")
    out = tmp_path / "blocker" / "out"
    result = _subprocess("--prompt", "a red armchair", "--out", str(out))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "dream3d: 'a red armchair' read as 'a red chair'",
        f"dream3d: error: cannot write to {out}: Not a directory",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]
    assert (tmp_path / "blocker").read_text() == "mine"


@pytest.mark.parametrize(
    "args, words",
    [
        (["bench", "quality", "--ray", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
        (["compare", "--prompt", "a red cube", "--ray", "127.0.0.1:1"], "cannot reach a Ray"),
        (["compare", "--prompt", "a red cube", "--ray", "nowhere"], "expected HOST:PORT"),
        (["compare", "--prompt", "a red cube", "--particles", "0"], "--particles: must be a"),
        (["bench", "quality", "--particles", "-1"], "--particles: must be a positive integer"),
    ],
)
def test_bad_sweep_input_is_one_line_and_exit_2(args, words, tmp_path, capsys):
    try:
        code = main(args + ["--out", str(tmp_path), "--quiet"])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert not any(tmp_path.glob("*/metrics.json"))  # nothing ran


def test_ray_missing_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert main(["compare", "--prompt", "a red cube", "--ray", "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'the sweep needs Ray: pip install -e ".[sweep]"' in lines[0]


def test_resume_with_a_checkpoint_that_does_not_fit_leaves_the_folder_as_it_was(
    tmp_path, monkeypatch, capsys
):
    """The checkpoint's NeRF is 16 wide, the new settings ask for 32: refused in one line
    before config.yaml (which still describes the checkpoint) is touched."""
    for name in ("write_outputs", "write_particle_outputs"):
        monkeypatch.setattr(outputs, name, lambda *a, **k: {})  # training only
    out = tmp_path / "run"
    base = ["run", "--prompt", "a red cube", "--teacher", "oracle", "--steps", "2", "--quiet"]
    base += ["--out", str(out), "--set", "nerf.render.samples=8"]
    assert main([*base, "--set", "nerf.field.hidden=16"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main([*base, "--set", "nerf.field.hidden=32", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"dream3d: error: cannot resume: {out / 'checkpoint.pt'} does not fit this run"
    ), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert "hidden: 16" in (out / "config.yaml").read_text()
