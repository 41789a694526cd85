import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from dream3d.checkpoint import read_checkpoint
from dream3d.pipelines.distill import (
    DistillConfig,
    build,
    captions,
    distill,
    draw,
    load_generator,
    resolve,
    sample,
)
from dream3d.pipelines.image_scores import KEYS

QUICK = {"train": {"steps": 2, "log_every": 1, "save_every": 1}, "eval": {"n": 8, "every": 0}}
FILES = ["checkpoint.pt", "config.yaml", "generator.safetensors", "metrics.json", "progress.png",
         "samples.png"]  # fmt: skip


def test_the_defaults_are_distillations_own_and_settings_lay_on_them():
    config = DistillConfig()
    assert config.generator.name == "onestep" and config.guidance.name == "ikl"
    assert config.guidance.fake == "teacher" and config.train.batch == 8
    over = resolve(overrides={"train": {"steps": 7}})
    assert over.train.steps == 7 and over.train.batch == config.train.batch  # not the NeRF's 1
    assert over.guidance.cfg_scale == config.guidance.cfg_scale
    sds = resolve(overrides={"guidance": {"name": "sds"}})
    # distillation's SDS: IKL's settings but the fake score (the NeRF's SDS default is CFG 20)
    assert sds.guidance.name == "sds" and sds.guidance.cfg_scale == 3.0
    assert sds.guidance.weighting == "dmd" == config.guidance.weighting
    assert resolve(overrides={"guidance": {"name": "sds", "cfg_scale": 9}}).guidance.cfg_scale == 9
    dirac = resolve(overrides={"generator": {"name": "dirac"}, "train": {"lr": 0.2}})
    assert (dirac.train.batch, dirac.train.steps, dirac.train.lr) == (64, 300, 0.2)  # pixels
    assert len(captions(None)) == 12 * 9 * 4  # objects x (no colour + 8 colours) x views
    assert captions("A red chair") == [f"a red chair, {v} view" for v in
                                       ("front", "side", "back", "overhead")]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "red-chair"
    config = resolve("a red chair", QUICK)
    metrics = distill(config, out, progress=False)
    return config, out, metrics


def test_a_run_writes_every_output_and_its_config_replays(run):
    config, out, metrics = run
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert set(KEYS) <= set(metrics) and metrics["n"] == 8 and metrics["nfe"] == 1
    assert metrics["colour_tv"] is None  # every caption names its colour
    assert resolve(config_file=out / "config.yaml") == config
    assert yaml.safe_load((out / "config.yaml").read_text())["prompt"] == "a red chair"
    # samples.png: "a red chair, front view" is the one shown caption it knows: one row of 8
    # images of 32 px in 1 px borders, upscaled 2x
    assert Image.open(out / "samples.png").size == (8 * 34 * 2, 34 * 2)
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_a_saved_generator_draws_what_the_trained_one_drew(run):
    config, out, _ = run
    parts, loaded = load_generator(out / "generator.safetensors")
    assert loaded == config
    fresh = build(config)  # the untrained generator differs: the weights were saved, not rebuilt
    wanted = ["a red chair, side view"] * 3
    assert not torch.equal(draw(parts, wanted, 5), draw(fresh, wanted, 5))
    images, got = sample("a red chair, side view", 3, out / "generator.safetensors", seed=5)
    assert got == wanted and torch.equal(images, draw(parts, wanted, 5))
    images, got = sample("a red chair", 6, out / "generator.safetensors")
    views = ("front", "side", "back", "overhead", "front", "side")  # the four in turn
    assert got == [f"a red chair, {v} view" for v in views]
    with pytest.raises(ValueError, match="not distilled on 'a blue chair"):
        sample("a blue chair", 2, out / "generator.safetensors")


def test_resume_continues_the_run(run, tmp_path):
    _, done, _ = run
    out = shutil.copytree(done, tmp_path / "run")
    longer = resolve(config_file=out / "config.yaml", overrides={"train": {"steps": 3}})
    metrics = distill(longer, out, resume=True, progress=False)
    assert metrics["steps"] == 3
    state = read_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 3 and [r["step"] for r in state["history"]] == [0, 1, 2]


def test_the_same_command_distills_a_latent_generator_from_stable_diffusion(tiny_sd, tmp_path):
    tree = QUICK | {"teacher": {"name": "sd", "model": str(tiny_sd)}}
    config = resolve("a red cube", tree)
    parts = build(config)
    assert parts.generator.shape == (4, 8, 8) and parts.generator.in_teacher_space
    metrics = distill(config, tmp_path / "sd", progress=False)
    assert set(KEYS) <= set(metrics) and metrics["n"] == 8
    images, _ = sample("a red cube", 2, tmp_path / "sd" / "generator.safetensors")
    assert images.shape == (2, 3, 32, 32)  # decoded by the pipeline's VAE


def test_sds_turns_grey_dirac_images_into_red_cubes(tmp_path):
    """DreamFusion's 2-D case: 8 grey-noise images, captioned by the four views of "a red
    cube", become red cubes the judge recognises within 30 steps (measured: fd 2076 -> 146,
    object and colour 8/8; with the sign of g flipped: fd 1714, object 0/8, colour 3/8)."""
    tree = {
        "generator": {"name": "dirac"},
        "guidance": {"name": "sds"},
        "train": {"steps": 30, "batch": 8, "lr": 0.1, "log_every": 5},
        "eval": {"n": 8, "every": 0},
    }
    metrics = distill(resolve("a red cube", tree), tmp_path / "dirac", progress=False)
    assert metrics["fd_start"] > 1000
    assert metrics["fd"] < 0.15 * metrics["fd_start"]
    assert metrics["object_acc"] >= 7 / 8 and metrics["colour_acc"] == 1.0
    assert Image.open(tmp_path / "dirac" / "samples.png").size == (4 * 34 * 2, 34 * 2)


def test_the_readme_python_snippet_distills_and_samples(tmp_path, monkeypatch):
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    snippet = next(b for b in blocks if "pipelines.distill" in b)
    assert '"steps": 600}' in snippet and '"ikl"' in snippet
    monkeypatch.chdir(tmp_path)
    namespace = {}
    quick = '"steps": 2, "progress": False}, "eval": {"n": 8, "every": 0}'
    exec(snippet.replace('"steps": 600}', quick), namespace)
    assert namespace["metrics"]["steps"] == 2 and namespace["images"].shape == (16, 3, 32, 32)
    assert (tmp_path / "outputs/distill-ikl/generator.safetensors").is_file()


def test_the_bench_rows_are_the_distill_commands_defaults():
    from dream3d.cli.distill import overrides
    from dream3d.cli.main import build_parser
    from dream3d.pipelines.bench_distill import run_configs

    configs = run_configs(None, None, None)
    assert list(configs) == [
        "one-step IKL", "one-step IKL EMA100", "one-step SDS", "one-step SiD", "one-step DMD",
        "Dirac SDS", "Dirac IKL"
    ]  # fmt: skip
    # each row is what its command line makes, so a run made by hand is reused by the bench
    args = build_parser().parse_args(["distill", "--generator", "dirac", "--guidance", "sds"])
    assert resolve(None, overrides(args)) == configs["Dirac SDS"]
    assert configs["Dirac SDS"].train.batch == 64 and configs["one-step SDS"].train.batch == 8
    assert list(run_configs(1, None, None, ["dirac-sds"])) == ["Dirac SDS"]
    assert run_configs(7, 5, 16)["one-step IKL"].train.steps == 7
    assert run_configs(7, 5, 16)["Dirac IKL"].train.steps == 5
    assert run_configs(7, 5, 16, seed=2)["one-step SiD"].train.seed == 2
    args = build_parser().parse_args(["distill", "--guidance", "sid", "--seed", "2"])
    assert resolve(None, overrides(args)) == run_configs(None, None, None, seed=2)["one-step SiD"]
    args = build_parser().parse_args(["distill", "--ema", "100", "--seed", "1"])
    ema = run_configs(None, None, None, ["one-step-ikl-ema100"], seed=1)["one-step IKL EMA100"]
    assert resolve(None, overrides(args)) == ema and ema.train.ema_halflife == 100
    assert run_configs(7, 5, 16)["one-step IKL EMA100"].train.steps == 7
    assert run_configs(7, 5, 16)["one-step IKL EMA100"].train.ema_halflife == 100
    with pytest.raises(ValueError, match="unknown rows gan"):
        run_configs(None, None, None, ["gan"])


def test_the_bench_tables_only_finished_runs_when_asked(tmp_path):
    """--finished-only: a run whose folder holds metrics.json and the same config is taken, a
    folder made with another config (seed 0's config in seed 1's folder) and a missing folder
    are left out, and nothing is trained."""
    from dream3d.config import to_dict
    from dream3d.pipelines.bench_distill import collect, row_folder, run_configs

    configs = [run_configs(None, None, None, ["one-step-sid"], s) for s in range(3)]
    for seed, written in ((0, 0), (1, 0)):
        folder = tmp_path / row_folder("one-step SiD") / f"seed-{seed}"
        folder.mkdir(parents=True)
        config = configs[written]["one-step SiD"]
        (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        (folder / "metrics.json").write_text(json.dumps({"fd": 30.0 + seed}))
    runs = collect(configs, tmp_path, progress=False, finished_only=True)
    assert runs == {("one-step SiD", 0): {"fd": 30.0}}


def test_the_bench_summarises_seeds_with_intervals_and_pairs_them_with_ikl():
    """3 seeds: the bootstrap's 27 resamples put each end of the interval at the smallest or
    largest seed (each has probability 1/27 > 2.5 %). IKL fd 10, 12, 14: 12 [10, 14]. SiD fd
    9, 12, 12 and seed 2 missing from DMD: SiD - IKL = -1, 0, -2: -1 [-2, 0]; DMD - IKL over
    seeds 0 and 1 only."""
    from dream3d.pipelines.bench_distill import paired, summary
    from dream3d.pipelines.image_scores import KEYS

    def m(fd, recall):
        extra = {"nfe": 1, "ms_per_image": 2.0, "train_seconds": 10.0 * fd}
        return {k: 0.5 for k in KEYS} | {"fd": fd, "recall": recall} | extra

    runs = {("one-step IKL", 0): m(10, 0.8), ("one-step IKL", 1): m(12, 0.8),
            ("one-step IKL", 2): m(14, 0.8), ("one-step SiD", 0): m(9, 0.9),
            ("one-step SiD", 1): m(12, 0.7), ("one-step SiD", 2): m(12, 0.8),
            ("one-step DMD", 0): m(11, 0.8), ("one-step DMD", 1): m(15, 0.8)}  # fmt: skip
    names = ["one-step IKL", "one-step SiD", "one-step DMD", "Dirac IKL"]  # Dirac: no runs
    rows = {r["row"]: r for r in summary(runs, names, 3)}
    assert len(rows) == 3 and not any(r.startswith("Dirac") for r in rows)
    ikl = rows["one-step IKL (3 seeds)"]
    assert ikl["fd"] == "12.000 [10.000, 14.000]" and ikl["train_seconds"] == 120.0
    assert rows["one-step DMD (2 seeds)"]["fd"] == "13.000 [11.000, 15.000]"
    diffs = {r["row"]: r for r in paired(runs, names, 3)}
    assert diffs["one-step SiD - one-step IKL"]["fd"] == "-1.000 [-2.000, +0.000]"
    assert diffs["one-step SiD - one-step IKL"]["recall"] == "+0.000 [-0.100, +0.100]"
    assert diffs["one-step DMD - one-step IKL"]["seeds"] == 2
    assert diffs["one-step DMD - one-step IKL"]["fd"] == "+2.000 [+1.000, +3.000]"
