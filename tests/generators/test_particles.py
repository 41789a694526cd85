import torch

from generators.particles import Particles


def test_sample_cycles_and_is_differentiable():
    p = Particles(torch.arange(6.0).reshape(3, 2))
    s = p.sample(5)
    assert s.info["index"].tolist() == [0, 1, 2, 0, 1]
    assert torch.equal(s.x[3], torch.tensor([0.0, 1.0]))
    s.x.sum().backward()
    assert p.x.grad.tolist() == [[2.0, 2.0], [2.0, 2.0], [1.0, 1.0]]


def test_gaussian_init_is_seeded():
    a, b = Particles.gaussian(4, (3, 8, 8), seed=1), Particles.gaussian(4, (3, 8, 8), seed=1)
    assert a.x.shape == (4, 3, 8, 8) and torch.equal(a.x, b.x)
