import torch

from generators.onestep import MLPGenerator


def test_offset_and_scale_place_the_initial_samples():
    torch.manual_seed(0)
    gen = MLPGenerator(2, offset=(4.0, -4.0), init_scale=0.01)
    x = gen.sample(500, torch.Generator().manual_seed(0)).x.detach()
    assert torch.allclose(x.mean(0), torch.tensor([4.0, -4.0]), atol=0.05)
    assert x.std(0).max() < 0.05


def test_class_conditional_samples_carry_labels():
    gen = MLPGenerator(3, n_classes=4)
    s = gen.sample(64, torch.Generator().manual_seed(0))
    assert s.x.shape == (64, 3) and s.info["label"].max() <= 3
    s.x.sum().backward()
    assert gen.classes.weight.grad.abs().sum() > 0
