import itertools
import math

import pytest
import torch

from dream3d.metrics import frechet_distance, label_histogram, precision_recall, total_variation


def box(mean, sd):
    """The 2^d corners mean ± sd plus the centre: unbiased covariance exactly diag(sd^2).

    Each coordinate's squares sum to 2^d sd_i^2 over the corners, n - 1 = 2^d, and the cross
    terms cancel in sign; a biased (/n) covariance would be diag(sd^2) * 2^d / (2^d + 1).
    """
    corners = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=len(sd))))
    pts = torch.cat([corners, torch.zeros(1, len(sd))]) * torch.tensor(sd)
    return (pts + torch.tensor(mean)).double()  # (2^d + 1, d)


# ---------------------------------------------------------------- frechet_distance


def test_fd_1d_closed_form():
    # x: mean 2, unbiased var (4 + 0 + 4) / 2 = 4 -> sd 2; y: mean 6, var (1 + 0 + 1) / 2 = 1.
    # FD = (2 - 6)^2 + (2 - 1)^2 = 17  (biased var: 16 + 2/3; no factor 2 on the root: 19).
    x = torch.tensor([[0.0], [2.0], [4.0]])
    y = torch.tensor([[5.0], [6.0], [7.0]])
    assert frechet_distance(x, y) == pytest.approx(17.0, abs=1e-10)


def test_fd_diagonal_3d_closed_form():
    # Diagonal covariances commute: FD = |mu_x - mu_y|^2 + sum_i (sd_x,i - sd_y,i)^2
    # = (1 + 4 + 0) + (1 + 4 + 0) = 10; a biased covariance (x 8/9) would give 5 + 40/9.
    x = box([1.0, 0.0, 0.0], [1.0, 3.0, 2.0])
    y = box([0.0, 2.0, 0.0], [2.0, 1.0, 2.0])
    assert frechet_distance(x, y) == pytest.approx(10.0, abs=1e-10)


def test_fd_non_commuting_2x2_closed_form():
    # A 2x2 PSD matrix A has Tr A^{1/2} = sqrt(Tr A + 2 sqrt(det A)); (C_x C_y)^{1/2} has the
    # spectrum of a PSD matrix. C_x = diag(4, 1); C_y = R diag(1, 9) R^T, R a 45 degree rotation,
    # = [[5, -4], [-4, 5]]. Tr(C_x C_y) = 20 + 5 = 25, det C_x det C_y = 4 * 9 = 36, so
    # FD = (5 + 10) - 2 sqrt(25 + 2 * 6) = 15 - 2 sqrt(37) ~ 2.8345 (sqrt(C_x) sqrt(C_y) gives 3).
    x = box([0.0, 0.0], [2.0, 1.0])
    c = s = math.sqrt(0.5)
    y = box([0.0, 0.0], [1.0, 3.0]) @ torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    assert frechet_distance(x, y) == pytest.approx(15 - 2 * math.sqrt(37), abs=1e-10)


def test_fd_zero_on_itself_and_symmetric():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g) * 3 + 1
    y = torch.randn(150, 8, generator=g) @ torch.randn(8, 8, generator=g)
    assert abs(frechet_distance(x, x)) < 1e-8
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-10)
    # Rank-deficient covariance (N <= d): round-off must not surface as sqrt(eps) errors.
    z = torch.randn(10, 64, generator=g) * 3
    assert abs(frechet_distance(z, z)) < 1e-8


def test_fd_large_samples_near_true_parameters():
    # True FD with diagonal covariances: |d_mu|^2 + sum (s_x - s_y)^2 = 2.25 + 2 = 4.25.
    # To first order the estimate varies through the means (var of the mean gap
    # (s_x^2 + s_y^2) / n) and the sds (var of a sample sd s^2 / (2n)); by the delta method
    # sigma^2 = sum 4 d_mu^2 (s_x^2 + s_y^2) / n + 4 (s_x - s_y)^2 (s_x^2 + s_y^2) / (2n).
    # The squared mean gap is biased up by sum (s_x^2 + s_y^2) / n; allow twice that.
    n = 20000
    d_mu = torch.tensor([1.0, -1.0, 0.0, 0.5], dtype=torch.float64)
    sx = torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64)
    sy = torch.tensor([1.0, 2.0, 1.0, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64) * sx
    y = torch.randn(n, 4, generator=g, dtype=torch.float64) * sy + d_mu
    v = sx**2 + sy**2
    sigma = math.sqrt(float((4 * d_mu**2 * v / n + 4 * (sx - sy) ** 2 * v / (2 * n)).sum()))
    tol = 5 * sigma + 2 * float(v.sum()) / n  # ~ 0.27
    assert frechet_distance(x, y) == pytest.approx(4.25, abs=tol)


def test_fd_errors():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="dims differ"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


# ---------------------------------------------------------------- precision_recall

REAL = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])


@pytest.mark.parametrize("chunk", [1024, 2])  # chunk 2 splits the sets across row blocks
def test_precision_recall_by_hand_k1(chunk):
    # Real radii (nearest other real): 0->1, 1->1, 2->1, 3->1, 10->7; balls [-1, 1], [0, 2],
    # [1, 3], [2, 4], [3, 17]. Fakes -1 and 17 lie exactly on a ball's edge (<=), 1 inside,
    # -1.5 and 17.5 outside: precision 3/5.
    # Fake radii: -1.5->0.5, -1->0.5, 1->2, 17->0.5, 17.5->0.5; the ball [-1, 3] around 1 holds
    # reals 0, 1, 2 and 3 (on the edge), not 10: recall 4/5.
    # Bugs: '<' gives (1/5, 3/5); the 2nd neighbour gives (1, 1); counting a point as its own
    # neighbour (radius 0) gives (1/5, 1/5).
    fake = torch.tensor([[-1.5], [-1.0], [1.0], [17.0], [17.5]])
    assert precision_recall(REAL, fake, k=1, chunk=chunk) == pytest.approx((0.6, 0.8))


@pytest.mark.parametrize("chunk", [1024, 2])
def test_precision_recall_by_hand_k3(chunk):
    # Distances from each real to the other four, sorted, 3rd marked:
    # 0: 1 2 [3] 10; 1: 1 1 [2] 9; 2: 1 1 [2] 8; 3: 1 2 [3] 7; 10: 7 8 [9] 10.
    # Balls [-3, 3], [-1, 3], [0, 4], [0, 6], [1, 19]: fakes -3 and 19 on an edge, 4 inside,
    # -3.5 and 19.5 outside -> precision 3/5 ('<': 1/5; 4th neighbour, e.g. [-10, 10] and
    # [0, 20]: 1; 2nd neighbour, union [-2, 18]: 1/5).
    # Fake radii are all >= 18 (e.g. -3.5: 0.5 7.5 [22.5] 23), covering every real: recall 1.
    fake = torch.tensor([[-3.5], [-3.0], [4.0], [19.0], [19.5]])
    assert precision_recall(REAL, fake, k=3, chunk=chunk) == pytest.approx((0.6, 1.0))


def test_precision_recall_swaps_roles_and_chunks_agree():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 2, generator=g), torch.randn(200, 2, generator=g) + 0.5
    p, r = precision_recall(real, fake, k=3)
    assert precision_recall(fake, real, k=3) == (r, p)
    assert precision_recall(real, fake, k=3, chunk=7) == (p, r)
    assert 0 < p < 1 and 0 < r < 1


def test_precision_recall_identical_and_disjoint_sets():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(200, 2, generator=g)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0)
    # k-NN radii of 200 standard-normal points are far below 100: shifted by 100, no overlap.
    assert precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_needs_more_than_k_samples():
    four = torch.arange(4.0).reshape(4, 1)
    assert precision_recall(four, four, k=3) == (1.0, 1.0)  # 4 samples suffice for k = 3
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(four[:3], four, k=3)
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(four, four[:3], k=3)


# ---------------------------------------------------------------- histograms


def test_total_variation_by_hand():
    # 0.5 * (|0.5 - 0.25| + |0.5 - 0.25| + |0 - 0.5|) = 0.5
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert total_variation(p, q) == pytest.approx(0.5)
    assert total_variation(torch.tensor([2, 2, 0]), torch.tensor([1, 1, 2])) == pytest.approx(0.5)
    assert total_variation(p, p) == 0.0
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == 1.0


def test_total_variation_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        total_variation(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="positive sum"):
        total_variation(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="positive sum"):
        total_variation(torch.tensor([2.0, -1.0]), torch.ones(2))


def test_label_histogram_by_hand():
    h = label_histogram(["cat", "dog", "cat", "bird"], ["bird", "cat", "dog", "fish"])
    assert h.dtype == torch.float64
    assert h.tolist() == [0.25, 0.5, 0.25, 0.0]


def test_label_histogram_errors():
    with pytest.raises(ValueError, match="unknown: \\['cow'\\]"):
        label_histogram(["cat", "cow"], ["cat", "dog"])
    with pytest.raises(ValueError, match="non-empty"):
        label_histogram([], ["cat", "dog"])
