import math

import pytest
import torch

from dream3d.metrics import mmd2, mode_mass, modes_covered


def test_mmd2_by_hand_on_two_points():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [2.0]])
    k = lambda d2: math.exp(-d2 / 2)  # noqa: E731  one bandwidth h = 1
    sxx, syy = k(1.0), k(4.0)  # the off-diagonal pair of each set
    sxy = (k(0.0) + k(4.0) + k(1.0) + k(1.0)) / 4
    assert mmd2(x, y, bandwidths=(1.0,)) == pytest.approx(sxx + syy - 2 * sxy)


def test_mmd2_tells_equal_from_shifted():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert abs(mmd2(a, b)) < 0.005
    assert mmd2(a, b + 1.0) > 0.1  # 0.197 here; 40x the equal-sets value


def test_mode_mass_and_coverage():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat(
        [
            torch.zeros(6, 2),
            torch.full((3, 2), 0.0) + torch.tensor([10.0, 0.3]),
            torch.tensor([[5.0, 5.0]]),
        ]
    )
    assert mode_mass(x, centres, 0.5).tolist() == pytest.approx([0.6, 0.3, 0.0])
    assert modes_covered(x, centres, 0.5, min_frac=0.25) == 2
