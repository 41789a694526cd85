import json
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file, save_file

from dream3d.judge import Judge, JudgeConfig, accuracy, train_judge

COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.8, 0.1), "blue": (0.1, 0.2, 1.0)}
OBJECTS = ["square", "disc"]


def _draw(obj: torch.Tensor, col: torch.Tensor, g: torch.Generator, size=16):
    """White images with a coloured square or disc at a random place."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = torch.randint(5, size - 5, (len(obj), 2), generator=g)
    dy, dx = yy[None] - c[:, 0, None, None], xx[None] - c[:, 1, None, None]
    square = (dy.abs() <= 3) & (dx.abs() <= 3)
    disc = dy**2 + dx**2 <= 12
    mask = torch.where(obj[:, None, None] == 0, square, disc)[:, None].float()
    rgb = torch.tensor(list(COLOURS.values()))[col][:, :, None, None]
    return (mask * rgb + (1 - mask)) * 2 - 1


def _batch(n, g):
    obj = torch.randint(0, 2, (n,), generator=g)
    col = torch.randint(0, 3, (n,), generator=g)
    return _draw(obj, col, g), obj, col


def test_judge_learns_object_and_colour_and_round_trips(tmp_path):
    torch.manual_seed(0)
    judge = Judge(JudgeConfig(objects=OBJECTS, colours=list(COLOURS), width=8, size=16))
    history = train_judge(judge, _batch, steps=120, batch=32, lr=5e-3, progress=False)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    g = torch.Generator().manual_seed(99)
    images, obj, col = _batch(300, g)
    names_o = [OBJECTS[i] for i in obj.tolist()]
    names_c = [list(COLOURS)[i] for i in col.tolist()]
    acc = accuracy(judge, images, names_o, names_c)
    assert acc["object"] >= 0.9 and acc["colour"] >= 0.95
    assert set(acc["per_object"]) == {"square", "disc"}
    judge.save(tmp_path / "judge.safetensors")
    again = Judge.load(tmp_path / "judge.safetensors")
    assert torch.equal(again(images)[0], judge(images)[0])
    assert again.config.colours == ["red", "green", "blue"]


def _relabelled(path):
    """A judge's tensors under a config with one more colour: the colour head's shape differs."""
    Judge(JudgeConfig(objects=OBJECTS, colours=list(COLOURS), width=8)).save(path)
    config = JudgeConfig(objects=OBJECTS, colours=[*COLOURS, "pink"], width=8)
    save_file(load_file(str(path)), str(path), metadata={"config": json.dumps(asdict(config))})


def _safetensors(tensors, **meta):
    """A maker of a safetensors file that holds ``tensors`` and ``meta``."""
    return lambda path: save_file(tensors, str(path), metadata=meta or None)


CONFIG = json.dumps(asdict(JudgeConfig(objects=OBJECTS, colours=list(COLOURS), width=8)))
BAD_WEIGHTS = {
    "random bytes": (lambda p: p.write_bytes(bytes(range(256)) * 8), "deserializing header"),
    "a text file": (lambda p: p.write_text("judge\n"), "deserializing header"),
    "no config": (_safetensors({"x": torch.zeros(1)}), "no config in its metadata"),
    "not json": (_safetensors({"x": torch.zeros(1)}, config="{"), "bad metadata"),
    "no judge tensors": (_safetensors({"x": torch.zeros(1)}, config=CONFIG), "missing tensors"),
    "other labels": (_relabelled, r"colour_head.weight has shape \(3, 32\), expected \(4, 32\)"),
}


@pytest.mark.parametrize("make, reason", BAD_WEIGHTS.values(), ids=BAD_WEIGHTS.keys())
def test_a_bad_weights_file_is_one_line_naming_it(tmp_path, make, reason):
    path = tmp_path / "judge.safetensors"
    make(path)
    with pytest.raises(ValueError, match=reason) as err:
        Judge.load(path)
    message = str(err.value)
    assert message.startswith(f"{path} is not a judge safetensors file (")
    assert "\n" not in message
    assert err.value.__suppress_context__ or err.value.__context__ is None  # no chained trace


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="judge weights not found: .*missing.safetensors"):
        Judge.load(tmp_path / "missing.safetensors")
