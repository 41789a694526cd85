"""SiD and DMD against their papers' formulas, worked out by hand on linear networks."""

import pytest
import torch
from torch import nn

from dream3d.diffusion import alphas_cumprod
from dream3d.guidance import DMD, SiD, make_guidance

# T = 2 with abar = (0.64, 0.36): (a_t, s_t) = (0.8, 0.6) at t = 0 and (0.6, 0.8) at t = 1
_ABAR = torch.tensor([0.64, 0.36], dtype=torch.float64)
_X0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
_EPS = torch.tensor([[0.5, -1.0], [1.0, 1.0]], dtype=torch.float64)
_T = torch.tensor([0, 1])
_A = torch.tensor([[0.8], [0.6]], dtype=torch.float64)
_S = torch.tensor([[0.6], [0.8]], dtype=torch.float64)


class _Linear:
    """eps(x_t) = c x_t, the same for every prompt (so CFG changes nothing)."""

    alphas_cumprod = _ABAR

    def __init__(self, c: float):
        self.c = c

    def encode_prompt(self, prompts):
        return torch.zeros(len(prompts), 1, dtype=torch.float64)

    def eps(self, x_t, t, cond=None):
        return self.c * x_t


class _HalfFake:
    """A fake score with eps = x_t / 2, standing in for IKL's fitted one."""

    trainable = False

    def eps(self, x_t, t, cond, x0=None, pose=None):
        return 0.5 * x_t


def _with_half_fake(guidance):
    guidance.fake, guidance.opt = _HalfFake(), None
    return guidance


@pytest.mark.parametrize("alpha", [1.2, 0.5])
def test_sid_g_is_the_derivative_through_x_t_of_its_loss_by_hand(alpha):
    """Teacher eps = x_t, fake eps = x_t / 2, x_t = a x + s eps. Then, elementwise,
    f_q = (1 - s) x_t / a, f_p = (1 - s/2) x_t / a, d = f_q - f_p = -s x_t / (2a),
    e = f_q - x; with dx_t/dx = a: dd/dx = -s/2 and de/dx = (1 - s) - 1 = -s. SiD's loss
    L = sum d (e - alpha d) / n with n = mean|x - f_q| held constant, so
    dL/dx = (-s/2 (e - alpha d) + d (-s + alpha s / 2)) / n."""
    sid = _with_half_fake(make_guidance("sid", _Linear(1.0), dim=2, alpha=alpha, cfg_scale=1.0))
    x_t = _A * _X0 + _S * _EPS
    d = -_S * x_t / (2 * _A)
    e = (1 - _S) * x_t / _A - _X0
    n = e.abs().mean(1, keepdim=True)
    expected = (-_S / 2 * (e - alpha * d) + d * (-_S + alpha * _S / 2)) / n
    cond = torch.zeros(2, 1, dtype=torch.float64)
    g, logs = sid.grad(_X0, _T, _EPS, cond)
    assert torch.allclose(g, expected, atol=1e-12)
    assert logs["sid_loss"].item() == pytest.approx(((d * (e - alpha * d)).sum(1) / n[:, 0]).mean())


def test_sid_trains_the_generator_alone_and_its_loss_has_gradient_g_over_batch():
    """The loss's gradient reaches the samples only (teacher and fake frozen for the step),
    and equals g / B as the other guidances' injected losses do."""

    class Net(nn.Module):
        alphas_cumprod = alphas_cumprod("linear")

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.7))

        def encode_prompt(self, prompts):
            return torch.zeros(len(prompts), 1)

        def eps(self, x_t, t, cond=None):
            return self.w * x_t + 0.1 * x_t**2

    teacher = Net()
    sid = make_guidance("sid", teacher, cfg_scale=1.0)
    with torch.no_grad():
        sid.fake.net.w.fill_(0.4)  # a fake that differs from the teacher
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss, _ = sid.loss(x0, None, 0.0, torch.Generator().manual_seed(1))
    loss.backward()
    assert teacher.w.grad is None and sid.fake.net.w.grad is None
    t, eps = sid.draw(x0, 0.0, torch.Generator().manual_seed(1))
    g, _ = sid.grad(x0.detach(), t, eps)
    assert torch.allclose(x0.grad * 4, g, atol=1e-6) and g.abs().max() > 1e-3


def test_sid_with_the_dirac_fake_score_reduces_to_one_minus_alpha_times_a_square():
    """With the exact point-mass score, f_p = x, so e = d and L = (1 - alpha) sum d^2 / n:
    at alpha = 1 SiD gives no gradient at all."""
    sid = make_guidance("sid", _Linear(1.0), fake="dirac", alpha=1.0, cfg_scale=1.0)
    g, _ = sid.grad(_X0, _T, _EPS)
    assert g.abs().max().item() < 1e-12


def test_sid_never_reuses_the_fake_steps_detached_draw():
    sid = _with_half_fake(make_guidance("sid", _Linear(1.0), dim=2, share_draw=True))
    sid._shared = (_T, _EPS, torch.zeros_like(_X0))  # what IKL would reuse
    x0 = _X0.clone().requires_grad_(True)
    sid.loss(x0, None, 0.0, torch.Generator().manual_seed(0))
    assert sid._shared is None


def test_dmd_g_is_the_x0_difference_normalised_by_the_teachers_error():
    """DMD eq. 7-8 in x0 terms, computed here without eps weights: g = (x0_fake - x0_real) /
    mean|x - x0_real|, x0_real = (x_t - s 3 x_t) / a (teacher eps = 3 x_t), x0_fake = (x_t -
    s x_t / 2) / a."""
    dmd = _with_half_fake(make_guidance("dmd", _Linear(3.0), dim=2, cfg_scale=1.0))
    x_t = _A * _X0 + _S * _EPS
    real, fake = (x_t - _S * 3 * x_t) / _A, (x_t - _S * 0.5 * x_t) / _A
    expected = (fake - real) / (_X0 - real).abs().mean(1, keepdim=True)
    g, _ = dmd.grad(_X0, _T, _EPS)
    assert torch.allclose(g, expected, atol=1e-12)


def test_dmd_fits_its_fake_five_times_per_generator_step():
    from tests.dream3d.guidance.test_guidance import _NetTeacher, _optimizer_steps

    dmd = make_guidance("dmd", _NetTeacher(), cfg_scale=1.0)
    assert isinstance(dmd, DMD) and dmd.config.weighting == "dmd"
    assert _optimizer_steps(dmd, torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)) == 5
    sid = make_guidance("sid", _NetTeacher(), cfg_scale=1.0)
    assert isinstance(sid, SiD)
    assert _optimizer_steps(sid, torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)) == 1


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf")])
def test_bad_sid_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        make_guidance("sid", _Linear(1.0), dim=2, alpha=alpha)


def test_sid_differentiates_through_stable_diffusions_unet_and_its_lora(tiny_sd):
    """On a latent teacher SiD's g flows through the UNet, with the LoRA fake's adapters on
    for the fake's pass; neither the UNet nor the adapters get a gradient."""
    from dream3d.teachers.stable_diffusion import StableDiffusionTeacher

    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    sid = make_guidance("sid", teacher, cfg_scale=2.0)
    assert type(sid.fake).__name__ == "LoRAScore"
    with torch.no_grad():  # adapters that change the fake's output: f_p != f_q
        for p in sid.fake.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    cond = teacher.encode_prompt(["a red cube", "a blue cube"])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss, _ = sid.loss(x, cond, 0.0, torch.Generator().manual_seed(2))
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    assert all(p.grad is None for p in [*teacher.parameters(), *sid.fake.parameters()])
