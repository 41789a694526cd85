"""Commands run end to end through `dream3d ...` at the smallest settings: what they promise
is written, and its numbers are the ones the inputs fix."""

import csv
import json
import math

import pytest
import torch
import yaml
from PIL import Image

from dream3d.cameras import VIEWS
from dream3d.judge import Judge, accuracy
from dream3d.pipelines.lab import KL_T_RANGE
from dream3d.pipelines.world import all_captions, judge_batch
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from scenes.catalogue import COLOURS, OBJECTS
from tests.fast_run import SMALLEST_OUTPUTS


def _run(cli, *args) -> tuple[dict | str, str]:
    """``dream3d ARGS`` (exit 0): its stdout (as JSON where it is) and stderr."""
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    try:
        return json.loads(done.stdout), done.stderr
    except json.JSONDecodeError:
        return done.stdout, done.stderr


def test_lab_misaligned(tmp_path, cli):
    args = ["lab", "misaligned", "--steps", "20", "--out", str(tmp_path), "--quiet"]
    printed, err = _run(cli, *args)
    assert err == f"wrote {tmp_path}/metrics.json\n"  # --quiet: no progress bars
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "misaligned.png"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["t_range"] == {"kl": list(KL_T_RANGE), "ikl": [0.02, 0.98]}
    for arm in ("kl", "ikl"):
        assert printed[arm] == {k: v for k, v in metrics[arm].items() if k != "mmd2_curve"}
        curve = metrics[arm]["mmd2_curve"]
        assert list(curve) == ["0", "10", "19"]  # every 10 steps and the last (JSON: text)
        assert curve["19"] == metrics[arm]["mmd2"]  # the last point is the final draw's
        assert curve["0"] > curve["10"] > curve["19"]  # towards the ring from the first step
        # it starts at offset (4, 4) and heads for the ring of radius 2, all of it at one angle
        # (the init's 0.1 scale: spread ~ (0.1 / 5.66)^2 / 2 at most)
        assert 2 < metrics[arm]["radius_mean"] < 4 * math.sqrt(2)
        assert metrics[arm]["angle_spread"] < 1e-4


def _small_teacher(path):
    """A random tiny teacher 1/16 the shipped one's width, with every catalogue caption."""
    torch.manual_seed(0)
    config = TinyConfig(size=32, block_out_channels=(8, 16), head_dim=8)
    teacher = TinyTeacher(config, encoder=lambda p: torch.randn(len(p), 384))
    teacher.add_captions(all_captions())
    teacher.save(path)
    return str(path)


def test_teacher_eval(tmp_path, cli):
    weights = _small_teacher(tmp_path / "small.safetensors")
    out = tmp_path / "eval"
    args = ["teacher", "eval", "--weights", weights, "--steps", "1", "--n", "1", "--cfg", "2"]
    printed, _ = _run(cli, *args, "--out", str(out), "--quiet")
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed == metrics and sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "samples.png",
    ]
    assert (metrics["teacher"], metrics["cfg"], metrics["ddim_steps"]) == ("tiny", 2.0, 1)
    per_view = len(COLOURS)  # --n 1: a sample per colour and view of each object
    assert metrics["n"] == len(OBJECTS) * per_view * len(VIEWS) == 384
    per_object = metrics["per_object"]
    assert list(per_object) == sorted(OBJECTS)
    for head in ("object", "colour"):
        assert all(row["n"] == per_view * len(VIEWS) for row in per_object.values())
        assert all((row[head] * 32).is_integer() for row in per_object.values())
        mean = sum(row[head] for row in per_object.values()) / len(OBJECTS)  # equal n each
        assert metrics[head] == pytest.approx(mean, abs=1e-12)
    with Image.open(out / "samples.png") as grid:  # a row per object, a column per view
        assert grid.size == (int(100 * (1.3 * len(VIEWS) + 1.6)), int(100 * 1.3 * len(OBJECTS)))


def test_judge_train(tmp_path, cli):
    args = ["judge", "train", "--steps", "3", "--batch", "4", "--held-out", "96"]
    printed, _ = _run(cli, *args, "--out", str(tmp_path), "--quiet")
    weights = tmp_path / "judge-32.safetensors"
    assert printed["weights"] == str(weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judge-32.safetensors", "metrics.json"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["held_out"] == printed["held_out"]
    held_out = metrics["held_out"]
    assert sum(row["n"] for row in held_out["per_object"].values()) == 96
    # the saved judge is the one that was scored: on the same renders (seed 0 + 12345) it
    # scores the same, to the last digit
    judge = Judge.load(weights)
    assert judge.config.objects == list(OBJECTS) and judge.config.colours == list(COLOURS)
    images, obj, col = judge_batch(32)(96, torch.Generator().manual_seed(12345))
    names = [OBJECTS[i] for i in obj.tolist()], [list(COLOURS)[i] for i in col.tolist()]
    assert accuracy(judge, images, *names) == held_out
    history = metrics["history"]
    assert [row["step"] for row in history] == [0, 2]  # every 50 steps and the last
    # untrained heads guess about evenly: cross-entropy ln 12 + ln 8 over both
    assert history[0]["loss"] == pytest.approx(math.log(len(OBJECTS) * len(COLOURS)), abs=0.3)


# the smallest whole run: a 16 px oracle of 4 renders per view, 2 steps, the cheapest outputs
TINY_RUN = {
    "teacher": {"name": "oracle", "per_view": 4},
    "train": {"steps": 2, "save_every": 0, "log_every": 1},
    "nerf": {"size": 16, "render": {"samples": 8, "shading": {"warmup": 1}}},
    "outputs": SMALLEST_OUTPUTS,
}


def test_bench_quality(tmp_path, cli):
    """IKL with the point-mass fake score is SDS (Corollary 3.4): at one cfg and seed both
    sides train the same NeRF, so every score of their rows is the same."""
    preset = tmp_path / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY_RUN))
    (tmp_path / "prompts.txt").write_text("# one prompt\na red cube\n")
    out = tmp_path / "bench"
    args = ["bench", "quality", "--prompts", str(tmp_path / "prompts.txt"), "--seeds", "1"]
    args += ["--preset", str(preset), "--cfg", "7.5", "--set", "guidance.fake=dirac"]
    table, err = _run(cli, *args, "--out", str(out), "--quiet")
    assert err == f"wrote {out}/quality.md and quality.csv\n"
    assert table == (out / "quality.md").read_text() + "\n"  # printed
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["a-red-cube-ikl-0", "a-red-cube-sds-0"]  # prompts x guidances x seeds
    with open(out / "quality.csv") as f:
        rows = {row["guidance"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["sds", "ikl"]  # a row per prompt and guidance
    for name, row in rows.items():
        metrics = json.loads((out / f"a-red-cube-{name}-0" / "metrics.json").read_text())
        assert metrics["steps"] == 2 and metrics["guidance"] == name
        assert (row["prompt"], row["seeds"], row["diversity"]) == ("a red cube", "1", "")
        for key in ("silhouette_iou", "occupancy_iou", "chamfer", "colour_error"):
            assert float(row[key]) == metrics["truth"][key]  # the mean of one seed
        assert float(row["seconds"]) == metrics["train_seconds"]
    scores = [k for k in rows["sds"] if k not in ("guidance", "seconds")]
    assert [rows["sds"][k] for k in scores] == [rows["ikl"][k] for k in scores]
