import hashlib

import pytest
import torch

from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from generators.images import (
    DiracConfig,
    DiracImages,
    OneStepConfig,
    OneStepGenerator,
    timestep_of_sigma,
)

SMALL = TinyConfig(size=16, block_out_channels=(8, 16), head_dim=8)
CAPTIONS = ["a red square", "a blue square", "a green square"]


def encoder(prompts):
    rows = []
    for p in prompts:
        seed = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16)
        v = torch.randn(384, generator=torch.Generator().manual_seed(seed))
        rows.append(v / v.norm())
    return torch.stack(rows)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return TinyTeacher(SMALL, encoder).eval()


def test_the_timestep_of_a_noise_level_is_the_nearest_one():
    abar = torch.tensor([0.9, 0.5, 0.2, 0.1], dtype=torch.float64)
    # sigma_t = sqrt((1 - abar) / abar) = 1/3, 1, 2, 3
    assert timestep_of_sigma(abar, 2.4) == 2
    assert timestep_of_sigma(abar, 2.6) == 3
    assert timestep_of_sigma(abar, 0.5) == 0
    assert timestep_of_sigma(abar, 10.0) == 3


def test_the_shipped_schedule_puts_sigma_2_5_near_t_440():
    # DDPM linear betas 1e-4..0.02 over 1000 steps: abar_t = prod(1 - beta); sigma_t crosses
    # 2.5 (abar = 1 / (1 + 2.5^2) = 0.1379) between t = 439 and 441 (worked out with numpy)
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    abar, prod = [], 1.0
    for b in betas:
        prod *= 1 - b
        abar.append(prod)
    crossing = next(i for i, a in enumerate(abar) if a < 1 / (1 + 2.5**2))
    from dream3d.diffusion import alphas_cumprod

    got = timestep_of_sigma(alphas_cumprod("linear", 1000), 2.5)
    assert abs(got - crossing) <= 1


def test_the_one_step_generator_starts_as_the_teachers_x0_prediction(teacher):
    g = OneStepGenerator(OneStepConfig(sigma_init=2.5), teacher, CAPTIONS, (3, 16, 16))
    z = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.full((3,), g.t_init)
    abar = float(teacher.alphas_cumprod[g.t_init])
    a, s = abar**0.5, (1 - abar) ** 0.5
    with torch.no_grad():
        eps = teacher.eps(s * z, t, teacher.encode_prompt(CAPTIONS))
        want = (s * z - s * eps) / a
        got = g(z, CAPTIONS)
    assert torch.allclose(got, want, atol=1e-5)
    # its weights are its own: a step on G leaves the teacher as it was
    before = [p.detach().clone() for p in teacher.parameters()]
    g(z, CAPTIONS).pow(2).mean().backward()
    torch.optim.SGD(g.parameters(), lr=1.0).step()
    assert all(torch.equal(b, p) for b, p in zip(before, teacher.parameters()))
    assert not torch.allclose(g(z, CAPTIONS), want, atol=1e-3)


def test_one_step_samples_carry_their_captions_and_are_seeded(teacher):
    g = OneStepGenerator(OneStepConfig(), teacher, CAPTIONS, (3, 16, 16))
    a = g.sample(6, torch.Generator().manual_seed(3))
    b = g.sample(6, torch.Generator().manual_seed(3))
    assert a.x.shape == (6, 3, 16, 16) and a.x.requires_grad
    assert a.info["captions"] == b.info["captions"] and torch.equal(a.x, b.x)
    assert set(a.info["captions"]) <= set(CAPTIONS)
    # draw: one image per caption, no graph, the same z for the same seed
    x = g.draw(["a red square"] * 2, torch.Generator().manual_seed(4))
    y = g.draw(["a red square"] * 2, torch.Generator().manual_seed(4))
    assert not x.requires_grad and torch.equal(x, y) and not torch.equal(x[0], x[1])


def test_the_one_step_generator_refuses_what_it_cannot_copy(teacher):
    with pytest.raises(ValueError, match="network teacher"):
        OneStepGenerator(OneStepConfig(), object(), CAPTIONS, (3, 16, 16))
    with pytest.raises(ValueError, match="caption"):
        OneStepGenerator(OneStepConfig(), teacher, [], (3, 16, 16))
    with pytest.raises(ValueError, match="sigma_init"):
        OneStepConfig(sigma_init=0)


def test_dirac_images_are_drawn_without_replacement():
    captions = [f"caption {i}" for i in range(5)]
    images = DiracImages(DiracConfig(std=0.1), None, captions, (3, 4, 4), seed=0)
    assert images.x.shape == (5, 3, 4, 4)
    assert 0.05 < float(images.x.detach().std()) < 0.15  # std 0.1 around grey 0
    s = images.sample(5, torch.Generator().manual_seed(0))
    assert sorted(s.info["index"].tolist()) == [0, 1, 2, 3, 4]  # a full batch: each once
    assert s.info["captions"] == [captions[i] for i in s.info["index"].tolist()]
    three = images.sample(3, torch.Generator().manual_seed(1))
    assert len(set(three.info["index"].tolist())) == 3
    assert torch.equal(images.draw(captions), images.x.detach())
    with pytest.raises(ValueError, match="own captions"):
        images.draw(captions[::-1])
