"""Weights and checkpoints cut short or overwritten: one line naming the file, nothing lost.

Every safetensors file goes through dream3d.checkpoint.read_weights and every checkpoint
through read_checkpoint; these tests take each loader's door in turn, with the shipped files
cut short (an interrupted copy or download) and with bytes that never were weights.
"""

import pytest
import torch

from dream3d.checkpoint import save_checkpoint
from dream3d.cli.main import main
from dream3d.judge import Judge
from dream3d.pipelines import distill, world
from dream3d.teachers.tiny import TinyTeacher

SHIPPED = world.WEIGHTS
# kind of file named in the message: (the shipped file, the loaders that read one)
LOADERS = {
    "tiny-teacher": ("tiny-32", (TinyTeacher.load, world.load_tiny)),
    "judge": ("judge-32", (Judge.load, world.load_judge)),
    "generator": (
        "onestep-ikl-32",
        (distill.load_generator, lambda p: distill.sample("a red chair", 2, p)),
    ),
}
CUTS = {  # how the file was spoiled: (its bytes from the shipped file's, safetensors' reason)
    "cut in half": (lambda b: b[: len(b) // 2], "incomplete metadata, file not fully covered"),
    "cut inside the header": (lambda b: b[:100], "invalid header length"),
    "only the length": (lambda b: b[:8], "invalid header length"),
    "empty": (lambda b: b"", "header too small"),
    "garbage": (lambda b: bytes(range(256)) * 64, "header too large"),
}
CASES = [
    (what, i, cut)
    for what, (_, loaders) in LOADERS.items()
    for i in range(len(loaders))
    for cut in CUTS
]


@pytest.mark.parametrize("what, door, cut", CASES)
def test_a_spoilt_weights_file_is_one_line_naming_it(what, door, cut, tmp_path):
    name, loaders = LOADERS[what]
    spoil, reason = CUTS[cut]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(spoil((SHIPPED / f"{name}.safetensors").read_bytes()))
    before = path.read_bytes()
    with pytest.raises(ValueError) as err:
        loaders[door](path)
    message = str(err.value)
    assert message == (
        f"{path} is not a {what} safetensors file (Error while deserializing header: {reason})"
    )
    assert err.value.__suppress_context__ or err.value.__context__ is None  # no chained trace
    assert path.read_bytes() == before


def test_a_cut_teacher_file_from_the_command_line(tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes((SHIPPED / "tiny-32.safetensors").read_bytes()[:100_000])
    out = tmp_path / "grid"
    args = ["teacher", "sample", "--prompt", "a red chair", "--weights", str(weights)]
    assert main([*args, "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == (
        f"dream3d: error: {weights} is not a tiny-teacher safetensors file (Error while "
        "deserializing header: incomplete metadata, file not fully covered)\n"
    )
    assert not out.exists()  # the folder the write check made is gone again: nothing went in


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_resuming_from_a_cut_checkpoint_is_one_line_and_touches_nothing(keep, tmp_path, capsys):
    """A run killed while copying its folder: config.yaml and the checkpoint stay as found."""
    out = tmp_path / "run"
    save_checkpoint(out / "checkpoint.pt", net=torch.nn.Linear(64, 64), step=3)
    whole = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(whole[: int(len(whole) * keep)])
    (out / "config.yaml").write_text("mine")
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["run", "--prompt", "a red chair", "--resume", "--out", str(out), "--quiet"]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == (
        f"dream3d: error: cannot resume: {out}/checkpoint.pt is not a dream3d checkpoint "
        "(not a torch.save archive: another format, or cut short)\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_every_shipped_weights_file_is_the_one_its_log_names():
    import hashlib
    import json

    files = sorted(SHIPPED.glob("*.safetensors"))
    assert len(files) >= 5
    for path in files:
        log = json.loads(path.with_suffix(".json").read_text())
        assert hashlib.sha256(path.read_bytes()).hexdigest() == log["sha256"], path.name


@pytest.mark.parametrize("what", sorted(LOADERS))
def test_a_replaced_shipped_file_is_one_line_naming_it(what, tmp_path, monkeypatch):
    """A shipped file whose bytes are not its log's (one byte of a tensor flipped: still a
    valid safetensors file) is refused by every loader; its copy outside the shipped
    folder loads."""
    import shutil

    from dream3d import checkpoint

    name, loaders = LOADERS[what]
    shipped = tmp_path / "weights"
    shipped.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(SHIPPED / f"{name}{suffix}", shipped / f"{name}{suffix}")
    path = shipped / f"{name}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor
    path.write_bytes(bytes(data))
    (tmp_path / "copy.safetensors").write_bytes(bytes(data))
    loaders[0](tmp_path / "copy.safetensors")  # not in the shipped folder: any weights file
    monkeypatch.setattr(checkpoint, "SHIPPED", shipped)
    for load in loaders:
        with pytest.raises(ValueError) as err:
            load(path)
        message = str(err.value)
        assert message.startswith(f"{path.resolve()} is not the file shipped with dream3d")
        assert f"git checkout -- dream3d/weights/{name}.safetensors" in message
        assert "\n" not in message
    data[-1] ^= 0x01  # restored: loads again
    path.write_bytes(bytes(data))
    for load in loaders:
        load(path)
