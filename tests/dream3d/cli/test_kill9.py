"""kill -9 at five moments of `dream3d run`: `--resume` on the folder it leaves ends where
the uninterrupted run ends (every tensor of the last checkpoint, every score), with no
temporary file left."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dream3d.cli.main import main
from dream3d.pipelines import outputs
from tests.fast_run import SMALLEST_OUTPUTS

HELPER = Path(__file__).resolve().parents[2] / "killed_run.py"
MOMENTS = ("step-2", "checkpoint-1", "step-6", "checkpoint-2", "outputs")
SMALL = {  # 8 steps, a checkpoint every 4, small outputs
    "train": {"steps": 8, "save_every": 4},
    "nerf": {"render": {"samples": 8, "shading": {"warmup": 2}}},
    "outputs": SMALLEST_OUTPUTS,
}


def _args(config: Path) -> list[str]:
    return ["run", "--prompt", "a chair", "--config", str(config), "--quiet"]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """The folders five runs killed at five moments left (ROOT/<moment>; children of one
    fresh process) and the uninterrupted run's (ROOT/whole), made here meanwhile; all on one
    thread, as the resumed runs, so every step computes the same numbers."""
    root = tmp_path_factory.mktemp("kill9")
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    torch.set_num_threads(1)
    args = [sys.executable, str(HELPER), str(root), *_args(config)]
    children = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert main([*_args(config), "--out", str(root / "whole")]) == 0
    out, err = children.communicate(timeout=600)
    ends = dict(line.split() for line in out.decode().splitlines())
    assert ends == dict.fromkeys(MOMENTS, "-9"), err.decode()  # each killed, none ended
    return root, config


def _checkpoint(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result(
    moment, killed, monkeypatch, capsys
):
    root, config = killed
    folder, whole = root / moment, root / "whole"
    left = sorted(p.name for p in folder.iterdir())
    assert "metrics.json" not in left  # the kill stopped it before its end
    torch.set_num_threads(1)
    if moment != "outputs":  # scores compared on the last one; here the checkpoints say all
        monkeypatch.setattr(outputs, "write_outputs", lambda *a, **k: {})
    assert main([*_args(config), "--out", str(folder), "--resume"]) == 0
    err = capsys.readouterr().err
    assert ("has no checkpoint yet" in err) == (moment in ("step-2", "checkpoint-1")), err
    mine, truth = _checkpoint(folder), _checkpoint(whole)
    assert mine["step"] == truth["step"] == 8
    assert mine["history"] == [
        r | {"time": m["time"]} for r, m in zip(truth["history"], mine["history"])
    ]
    for part in ("generator", "optimizer", "guidance", "rng"):
        assert _equal(mine[part], truth[part]), part
    assert not list(folder.glob("*.tmp"))
    if moment == "outputs":
        scores = [json.loads((f / "metrics.json").read_text()) for f in (folder, whole)]
        assert scores[0]["truth"] == scores[1]["truth"]
        assert scores[0]["mesh"] == scores[1]["mesh"]
        assert scores[0]["files"] == scores[1]["files"]


def _equal(a, b) -> bool:
    """Nested dicts, lists and tensors equal, value by value."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_resume_starts_again_only_where_this_same_run_stopped_before_a_checkpoint(tmp_path, capsys):
    """No checkpoint, and OUT/config.yaml is another run's (or cut short): one line, exit 2,
    the folder as it was."""
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "run"
    out.mkdir()
    for text in ("prompt: a table\n", "prompt: a chair\ndevice: cp"):
        (out / "config.yaml").write_text(text)
        assert main([*_args(config), "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"dream3d: error: --resume: no checkpoint at {out / 'checkpoint.pt'}"]
        assert [p.name for p in out.iterdir()] == ["config.yaml"]
        assert (out / "config.yaml").read_text() == text
