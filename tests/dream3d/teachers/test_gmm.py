import math

import pytest
import torch

from dream3d.teachers.gmm import GMMTeacher, gmm_preset


def _fd_score(teacher, x, t, cond, h=1e-5):
    """Central finite differences of the exact log-density, float64."""
    grads = []
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        up, down = teacher.log_prob(x + e, t, cond), teacher.log_prob(x - e, t, cond)
        grads.append((up - down) / (2 * h))
    return torch.stack(grads, 1)


@pytest.mark.parametrize("step", [0, 50, 400, 999])
@pytest.mark.parametrize("conditional", [False, True])
def test_eps_is_minus_sigma_times_the_finite_difference_score(step, conditional):
    g = torch.Generator().manual_seed(step)
    teacher = GMMTeacher(
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.tensor([0.3, 0.5, 0.2, 0.4, 0.6]),
        weights=torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0]),
        labels=torch.tensor([0, 0, 1, 1, 1]),
    )
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    t = torch.full((16,), step)
    cond = torch.randint(-1, 2, (16,), generator=g) if conditional else None
    s = (1 - teacher.alphas_cumprod[step]).sqrt()
    fd = _fd_score(teacher, x, t, cond)
    assert torch.allclose(teacher.eps(x, t, cond), -s * fd, atol=1e-6, rtol=1e-6)


def test_clean_log_prob_of_one_gaussian():
    teacher = GMMTeacher(torch.zeros(1, 2), torch.tensor(2.0))
    x = torch.tensor([[1.0, 1.0]])
    expect = -math.log(2 * math.pi * 4.0) - 2.0 / (2 * 4.0)
    assert teacher.log_prob(x).item() == pytest.approx(expect)


def test_samples_have_the_mixture_moments():
    teacher = gmm_preset("ring8")
    x = teacher.sample(40_000, torch.Generator().manual_seed(0)).double()
    assert x.mean(0).abs().max() < 0.05
    # E|x|^2 = R^2 + 2 std^2 for modes on a circle of radius R
    assert x.pow(2).sum(1).mean().item() == pytest.approx(4.0 + 2 * 0.04, rel=0.02)


def test_conditional_samples_stay_in_their_class():
    teacher = gmm_preset("ring8")
    cond = teacher.encode_prompt(["mode 3"] * 500)
    x = teacher.sample(500, torch.Generator().manual_seed(0), cond).double()
    assert (x - teacher.means[3]).norm(dim=1).max() < 1.0


def test_prompts():
    teacher = gmm_preset("ring8")
    assert teacher.encode_prompt(["", "mode 2"]).tolist() == [-1, 2]
    with pytest.raises(ValueError, match="mode 0, mode 1"):
        teacher.encode_prompt(["a chair"])
    with pytest.raises(ValueError, match="ring8, grid25, thin-ring"):
        gmm_preset("spiral")


def test_float32_eps_far_from_a_thin_ring_is_the_nearest_components_by_hand():
    """At (40, -30), 48 from the ring, the nearest of the 256 components (k = -26: the point's
    angle is -26.22 steps of 2 pi / 256) outweighs the next by e^-20, so in float64 by hand
    eps = s (x - a mu_k) / (a^2 sigma^2 + s^2) with abar_0 = 1 - 0.00085; float32 densities
    of that far point underflow, float32 eps must not. At the centre the ring's symmetry
    gives 0 (to the ~1e-7 wobble of the preset's float32 means)."""
    teacher = gmm_preset("thin-ring")
    x = torch.tensor([[40.0, -30.0], [0.0, 0.0]])
    eps = teacher.eps(x, torch.tensor([0, 0]))
    assert eps.dtype == torch.float32 and torch.isfinite(eps).all()
    abar = 1 - 0.00085
    a, s = math.sqrt(abar), math.sqrt(1 - abar)
    angle = -26 * 2 * math.pi / 256
    var = abar * 1e-3**2 + (1 - abar)
    expected = [s * (40 - a * 2 * math.cos(angle)) / var, s * (-30 - a * 2 * math.sin(angle)) / var]
    assert eps[0].tolist() == pytest.approx(expected, rel=1e-5)  # (1315.37, -986.98)
    assert eps[1].abs().max() < 1e-3
