import torch

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
