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
    history = train(gen, guidance, TrainConfig(steps=30, batch=32, seed=seed, progress=False))
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
    ],
)
def test_bad_train_config(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)
