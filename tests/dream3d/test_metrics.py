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


def test_bootstrap_intervals_by_enumeration():
    from dream3d.metrics import bootstrap_ci

    # [0, 0, 1]: 27 resamples, the count of ones ~ Bin(3, 1/3): P(0) = 8/27 >= 2.5 %, so the
    # lower end is 0; P(<= 2 ones) = 26/27 < 97.5 %, so the upper end is 1: the seeds' range
    assert bootstrap_ci([0.0, 0.0, 1.0]) == pytest.approx((1 / 3, 0.0, 1.0))
    assert bootstrap_ci([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0, 3.0))
    # [0, 0, 0, 0, 1]: ones ~ Bin(5, 0.2); P(<= 2) = 0.94208 < 0.975 <= P(<= 3) = 0.99328
    assert bootstrap_ci([0, 0, 0, 0, 1.0]) == pytest.approx((0.2, 0.0, 0.6))
    assert bootstrap_ci([0.4]) == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])


def test_sampled_bootstrap_is_near_the_normal_interval_and_seeded():
    from dream3d.metrics import bootstrap_ci

    values = [0.0, 1, 2, 3, 4, 5, 6]  # 7^7 resamples: sampled; sd of the mean 2 / sqrt 7
    mean, lo, hi = bootstrap_ci(values)
    half = 1.96 * 2 / 7**0.5
    assert mean == 3.0 and lo == pytest.approx(3 - half, abs=0.15)
    assert hi == pytest.approx(3 + half, abs=0.15)
    assert bootstrap_ci(values) == (mean, lo, hi)


def test_expected_tv_and_modes_of_draws_from_the_truth_by_hand():
    from dream3d.metrics import expected_modes, expected_tv

    # two fair coin flips: HH and TT are 0.5 away from (1/2, 1/2), HT and TH 0: mean 0.25
    assert expected_tv(2, [1, 1]) == pytest.approx(0.25)
    # one draw over 4 equal classes: 0.5 (3/4 + 3 x 1/4) = 0.75 whatever it is
    assert expected_tv(1, [1, 1, 1, 1]) == pytest.approx(0.75)
    assert expected_tv(5, [0, 1, 0]) == pytest.approx(0.0)  # a sure thing is always matched
    assert expected_modes(2, 2) == pytest.approx(1.5)  # the second flip repeats half the time
    assert expected_modes(1, 24) == pytest.approx(1.0)
