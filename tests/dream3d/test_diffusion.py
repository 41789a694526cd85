import math

import pytest
import torch

from dream3d.diffusion import (
    TimeConfig,
    add_noise,
    alphas_cumprod,
    append_dims,
    eps_from_prediction,
    predict_x0,
    sample_t,
    t_bounds,
    weight,
)


def test_sd_schedule_matches_its_betas():
    abar = alphas_cumprod("scaled_linear")
    assert abar.shape == (1000,)
    assert abar[0].item() == pytest.approx(1 - 0.00085, abs=1e-12)
    # beta_999 = 0.012 and abar_999 = prod(1 - beta): SD 1.5's value is 0.0047 to 2 digits
    assert abar[-1].item() == pytest.approx(0.004660, abs=2e-5)
    assert torch.all(abar[1:] < abar[:-1])


def test_linear_schedule_first_and_last_beta():
    abar = alphas_cumprod("linear", 1000)
    assert abar[0].item() == pytest.approx(1 - 1e-4)
    assert (1 - abar[-1] / abar[-2]).item() == pytest.approx(0.02, rel=1e-9)


def test_add_noise_and_predict_x0_invert_each_other():
    abar = alphas_cumprod()
    x0 = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    x_t = add_noise(x0, t, eps, abar)
    a, s = abar[t].sqrt(), (1 - abar[t]).sqrt()
    assert torch.allclose(x_t, append_dims(a, 4) * x0 + append_dims(s, 4) * eps)
    assert torch.allclose(predict_x0(x_t, t, eps, abar), x0)


def test_sample_t_stays_in_range_and_is_seeded():
    t = sample_t(10_000, 1000, (0.02, 0.98), torch.Generator().manual_seed(0))
    assert int(t.min()) == 20 and int(t.max()) == 980
    t2 = sample_t(10_000, 1000, (0.02, 0.98), torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)
    assert int(sample_t(5, 1000, (1.0, 1.0)).max()) == 999


def test_annealing_lowers_t_max():
    assert t_bounds((0.02, 0.98), "none", 1.0, 0.5) == (0.02, 0.98)
    assert t_bounds((0.02, 0.98), "linear", 0.5, 0.5)[1] == pytest.approx(0.74)
    assert t_bounds((0.02, 0.98), "sqrt", 0.25, 0.5)[1] == pytest.approx(0.74)
    assert t_bounds((0.02, 0.98), "linear", 1.0, 0.01) == (0.02, 0.02)


def test_weightings_by_hand():
    abar = torch.tensor([0.75, 0.5])
    assert torch.allclose(weight("sds", abar), torch.tensor([0.25, 0.5]))
    assert torch.allclose(weight("uniform", abar), torch.ones(2))
    assert torch.allclose(weight("snr", abar), torch.tensor([math.sqrt(3.0), 1.0]))
    x0 = torch.zeros(2, 4)
    x0_hat = torch.tensor([[1.0, -1.0, 1.0, -1.0], [2.0, 2.0, 2.0, 2.0]])
    expect = torch.tensor([math.sqrt(0.25 / 0.75) / 1.0, 1.0 / 2.0])
    assert torch.allclose(weight("dmd", abar, x0, x0_hat), expect)


@pytest.mark.parametrize("bad", [(0.0, 0.5), (0.5, 1.2), (0.6, 0.5), (-0.1, 0.2)])
def test_t_range_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="0 < t_min <= t_max <= 1"):
        TimeConfig(t_range=bad)


def test_a_range_of_one_t_and_the_whole_unit_interval_are_accepted():
    assert TimeConfig(t_range=(0.5, 0.5)).t_range == (0.5, 0.5)  # t_min = t_max: one t
    assert TimeConfig(t_range=(0.02, 1.0)).t_range == (0.02, 1.0)


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown weighting 'nope'; choose one of: sds, uniform"):
        weight("nope", torch.ones(1))
    with pytest.raises(ValueError, match="none, linear, sqrt"):
        TimeConfig(anneal="cosine")
    x, t = torch.ones(1, 2), torch.zeros(1).long()
    with pytest.raises(ValueError, match="^unknown prediction 'x0'; choose one of: eps, v, sam"):
        eps_from_prediction(x, x, t, None, "x0")


def test_eps_from_each_prediction_by_hand():
    """abar_t = 0.64 at t = 1 (a = 0.8, s = 0.6) and 0.36 at t = 0 (a = 0.6, s = 0.8).

    Row 0 (t = 1): x0 = (1, -2), eps = (0.5, 3): x_t = a x0 + s eps = (1.1, 0.2) and
    v = a eps - s x0 = (0.4 - 0.6, 2.4 + 1.2) = (-0.2, 3.6).
    Row 1 (t = 0): x0 = (2, 0), eps = (-1, 1): x_t = (1.2 - 0.8, 0.8) = (0.4, 0.8) and
    v = (-0.6 - 1.6, 0.6) = (-2.2, 0.6).
    """
    abar = torch.tensor([0.36, 0.64, 0.5], dtype=torch.float64)
    t = torch.tensor([1, 0])
    x0 = torch.tensor([[1.0, -2.0], [2.0, 0.0]], dtype=torch.float64)
    eps = torch.tensor([[0.5, 3.0], [-1.0, 1.0]], dtype=torch.float64)
    x_t = torch.tensor([[1.1, 0.2], [0.4, 0.8]], dtype=torch.float64)
    v = torch.tensor([[-0.2, 3.6], [-2.2, 0.6]], dtype=torch.float64)
    assert torch.allclose(eps_from_prediction(v, x_t, t, abar, "v"), eps)
    assert torch.allclose(eps_from_prediction(x0, x_t, t, abar, "sample"), eps)
    assert eps_from_prediction(eps, x_t, t, abar, "eps") is eps
    out = eps_from_prediction(v.float(), x_t, t, abar, "v")  # in the prediction's dtype
    assert out.dtype == torch.float32 and torch.allclose(out, eps.float())
    with pytest.raises(ValueError, match="eps, v, sample"):
        eps_from_prediction(v, x_t, t, abar, "epsilon")
