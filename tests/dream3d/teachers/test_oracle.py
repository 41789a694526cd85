import pytest
import torch

from dream3d.diffusion import add_noise
from dream3d.teachers.gmm import GMMTeacher
from dream3d.teachers.oracle import OracleTeacher


def _banks(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "a red cube, front view": torch.rand(5, 3, 4, 4, generator=g) * 2 - 1,
        "a blue cube, front view": torch.rand(3, 3, 4, 4, generator=g) * 2 - 1,
    }


def _brute_eps(bank, x_t, t, abar):
    """Float64 eps by the definition: softmax over -|x_t - a x_i|^2 / 2 s^2, difference form."""
    out = []
    for x, tt in zip(x_t.double(), t):
        a, s = abar[tt].sqrt(), (1 - abar[tt]).sqrt()
        d2 = (x[None] - a * bank.double()).flatten(1).pow(2).sum(1)
        w = torch.softmax(-d2 / (2 * s * s), 0)
        denoised = (w[:, None, None, None] * bank.double()).sum(0)
        out.append((x - a * denoised) / s)
    return torch.stack(out)


@pytest.mark.parametrize("step", [0, 3, 100, 600, 999])
def test_eps_equals_the_float64_brute_force(step):
    banks = _banks()
    oracle = OracleTeacher(banks)
    g = torch.Generator().manual_seed(step)
    x0 = banks["a red cube, front view"][torch.randint(0, 5, (6,), generator=g)]
    t = torch.full((6,), step)
    x_t = add_noise(x0, t, torch.randn(x0.shape, generator=g), oracle.alphas_cumprod.float())
    cond = oracle.encode_prompt(["a red cube, front view"] * 6)
    got = oracle.eps(x_t, t, cond).double()
    want = _brute_eps(banks["a red cube, front view"], x_t, t, oracle.alphas_cumprod)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)  # float32 output of a float64 sum


def test_unconditional_is_the_union_and_matches_a_zero_width_gmm():
    banks = _banks(1)
    oracle = OracleTeacher(banks)
    every = torch.cat(list(banks.values()))
    gmm = GMMTeacher(every.flatten(1), torch.tensor(0.0), abar=oracle.alphas_cumprod)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(10, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (10,), generator=g)
    assert torch.allclose(oracle.eps(x_t, t, None), gmm.eps(x_t, t).reshape(x_t.shape))


def test_small_t_denoises_to_the_nearest_image_of_the_asked_bank():
    banks = _banks(2)
    oracle = OracleTeacher(banks)
    blue = banks["a blue cube, front view"]
    x_t = add_noise(
        blue, torch.full((3,), 5), 0.01 * torch.randn(3, 3, 4, 4), oracle.alphas_cumprod
    )
    d = oracle.denoise(
        x_t, torch.full((3,), 5), oracle.encode_prompt(["a blue cube, front view"] * 3)
    )
    assert torch.allclose(d.float(), blue.flatten(1), atol=1e-4)


def test_unknown_caption_and_empty_banks():
    oracle = OracleTeacher(_banks())
    with pytest.raises(ValueError, match="no bank for 'a green cube'"):
        oracle.encode_prompt(["a green cube"])
    assert oracle.encode_prompt([""]).tolist() == [-1]
    with pytest.raises(ValueError, match="at least one"):
        OracleTeacher({})
