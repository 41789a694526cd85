import copy

import pytest
import torch
from torch import nn

from dream3d.diffusion import add_noise, alphas_cumprod
from dream3d.guidance import IKL, SDS, GuidanceConfig, IKLConfig, inject, make_guidance
from dream3d.guidance.fake_scores import MLPScore
from dream3d.teachers.gmm import GMMTeacher, gmm_preset


def _draws(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = 3 * torch.randn(n, 2, generator=g, dtype=dtype)
    t = torch.randint(0, 1000, (n,), generator=g)
    eps = torch.randn(n, 2, generator=g, dtype=dtype)
    cond = torch.randint(-1, 8, (n,), generator=g)
    return x0, t, eps, cond


class _LinearTeacher:
    """A toy teacher with eps known by hand: x_t for the prompt (cond 0) and 0.5 x_t + 0.2 for
    "" (cond -1); T = 2 with abar = (0.64, 0.36), so (a_t, s_t) = (0.8, 0.6) and (0.6, 0.8)."""

    alphas_cumprod = torch.tensor([0.64, 0.36], dtype=torch.float64)

    def encode_prompt(self, prompts):
        return torch.tensor([-1 if p == "" else 0 for p in prompts])

    def eps(self, x_t, t, cond):
        return torch.where((cond < 0)[:, None], 0.5 * x_t + 0.2, x_t)


# Two samples at t = (0, 1), scale 3, by hand:
#   x0 = (1, 2), eps = (0.5, -1): x_t = 0.8 x0 + 0.6 eps = (1.1, 1.0); eps_c = (1.1, 1.0),
#   eps_u = (0.75, 0.7), eps_cfg = eps_u + 3 (eps_c - eps_u) = (1.8, 1.6), minus eps: (1.3, 2.6)
#   x0 = (-1, 0.5), eps = (1, 1): x_t = 0.6 x0 + 0.8 eps = (0.2, 1.1); eps_c = (0.2, 1.1),
#   eps_u = (0.3, 0.75), eps_cfg = (0.0, 1.8), minus eps: (-1.0, 0.8)
_X0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
_EPS = torch.tensor([[0.5, -1.0], [1.0, 1.0]], dtype=torch.float64)
_T = torch.tensor([0, 1])
_COND = torch.tensor([0, 0])
_G = {  # w(t) (eps_cfg - eps) per weighting
    "uniform": [[1.3, 2.6], [-1.0, 0.8]],
    "sds": [[0.36 * 1.3, 0.36 * 2.6], [0.64 * -1.0, 0.64 * 0.8]],  # w = 1 - abar
    "snr": [[4 / 3 * 1.3, 4 / 3 * 2.6], [0.75 * -1.0, 0.75 * 0.8]],  # w = a_t / s_t
    # w = (s_t / a_t) / mean|x0 - x0_hat|, x0_hat = (x_t - s_t eps_cfg) / a_t of the teacher:
    # (0.025, 0.05), mean|x0 - x0_hat| = 1.4625, w = 0.75 / 1.4625 = 20 / 39;
    # (1/3, -17/30), mean|x0 - x0_hat| = 1.2, w = (4/3) / 1.2 = 10 / 9
    "dmd": [[2 / 3, 4 / 3], [-10 / 9, 8 / 9]],
}


@pytest.mark.parametrize("weighting", ["sds", "uniform", "snr", "dmd"])
@pytest.mark.parametrize("name", ["sds", "ikl"])
def test_sds_and_ikl_with_the_dirac_fake_score_give_the_hand_computed_g(name, weighting):
    """Diff-Instruct Corollary 3.4: the dirac fake score's eps is the drawn noise, so IKL's g is
    SDS's; both against w(t) (eps_u + 3 (eps_c - eps_u) - eps) worked out above."""
    options = {"fake": "dirac"} if name == "ikl" else {}
    guidance = make_guidance(name, _LinearTeacher(), weighting=weighting, cfg_scale=3.0, **options)
    g, _ = guidance.grad(_X0, _T, _EPS, _COND)
    assert torch.allclose(g, torch.tensor(_G[weighting], dtype=torch.float64), atol=1e-12)


def test_dmd_weighting_reads_the_teachers_x0_hat_not_the_fakes():
    """With a fake eps of 0 the two x0_hat differ: the teacher's gives w = 20/39 and 10/9 (as
    above), so g = w eps_cfg = (20/39 (1.8, 1.6), 10/9 (0, 1.8)); the fake's, x_t / a_t, would
    give w = 0.75 / 0.5625 and (4/3) / (4/3), i.e. (2.4, 2.133) and (0, 1.8)."""
    ikl = make_guidance("ikl", _LinearTeacher(), fake="dirac", weighting="dmd", cfg_scale=3.0)
    g, _ = ikl.grad(_X0, _T, _EPS, _COND, e_fake=torch.zeros_like(_X0))
    expected = [[20 / 39 * 1.8, 20 / 39 * 1.6], [0.0, 10 / 9 * 1.8]]
    assert torch.allclose(g, torch.tensor(expected, dtype=torch.float64), atol=1e-12)


def test_injected_loss_has_gradient_g_over_batch():
    x0 = torch.randn(8, 3, 4, 4, requires_grad=True)
    g = torch.randn(8, 3, 4, 4)
    inject(x0, g).backward()
    assert torch.allclose(x0.grad, g / 8, atol=1e-7)


def test_guidance_loss_gradient_is_the_g_it_computes():
    teacher = gmm_preset("ring8")
    guidance = SDS(teacher, GuidanceConfig(cfg_scale=1.0))
    x0 = torch.randn(64, 2, requires_grad=True)
    loss, _ = guidance.loss(x0, None, 0.0, torch.Generator().manual_seed(3))
    loss.backward()
    t, eps = guidance.draw(x0, 0.0, torch.Generator().manual_seed(3))
    g, _ = guidance.grad(x0.detach(), t, eps, None)
    assert torch.allclose(x0.grad * 64, g, atol=1e-6)


def test_cfg_and_sds_weighting_by_hand():
    teacher = gmm_preset("ring8")
    x0, t, eps, cond = _draws(32, 1)
    cond = cond.clamp_min(0)
    g, _ = SDS(teacher, GuidanceConfig(cfg_scale=30.0)).grad(x0, t, eps, cond)
    x_t = add_noise(x0, t, eps, teacher.alphas_cumprod)
    e_c, e_u = teacher.eps(x_t, t, cond), teacher.eps(x_t, t, None)
    w = (1 - teacher.alphas_cumprod[t])[:, None]
    assert torch.allclose(g, w * (e_u + 30.0 * (e_c - e_u) - eps), atol=1e-10)


class _NaNTeacher:
    """A GMM whose first output coordinate is NaN: exercises the guard."""

    def __init__(self):
        self.inner = gmm_preset("ring8")
        self.alphas_cumprod = self.inner.alphas_cumprod

    def encode_prompt(self, prompts):
        return self.inner.encode_prompt(prompts)

    def eps(self, x_t, t, cond):
        e = self.inner.eps(x_t, t, cond)
        e[:, 0] = float("nan")
        return e


def test_nan_guard_and_grad_clip():
    x0, t, eps, _ = _draws(16, 2)
    g, logs = SDS(_NaNTeacher(), GuidanceConfig(weighting="uniform", grad_clip=0.1)).grad(
        x0, t, eps
    )
    assert logs["nonfinite"] == 16
    assert torch.all(g[:, 0] == 0) and g.abs().max() <= 0.1
    assert g[:, 1].abs().max() == pytest.approx(0.1)  # the clip is active on the other coord


def test_learned_fake_score_fits_a_gaussian_generator():
    """DSM on samples of N(m, 0.5^2 I) recovers that Gaussian's exact eps."""
    truth = GMMTeacher(torch.tensor([[1.0, -0.5]]), torch.tensor(0.5))
    ikl = IKL(truth, IKLConfig(fake="mlp", fake_steps=1, fake_lr=3e-3, weighting="uniform"), dim=2)
    rng = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(800):
        ikl.update_fake(truth.sample(256, rng), None, 0.0, rng)
    x0 = truth.sample(2000, rng)
    t = torch.randint(20, 981, (2000,), generator=rng)
    x_t = add_noise(x0, t, torch.randn(2000, 2, generator=rng), ikl.abar)
    with torch.no_grad():
        err = (ikl.fake.eps(x_t, t) - truth.eps(x_t, t)).pow(2).mean().item()
    spread = truth.eps(x_t, t).pow(2).mean().item()
    assert err < 0.02 * spread


class _NetTeacher(nn.Module):
    """A small network teacher: an MLP eps-model with class prompts."""

    def __init__(self):
        super().__init__()
        self.alphas_cumprod = alphas_cumprod()
        torch.manual_seed(0)
        self.net = MLPScore(2, 1000, hidden=32, layers=2, n_classes=2)

    def encode_prompt(self, prompts):
        return torch.tensor([{"": -1, "a": 0, "b": 1}[p] for p in prompts])

    def eps(self, x_t, t, cond):
        return self.net.eps(x_t, t, cond)


def test_teacher_copy_starts_at_the_teacher_and_trains_alone():
    teacher = _NetTeacher()
    ikl = make_guidance("ikl", teacher, fake="teacher", cfg_scale=1.0)
    x0, t, eps, _ = _draws(64, 4, torch.float32)
    cond = torch.randint(0, 2, (64,))
    g, _ = ikl.grad(x0, t, eps, cond)
    assert g.abs().max().item() < 1e-6  # fake == teacher at the start: no gradient yet
    frozen = [p.clone() for p in teacher.parameters()]
    ikl.update_fake(x0, cond, 0.0, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(frozen, teacher.parameters()))
    assert ikl.grad(x0, t, eps, cond)[0].abs().max().item() > 1e-4


def test_the_mlp_fake_score_reads_the_class_and_no_caption_is_the_empty_prompts_row():
    torch.manual_seed(0)
    fake = MLPScore(dim=2, steps=1000, hidden=16, layers=2, n_classes=3)
    x_t, t = torch.randn(1, 2).expand(4, 2), torch.full((4,), 10)
    with torch.no_grad():
        e = fake.eps(x_t, t, torch.tensor([-1, 0, 1, 2]))  # "", then classes 0, 1, 2
        e_none = fake.eps(x_t[:1], t[:1], None)
    assert torch.allclose(e_none[0], e[0], atol=1e-6)
    gaps = [(e[i] - e[j]).abs().max() for i in range(4) for j in range(i)]
    assert min(gaps) > 1e-4  # each class has its own row


def test_bad_options_are_refused_with_the_choices():
    teacher = gmm_preset("ring8")
    with pytest.raises(ValueError, match="sds, ikl"):
        make_guidance("vsd", teacher)
    with pytest.raises(ValueError, match="k must be >= 1"):
        make_guidance("ikl", teacher, dim=2, fake_steps=0)
    with pytest.raises(ValueError, match="dirac, mlp, teacher"):
        make_guidance("ikl", teacher, dim=2, fake="gan")
    with pytest.raises(ValueError, match="needs a network teacher"):
        make_guidance("ikl", teacher, fake="teacher")
    with pytest.raises(ValueError, match="unknown guidance options: cfg"):
        make_guidance("sds", teacher, cfg=3)


def _optimizer_steps(guidance, x0, cond=None) -> int:
    steps = []
    real = guidance.opt.step
    guidance.opt.step = lambda *a, **k: steps.append(1) or real(*a, **k)
    guidance.update_fake(x0, cond)
    return len(steps)


def test_a_fake_score_from_scratch_is_warmed_up_and_a_teacher_copy_is_not():
    """The oracle has no weights to copy: its UNet fake score is fitted 200 steps on the first
    samples before the first generator step (it used to start untrained)."""
    from dream3d.guidance.fake_scores import TeacherCopy, UNetScore
    from dream3d.guidance.ikl import WARMUP_FROM_SCRATCH
    from dream3d.teachers.oracle import OracleTeacher

    oracle = OracleTeacher({"a red cube, front view": torch.zeros(2, 3, 8, 8)})
    ikl = make_guidance("ikl", oracle, fake_size=8, fake_steps=2)
    assert isinstance(ikl.fake, UNetScore) and WARMUP_FROM_SCRATCH == 200
    x0 = torch.zeros(1, 3, 8, 8)
    assert _optimizer_steps(ikl, x0) == 2 + 200  # first call: k + the warm-up
    assert _optimizer_steps(ikl, x0) == 2  # then k
    assert _optimizer_steps(make_guidance("ikl", oracle, fake_size=8, fake_warmup=0), x0) == 1

    class Net(nn.Module):  # a network teacher: its copy starts as the teacher, no warm-up
        alphas_cumprod = alphas_cumprod("linear")

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def encode_prompt(self, prompts):
            return torch.zeros(len(prompts), 1)

        def eps(self, x_t, t, cond=None):
            return self.w * x_t

    copy = make_guidance("ikl", Net())
    assert isinstance(copy.fake, TeacherCopy) and _optimizer_steps(copy, torch.zeros(4, 2)) == 1


def test_fake_warmup_is_that_many_extra_steps_on_the_first_call_only():
    """fake_warmup=3 on an MLP (whose default is 200) and 4 on a teacher copy (default 0): the
    first update takes k + warm-up optimizer steps, later ones k, and a fake score restored
    from a checkpoint is warm already."""
    x0 = torch.zeros(4, 2)
    mlp = make_guidance("ikl", gmm_preset("ring8"), dim=2, fake="mlp", fake_warmup=3, fake_steps=2)
    assert _optimizer_steps(mlp, x0) == 2 + 3
    assert _optimizer_steps(mlp, x0) == 2
    resumed = make_guidance("ikl", gmm_preset("ring8"), dim=2, fake="mlp", fake_warmup=3)
    resumed.load_state_dict(mlp.state_dict())
    assert _optimizer_steps(resumed, x0) == 1
    net = make_guidance("ikl", _NetTeacher(), fake="teacher", fake_warmup=4)
    assert _optimizer_steps(net, x0, torch.zeros(4, dtype=torch.long)) == 1 + 4


def test_cfg_scales_that_are_negative_or_not_finite_are_refused():
    for bad in (-5.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="cfg scale must be a finite number >= 0"):
            GuidanceConfig(cfg_scale=bad)
        with pytest.raises(ValueError, match="cfg scale must be a finite number >= 0"):
            IKLConfig(cfg_scale=bad)
    assert GuidanceConfig(cfg_scale=0.0).cfg_scale == 0.0


def test_shared_draw_gives_g_at_the_fake_steps_t_and_eps_with_its_pre_update_output():
    teacher = gmm_preset("ring8")
    x0 = torch.randn(32, 2)
    options = dict(fake="mlp", fake_warmup=0, cfg_scale=1.0, weighting="uniform")
    torch.manual_seed(0)
    ikl = make_guidance("ikl", teacher, dim=2, share_draw=True, **options)
    before = copy.deepcopy(ikl.fake)
    rng = torch.Generator().manual_seed(5)
    ikl.update_fake(x0, None, 0.0, rng)
    x = x0.clone().requires_grad_(True)
    ikl.loss(x, None, 0.0, rng)[0].backward()
    # by hand: the fake step drew t and eps first from the same generator; g there is
    # eps_teacher(x_t) - eps_fake_before_its_update(x_t) (uniform w = 1), and loss.grad = g / B
    t, eps = ikl.draw(x0, 0.0, torch.Generator().manual_seed(5))
    x_t = add_noise(x0, t, eps, ikl.abar)
    with torch.no_grad():
        g = teacher.eps(x_t, t, None) - before.eps(x_t, t, None, x0)
    assert torch.allclose(x.grad * 32, g, atol=1e-5)
    # the fake did move, and without sharing g comes from a fresh draw after the update
    with torch.no_grad():
        assert (ikl.fake.eps(x_t, t, None, x0) - before.eps(x_t, t, None, x0)).abs().max() > 1e-4
    torch.manual_seed(0)
    fresh = make_guidance("ikl", teacher, dim=2, share_draw=False, **options)
    rng = torch.Generator().manual_seed(5)
    fresh.update_fake(x0, None, 0.0, rng)
    y = x0.clone().requires_grad_(True)
    fresh.loss(y, None, 0.0, rng)[0].backward()
    assert not torch.allclose(y.grad * 32, g, atol=1e-3)
    # a later plain grad call is not affected by a shared draw: it reads the updated fake
    assert ikl._shared is None
    with torch.no_grad():
        later = ikl.grad(x0, t, eps)[0]
        assert torch.allclose(later, teacher.eps(x_t, t, None) - ikl.fake.eps(x_t, t, None, x0))
