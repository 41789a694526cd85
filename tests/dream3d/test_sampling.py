import math

import pytest
import torch

from dream3d.diffusion import alphas_cumprod
from dream3d.sampling import ddim_sample, ddim_step, ddim_timesteps
from dream3d.teachers.gmm import gmm_preset


def test_timesteps_are_evenly_spaced_and_descending():
    ts = ddim_timesteps(1000, 4)
    assert ts.tolist() == [999, 666, 333, 0]
    assert ddim_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="1..1000"):
        ddim_timesteps(1000, 0)


def test_ddim_step_is_exact_for_a_point_mass():
    """With the true eps of x_t = a x0 + s eps, eta = 0 moves to a' x0 + s' eps exactly."""
    abar = alphas_cumprod("linear")
    x0, eps = torch.tensor([0.7, -1.2]), torch.tensor([0.3, 2.0])
    ab_t, ab_prev = float(abar[800]), float(abar[400])
    x_t = ab_t**0.5 * x0 + (1 - ab_t) ** 0.5 * eps
    out = ddim_step(x_t, eps, ab_t, ab_prev, 0.0, None)
    assert torch.allclose(out, ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps, atol=1e-6)
    assert torch.allclose(ddim_step(x_t, eps, ab_t, 1.0, 1.0, None), x0, atol=1e-5)


def _nearest(x, means):
    d = torch.cdist(x.double(), means)
    return d.min(1)


def test_ddim_on_ring8_lands_on_every_mode():
    teacher = gmm_preset("ring8")
    g = torch.Generator().manual_seed(0)
    x = ddim_sample(teacher, None, (4000, 2), steps=50, generator=g)
    dist, k = _nearest(x, teacher.means)
    assert (dist < 3 * 0.2).double().mean() >= 0.9
    mass = torch.bincount(k, minlength=8).double() / 4000
    assert mass.min() >= 0.08 and mass.max() <= 0.17


@pytest.mark.parametrize("eta,scale", [(0.0, 1.0), (1.0, 3.0)])
def test_class_conditional_ddim_lands_in_its_mode(eta, scale):
    teacher = gmm_preset("ring8")
    cond = teacher.encode_prompt([f"mode {k}" for k in range(8)] * 100)
    g = torch.Generator().manual_seed(1)
    x = ddim_sample(teacher, cond, (800, 2), steps=50, cfg_scale=scale, generator=g, eta=eta)
    dist, k = _nearest(x, teacher.means)
    assert (k == cond).double().mean() >= 0.99
    assert (dist < 3 * 0.2).double().mean() >= 0.95


def test_one_cond_row_is_broadcast_and_seeds_repeat():
    teacher = gmm_preset("ring8")
    cond = teacher.encode_prompt(["mode 2"])
    a = ddim_sample(teacher, cond, (64, 2), steps=20, generator=torch.Generator().manual_seed(3))
    b = ddim_sample(teacher, cond, (64, 2), steps=20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    angle = torch.atan2(a[:, 1], a[:, 0])
    assert torch.allclose(angle.median(), torch.tensor(2 * math.pi / 8 * 2), atol=0.1)
    with pytest.raises(ValueError, match="3 rows"):
        ddim_sample(teacher, cond.repeat(3), (64, 2), steps=2)


def test_clip_x0_clamps_the_estimate_and_keeps_x_t_consistent():
    """With clip_x0, x0_hat lands in [-c, c] and eps is re-derived so that
    x_t = a x0_hat + s eps still holds: a step to abar = 1 returns the clamped x0_hat."""
    abar = alphas_cumprod("linear")
    ab_t = float(abar[950])
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 3, 8, 8, generator=g)
    eps = x_t + 0.05 * torch.randn(x_t.shape, generator=g)  # a 5% eps error: x0_hat ~ +-8
    raw = ddim_step(x_t, eps, ab_t, 1.0, 0.0, None)
    assert raw.abs().max() > 3
    clipped = ddim_step(x_t, eps, ab_t, 1.0, 0.0, None, clip_x0=1.0)
    assert torch.allclose(clipped, raw.clamp(-1, 1), atol=1e-5)
    ab_prev = float(abar[500])
    mid = ddim_step(x_t, eps, ab_t, ab_prev, 0.0, None, clip_x0=1.0)
    eps_c = (x_t - ab_t**0.5 * raw.clamp(-1, 1)) / (1 - ab_t) ** 0.5
    expect = ab_prev**0.5 * raw.clamp(-1, 1) + (1 - ab_prev) ** 0.5 * eps_c
    assert torch.allclose(mid, expect, atol=1e-5)
