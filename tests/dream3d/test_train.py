import pytest
import torch

from dream3d.guidance import make_guidance
from dream3d.teachers.gmm import gmm_preset
from dream3d.train import NonFiniteError, TrainConfig, train
from generators.onestep import MLPGenerator
from generators.particles import Particles


def _run(seed):
    torch.manual_seed(seed)
    gen = MLPGenerator(2, hidden=32)
    guidance = make_guidance("ikl", gmm_preset("ring8"), dim=2, fake_hidden=32, cfg_scale=1.0)
    history = train(
        gen, guidance, TrainConfig(steps=30, batch=32, lr=1e-3, seed=seed, progress=False)
    )
    return [(r["loss"], r["fake_loss"], r["t"]) for r in history], gen.net[0].weight.detach()


def test_same_seed_same_numbers():
    h1, w1 = _run(3)
    h2, w2 = _run(3)
    assert h1 == h2 and torch.equal(w1, w2)
    h3, _ = _run(4)
    assert h3 != h1


def test_sds_moves_a_particle_up_the_teacher_density():
    teacher = gmm_preset("ring8")
    particle = Particles(torch.tensor([[1.2, 0.3]]))
    before = teacher.log_prob(particle.x.detach()).item()
    guidance = make_guidance("sds", teacher, cfg_scale=1.0, t_range=(0.02, 0.2))
    train(particle, guidance, TrainConfig(steps=200, batch=64, lr=1e-2, progress=False))
    assert teacher.log_prob(particle.x.detach()).item() > before + 3.0


def test_non_finite_loss_stops_with_a_clear_error():
    particle = Particles(torch.tensor([[float("nan"), 0.0]]))
    guidance = make_guidance("sds", gmm_preset("ring8"), cfg_scale=1.0, nan_guard=False)
    with pytest.raises(NonFiniteError, match="non-finite generator loss at step 0"):
        train(particle, guidance, TrainConfig(steps=5, batch=4, progress=False))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"steps": -1}, "steps must be >= 1"),
        ({"lr": 0.0}, "learning rate"),
        ({"lr_schedule": "step"}, "constant, cosine"),
        ({"betas": (1.0, 0.999)}, "Adam betas must be two numbers in"),
        ({"betas": (0.9, -0.1)}, "Adam betas must be two numbers in"),
        ({"betas": (0.9,)}, "Adam betas must be two numbers in"),
        ({"ema_halflife": 0.0}, "EMA half-life must be > 0"),
        ({"ema_halflife": float("nan")}, "EMA half-life must be > 0"),
    ],
)
def test_bad_train_config(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def _ikl_run(tmp_path, on_log=None, resume=False, steps=30):
    torch.manual_seed(0)
    gen = MLPGenerator(2, hidden=16)
    guidance = make_guidance("ikl", gmm_preset("ring8"), dim=2, fake_hidden=16, fake_warmup=3)
    config = TrainConfig(
        steps=steps, batch=16, lr_schedule="cosine", log_every=1, save_every=10, progress=False
    )
    path = tmp_path / "checkpoint.pt"
    history = train(gen, guidance, config, on_log=on_log, checkpoint=path, resume=resume)
    return [{k: v for k, v in r.items() if k != "time"} for r in history], gen


def test_resume_after_a_crash_or_ctrl_c_equals_the_uninterrupted_run(tmp_path):
    import os
    import signal

    whole, gen = _ikl_run(tmp_path / "whole")

    def crash(step, row):
        if step == 14:
            raise RuntimeError("power cut")
        return row

    with pytest.raises(RuntimeError, match="power cut"):
        _ikl_run(tmp_path / "crash", on_log=crash)
    ckpt = torch.load(tmp_path / "crash" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 10  # the last periodic save
    resumed, gen2 = _ikl_run(tmp_path / "crash", resume=True)

    def ctrl_c(step, row):
        if step == 21:
            os.kill(os.getpid(), signal.SIGINT)  # DeferredInterrupt finishes the step, saves
        return row

    with pytest.raises(KeyboardInterrupt):
        _ikl_run(tmp_path / "sigint", on_log=ctrl_c)
    assert torch.load(tmp_path / "sigint" / "checkpoint.pt", weights_only=True)["step"] == 22
    resumed3, gen3 = _ikl_run(tmp_path / "sigint", resume=True)
    assert resumed == whole and resumed3 == whole and len(whole) == 30
    for other in (gen2, gen3):
        for a, b in zip(gen.parameters(), other.parameters()):
            assert torch.equal(a, b)


def test_a_nan_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    particle = Particles(torch.tensor([[1.0, 0.0]]))
    guidance = make_guidance("sds", gmm_preset("ring8"), cfg_scale=1.0)
    real = guidance.loss
    calls = []

    def loss(x0, *args, **kwargs):
        calls.append(1)
        value, logs = real(x0, *args, **kwargs)
        return (value * float("nan") if len(calls) > 7 else value), logs

    monkeypatch.setattr(guidance, "loss", loss)
    config = TrainConfig(steps=20, batch=4, save_every=5, progress=False)
    with pytest.raises(NonFiniteError, match="at step 7"):
        train(particle, guidance, config, checkpoint=tmp_path / "c.pt")
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ckpt["step"] == 5 and torch.isfinite(ckpt["generator"]["x"]).all()
    with pytest.raises(ValueError, match="no checkpoint"):
        train(particle, guidance, config, checkpoint=tmp_path / "none.pt", resume=True)
    (tmp_path / "c.pt").write_bytes(b"PK" + bytes(30))  # cut short
    with pytest.raises(ValueError, match="c.pt is not a dream3d checkpoint"):
        train(particle, guidance, config, checkpoint=tmp_path / "c.pt", resume=True)


class _Slope:
    """A guidance whose loss is x.sum(): a gradient of 1 on every coordinate, every step, so
    each Adam step moves a coordinate by exactly its learning rate (m_hat / sqrt(v_hat) = 1)."""

    def to_teacher(self, x):
        return x

    def update_fake(self, *args, **kwargs):
        return {}

    def loss(self, x, *args, **kwargs):
        return x.sum(), {"grad_norm": torch.ones(())}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize(
    "schedule, factors",
    [
        # 0.5 (1 + cos(pi k / 4)) for k = 0..3: 1, (2 + sqrt 2) / 4, 1/2, (2 - sqrt 2) / 4
        ("cosine", [1.0, (2 + 2**0.5) / 4, 0.5, (2 - 2**0.5) / 4]),
        ("constant", [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_the_learning_rate_at_each_step_is_the_schedules(schedule, factors):
    particle = Particles(torch.zeros(1, 2))
    path = []

    def record(step, row):
        path.append(particle.x.detach()[0, 0].item())
        return row

    config = TrainConfig(steps=4, lr=0.1, lr_schedule=schedule, log_every=1, progress=False)
    train(particle, _Slope(), config, on_log=record)
    moves = [a - b for a, b in zip([0.0, *path], path)]
    assert moves == pytest.approx([0.1 * f for f in factors], abs=1e-7)


def test_with_an_ema_the_logs_see_the_average_and_the_generator_ends_holding_it(tmp_path):
    """_Slope moves x by -0.1 a step: raw x = -0.1, -0.2, -0.3, -0.4. Half-life 1 step: decay
    0.5, capped early at (1 + k) / (10 + k) = 0.1, 2/11, 0.25, 4/13 (all below 0.5), from 0:
    0.9 (-0.1) = -0.09; 2/11 (-0.09) + 9/11 (-0.2) = -0.18; 0.25 (-0.18) + 0.75 (-0.3) = -0.27;
    4/13 (-0.27) + 9/13 (-0.4) = -0.36."""
    particle = Particles(torch.zeros(1, 2))
    seen = []

    def record(step, row):
        seen.append(particle.x.detach()[0, 0].item())
        return row

    config = TrainConfig(steps=4, lr=0.1, ema_halflife=1.0, log_every=1, progress=False)
    path = tmp_path / "c.pt"
    train(particle, _Slope(), config, on_log=record, checkpoint=path)
    assert seen == pytest.approx([-0.09, -0.18, -0.27, -0.36], abs=1e-7)
    assert particle.x[0, 0].item() == pytest.approx(-0.36, abs=1e-7)
    ckpt = torch.load(path, weights_only=True)  # both: the raw weights go on when resumed
    assert ckpt["generator"]["x"][0, 0].item() == pytest.approx(-0.4, abs=1e-7)
    assert ckpt["ema"]["shadow"]["x"][0, 0].item() == pytest.approx(-0.36, abs=1e-7)


class _Alternate(_Slope):
    """A gradient of +1, then -1, then +1...: Adam's first moment decides the second move."""

    def __init__(self):
        self.sign = -1.0

    def loss(self, x, *args, **kwargs):
        self.sign = -self.sign
        return self.sign * x.sum(), {"grad_norm": torch.ones(())}


@pytest.mark.parametrize(
    "betas, second",
    [
        # beta1 0: m_hat / sqrt(v_hat) = g / |g|, a full step back
        ((0.0, 0.999), 0.1),
        # beta1 0.9: m = 0.9 (0.1) - 0.1 = -0.01, m_hat = -0.01 / 0.19; v_hat = (0.999 0.001 +
        # 0.001) / (1 - 0.999^2) = 1: back by 0.1 (0.01 / 0.19)
        ((0.9, 0.999), 0.1 * 0.01 / 0.19),
    ],
)
def test_adams_betas_are_the_configs(betas, second):
    particle = Particles(torch.zeros(1, 2))
    train(particle, _Alternate(), TrainConfig(steps=2, lr=0.1, betas=betas, progress=False))
    assert particle.x[0, 0].item() == pytest.approx(-0.1 + second, abs=1e-6)
