import json

import pytest
import torch
from safetensors import safe_open

from dream3d.cli.main import main
from dream3d.judge import accuracy
from dream3d.pipelines.world import JUDGE_WEIGHTS, judge_batch, load_judge, oracle_teacher
from dream3d.sampling import ddim_sample
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import parse_prompt


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prompt", "a purple xylophone"], "not in the toy world's vocabulary (objects: chair"),
        (["--prompt", ""], "the prompt is empty"),
        (["--prompt", "a red chair", "--view", "diagonal"], "choose from 'front', 'side'"),
        (["--prompt", "a red chair", "--weights", "/no/such.safetensors"], "no tiny teacher"),
        (["--prompt", "a red chair", "--n", "0"], "must be a positive integer, got 0"),
        (["--prompt", "a blue cube", "--azimuth", "30"], "azimuth and elevation go together"),
        (
            ["--prompt", "a blue cube", "--teacher", "oracle-camera"]
            + ["--azimuth", "0", "--elevation", "85"],
            "elevation 85 lies outside the camera teacher's trained range -10..80",
        ),
        (
            ["--prompt", "a blue cube", "--teacher", "tiny-camera"]
            + ["--azimuth", "0", "--elevation", "10", "--radius", "3.5"],
            "radius 3.5 lies outside the camera teacher's trained range 2.6..3",
        ),
        (
            [
                "--prompt",
                "a blue cube",
                "--teacher",
                "tiny-camera",
                "--weights",
                "/no/t.safetensors",
            ],
            "no tiny teacher weights at /no/t.safetensors; train them: dream3d teacher train",
        ),
        (
            ["--prompt", "a blue cube", "--view", "back", "--azimuth", "0", "--elevation", "9"],
            "view back disagrees with the camera's own view, front",
        ),
    ],
)
def test_teacher_sample_bad_input_is_one_line_and_exit_2(cli, args, words, tmp_path):
    result = cli("teacher", "sample", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_train_bad_input_is_one_line_and_exit_2(cli, tmp_path):
    for args, words in [
        (["--channels", "8,12"], "multiples of 8 such as 32,64,64"),
        (["--resume"], "--resume: no checkpoint at"),
    ]:
        result = cli("teacher", "train", "--out", str(tmp_path), *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr


def _train(out, steps, *extra):
    args = ["teacher", "train", "--out", str(out), "--steps", str(steps), "--batch", "4"]
    args += ["--channels", "8,16,16", "--warmup", "5", "--save-every", "25", "--quiet"]
    assert main(args + list(extra)) == 0


def _tensors_and_metadata(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 (not a dict)


def test_train_50_steps_then_resume_continues_the_same_run(tmp_path, capsys):
    _train(tmp_path / "straight", 50)
    _train(tmp_path / "split", 25)
    _train(tmp_path / "split", 50, "--resume", "--channels", "32,64,64")  # checkpoint's arch
    printed = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert printed["final"]["step"] == 49
    for run in ("straight", "split"):
        assert {p.name for p in (tmp_path / run).iterdir()} >= {
            "checkpoint.pt",
            "history.json",
            "loss.png",
            "teacher.safetensors",
        }
    # the same tensors and metadata (not bytes: safetensors writes metadata keys in hash order)
    files = [tmp_path / run / "teacher.safetensors" for run in ("straight", "split")]
    (a, meta_a), (b, meta_b) = (_tensors_and_metadata(f) for f in files)
    assert meta_a == meta_b and a.keys() == b.keys()
    for name, value in a.items():
        assert torch.equal(value, b[name]) and value.dtype == b[name].dtype, name
    history = json.loads((tmp_path / "split" / "history.json").read_text())
    assert history[-1]["step"] == 49 and history[-1]["loss"] < 0.9  # from ~1 at init
    weights = tmp_path / "split" / "teacher.safetensors"
    args = ["teacher", "sample", "--weights", str(weights), "--prompt", "a red chair"]
    args += ["--steps", "4", "--n", "3", "--out", str(tmp_path / "grid")]
    assert main(args) == 0
    assert (tmp_path / "grid" / "a-red-chair-front-tiny.png").stat().st_size > 0


def test_oracle_ddim_returns_images_of_the_asked_bank():
    spec = parse_prompt("a red chair")
    oracle = oracle_teacher(spec, size=32, per_view=16, seed=0)
    side = oracle.captions.index(spec.caption("side"))
    cond = oracle.encode_prompt([spec.caption("side")] * 6)
    x = ddim_sample(oracle, cond, (6, 3, 32, 32), 50, 3.0, torch.Generator().manual_seed(1))
    d = torch.cdist(x.flatten(1).double(), oracle.images)  # to every image of every view
    nearest = d.argmin(1)
    assert (oracle.owner[nearest] == side).all()
    rms = d.min(1).values / oracle.images.shape[1] ** 0.5
    assert rms.max() < 0.01  # on a bank image, not between them
    pairwise = torch.cdist(oracle.images, oracle.images) + 1e9 * torch.eye(len(oracle.images))
    assert pairwise.min() / oracle.images.shape[1] ** 0.5 > 0.05


def test_oracle_sample_from_the_command_line(tmp_path):
    args = ["teacher", "sample", "--teacher", "oracle", "--prompt", "a blue cube", "--view"]
    args += ["overhead", "--n", "4", "--steps", "20", "--out", str(tmp_path)]
    assert main(args) == 0
    assert (tmp_path / "a-blue-cube-overhead-oracle.png").is_file()


def test_a_sample_at_an_exact_camera_from_the_command_line(cli, tmp_path):
    args = ["teacher", "sample", "--teacher", "oracle-camera", "--prompt", "a blue cube"]
    args += ["--azimuth", "90", "--elevation", "10", "--n", "2", "--steps", "5"]
    result = cli(*args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["prompt"] == "a blue cube, side view"  # the camera's view
    assert (tmp_path / "a-blue-cube-side-az90-el10-r2.8-oracle-camera.png").is_file()


def test_check_cameras_prints_its_table_and_refuses_bad_input(cli, tmp_path):
    args = ["teacher", "check-cameras", "--teachers", "oracle-camera", "oracle", "--objects"]
    args += ["cube", "--colours", "blue", "--cameras", "2", "--steps", "5", "--quiet"]
    result = cli(*args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "| oracle-camera | 1.000 | 1.000 | 2 |" in result.stdout
    assert result.stdout.startswith((tmp_path / "check.md").read_text())
    assert {p.name for p in tmp_path.iterdir()} >= {"metrics.json", "samples.csv", "samples.png"}
    for bad, words in [
        (["--cameras", "0"], "must be a positive integer, got 0"),
        (["--teachers", "sd"], "invalid choice: 'sd'"),
        (["--teachers", "tiny-camera", "--camera-weights", "/no/c.safetensors"], "/no/c.safe"),
    ]:
        result = cli("teacher", "check-cameras", "--out", str(tmp_path / "bad"), *bad)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr


def test_the_shipped_judge_scores_95_percent_on_fresh_renders():
    assert JUDGE_WEIGHTS.is_file()
    images, obj, col = judge_batch(32)(256, torch.Generator().manual_seed(2024))
    acc = accuracy(
        load_judge(),
        images,
        [OBJECTS[i] for i in obj.tolist()],
        [list(COLOURS)[i] for i in col.tolist()],
    )
    assert acc["object"] >= 0.95 and acc["colour"] >= 0.95, acc


def test_silhouette_ceiling_of_true_renders_is_high_per_object():
    from dream3d.cameras import VIEWS, Cameras
    from dream3d.pipelines.teacher import silhouette_ceiling
    from scenes.render import render

    az = torch.tensor([12.0, 83.0, 171.0, -31.0] * 2)  # between the grid's 7.5-degree poses
    el = torch.tensor([19.0, 23.0, 16.0, 71.0] * 2)
    cameras = Cameras(az, el, torch.full((8,), 2.75), 40.0)
    assert cameras.views() == list(VIEWS) * 2
    objects = ["sphere"] * 4 + ["cube"] * 4
    images = render(objects, ["green"] * 8, cameras) * 2 - 1
    result = silhouette_ceiling(images, objects, n=1)
    per_object = result["silhouette_ceiling_per_object"]
    assert set(per_object) == {"sphere", "cube"} and min(per_object.values()) > 0.85
    assert result["silhouette_ceiling"] == pytest.approx(sum(per_object.values()) / 2, abs=1e-4)


def test_the_shipped_tiny_teacher_is_the_file_its_json_describes_and_draws_what_is_asked():
    import hashlib

    from dream3d.cameras import VIEWS
    from dream3d.pipelines.world import TINY_WEIGHTS, load_tiny

    record = json.loads(TINY_WEIGHTS.with_suffix(".json").read_text())
    assert hashlib.sha256(TINY_WEIGHTS.read_bytes()).hexdigest() == record["sha256"]
    teacher = load_tiny()
    colours = list(COLOURS)
    prompts = [(o, colours[i % len(colours)], VIEWS[i % len(VIEWS)]) for i, o in enumerate(OBJECTS)]
    cond = teacher.encode_prompt([parse_prompt(f"a {c} {o}").caption(v) for o, c, v in prompts])
    rng = torch.Generator().manual_seed(7)
    images = ddim_sample(teacher, cond, (len(cond), 3, 32, 32), 20, 3.0, rng, clip_x0=1.0)
    acc = accuracy(load_judge(), images, [o for o, _, _ in prompts], [c for _, c, _ in prompts])
    assert acc["object"] >= 0.9 and acc["colour"] >= 0.9, acc  # 11 of the 12 prompts
