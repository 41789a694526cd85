import zipfile

import pytest
import torch

from dream3d.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, state_mismatch


def _run(seed: int):
    """A module, its optimizer and scheduler after one step, and a generator."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=0.1 * (1 + seed))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    rng = torch.Generator().manual_seed(seed)
    _step(net, opt, sched, rng)
    return {"net": net, "opt": opt, "sched": sched, "rng": rng}


def _step(net, opt, sched, rng) -> None:
    net.train()
    loss = net(torch.randn(8, 3, generator=rng)).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_a_round_trip_restores_every_part_and_the_run_goes_on_identically(tmp_path):
    path = tmp_path / "deep" / "ckpt.pt"
    ema = {"w": torch.arange(3.0)}
    a = _run(0)
    save_checkpoint(path, **a, step=7, history=[{"loss": 0.5}], ema=ema)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # the .tmp is gone
    b = _run(1)  # other weights, optimizer moments, lr and rng
    assert b["sched"].get_last_lr() == [0.1]
    plain = load_checkpoint(path, "step", "history", "ema", **b)
    assert plain["step"] == 7 and plain["history"] == [{"loss": 0.5}]
    assert torch.equal(plain["ema"]["w"], ema["w"])
    for name, value in a["net"].state_dict().items():  # BatchNorm's buffers too
        assert torch.equal(value, b["net"].state_dict()[name]), name
    assert b["sched"].get_last_lr() == a["sched"].get_last_lr() == [0.05]
    assert torch.equal(torch.rand(5, generator=b["rng"]), torch.rand(5, generator=a["rng"]))
    _step(**a)  # Adam's moments came back: the next step lands on the same weights
    _step(**b)
    for p, q in zip(a["net"].parameters(), b["net"].parameters()):
        assert torch.equal(p, q)


def test_the_file_is_plain_state_that_loads_with_weights_only(tmp_path):
    a = _run(0)
    save_checkpoint(tmp_path / "c.pt", **a, step=3)
    blob = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(blob) == {"net", "opt", "sched", "rng", "step"}
    assert torch.equal(blob["rng"], a["rng"].get_state())
    assert blob["opt"]["param_groups"][0]["lr"] == 0.05 and blob["step"] == 3
    assert read_checkpoint(tmp_path / "c.pt").keys() == blob.keys()


def _one_line_error(path, match: str, **parts):
    with pytest.raises(ValueError, match=match) as err:
        load_checkpoint(path, "step", **parts)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert err.value.__suppress_context__ or err.value.__context__ is None  # no chained trace
    return message


def _truncated(path):
    save_checkpoint(path, **_run(0), step=1)
    path.write_bytes(path.read_bytes()[:200])


def _other_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


def _flipped_byte(path):
    """A byte of a weight flipped, as a bad disk would: the archive stays whole."""
    run = _run(0)
    save_checkpoint(path, **run, step=1)
    data = bytearray(path.read_bytes())
    at = data.index(run["net"][0].weight.detach().numpy().tobytes())
    data[at + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert zipfile.is_zipfile(path)  # torch.load alone would load the wrong weight


class _NotState:
    pass


BAD_FILES = {  # name: (how the file is made, the reason the message gives)
    "random bytes": (
        lambda p: p.write_bytes(torch.randint(0, 256, (999,)).byte().numpy().tobytes()),
        "not a torch.save archive",
    ),
    "a text file": (lambda p: p.write_text("step: 3\nhistory: []\n"), "not a torch.save"),
    "truncated": (_truncated, "not a torch.save archive: another format, or cut short"),
    "not a dict": (lambda p: torch.save(torch.zeros(3), p), "it holds a Tensor, not a dict"),
    "an empty file": (lambda p: p.write_bytes(b""), "not a torch.save archive"),
    "another zip archive": (_other_zip, "file in archive is not in a subdirectory: notes.txt"),
    "a flipped byte": (_flipped_byte, "/data/0 fails its checksum)"),  # the weight it hit
    "a pickled object": (
        lambda p: torch.save({"step": _NotState()}, p),
        "weights_only=True refuses it: objects beyond tensors and plain values",
    ),
}


@pytest.mark.parametrize("make, reason", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_file_that_is_not_a_checkpoint_is_one_clear_line(tmp_path, make, reason):
    path = tmp_path / "checkpoint.pt"
    make(path)
    before = path.read_bytes()
    message = _one_line_error(path, "cannot resume: .* is not a dream3d checkpoint \\(", **_run(1))
    assert reason in message
    assert path.read_bytes() == before  # left as it was, for a look


def test_missing_parts_keys_and_files(tmp_path):
    path = tmp_path / "checkpoint.pt"
    a = _run(0)
    _one_line_error(path, "cannot resume: no checkpoint at", **a)
    save_checkpoint(path, net=a["net"], opt=a["opt"], rng=a["rng"])  # no sched, no step
    message = _one_line_error(path, "is not a dream3d checkpoint", **_run(1))
    assert message.endswith("(no sched, step)")


def test_a_checkpoint_of_another_architecture_does_not_fit(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, net=torch.nn.Linear(3, 4), step=0)
    message = _one_line_error(path, "does not fit this run", net=torch.nn.Linear(3, 5))
    assert "net: weight has shape (4, 3), expected (5, 3)" in message
    wider = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    assert state_mismatch(wider, {"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(4)}) == (
        "missing tensors 1.bias, 1.weight"
    )
    extra = {**wider.state_dict(), "x.a": torch.zeros(1), "x.b": torch.zeros(1)}
    assert state_mismatch(wider, extra | {"x.c": torch.zeros(1)}) == (
        "unexpected tensors x.a, x.b and 1 more"
    )
    assert state_mismatch(wider, wider.state_dict()) == ""


class _FullDisk:
    """open() for a disk that fills after ``room`` bytes: writes past it fail with ENOSPC."""

    def __init__(self, room: int):
        self.room = room

    def __call__(self, path, mode="r", *args, **kwargs):
        import builtins
        import errno

        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 (returned open)
        room, write = self.room, f.write

        def short_write(data):
            nonlocal room
            if len(data) > room:
                write(bytes(data)[:room])
                raise OSError(errno.ENOSPC, "No space left on device")
            room -= len(data)
            return write(data)

        f.write = short_write
        return f


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_a_full_disk_keeps_the_last_checkpoint_and_leaves_no_temporary_file(
    tmp_path, monkeypatch, room
):
    import errno

    from dream3d import checkpoint

    path = tmp_path / "ckpt.pt"
    good = _run(0)
    save_checkpoint(path, **good)
    before = path.read_bytes()
    monkeypatch.setattr(checkpoint, "open", _FullDisk(room), raising=False)
    with pytest.raises(OSError) as err:
        save_checkpoint(path, **_run(1))
    assert (err.value.errno, err.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    monkeypatch.undo()
    fresh = _run(5)
    load_checkpoint(path, net=fresh["net"])
    for a, b in zip(fresh["net"].state_dict().values(), good["net"].state_dict().values()):
        assert torch.equal(a, b)


def test_a_full_disk_during_a_run_is_one_line_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
    from dream3d import checkpoint
    from dream3d.cli.main import main

    # room for config.yaml (a few kB, written the same way), none for a checkpoint (~1 MB)
    monkeypatch.setattr(checkpoint, "open", _FullDisk(100_000), raising=False)
    out = tmp_path / "run"
    args = ["run", "--prompt", "a chair", "--steps", "4", "--out", str(out), "--quiet"]
    sets = ["nerf.render.samples=8", "train.save_every=2", "nerf.render.shading.warmup=1"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"dream3d: error: {out / 'checkpoint.pt'}: No space left on device (a checkpointed run "
        "keeps its last checkpoint: free space, then --resume)"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_a_full_disk_keeps_the_last_weights_file(tmp_path, monkeypatch):
    """Weights files (generators, teachers, the judge) are written as checkpoints are."""
    from dream3d import checkpoint
    from dream3d.checkpoint import read_weights, save_weights

    path = tmp_path / "generator.safetensors"
    save_weights(path, {"w": torch.ones(3)}, {"config": "{}"})
    monkeypatch.setattr(checkpoint, "open", _FullDisk(50), raising=False)
    with pytest.raises(OSError):
        save_weights(path, {"w": torch.zeros(300)}, {"config": "{}"})
    monkeypatch.undo()
    tensors, meta = read_weights(path, "generator")
    assert torch.equal(tensors["w"], torch.ones(3)) and meta == {"config": "{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.safetensors"]
