"""Ground-truth metrics: distances between sample sets and coverage of known modes."""

from __future__ import annotations

import torch


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.05, 0.2, 1.0)) -> float:
    """Unbiased squared MMD between samples x (N, d) and y (M, d), float64.

    The kernel is a sum of RBFs exp(-|u - v|^2 / (2 h^2)) over the bandwidths h
    (Gretton et al. 2012, eq. 3).
    """
    x, y = x.flatten(1).double(), y.flatten(1).double()
    n, m = len(x), len(y)

    def k(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mode_mass(x: torch.Tensor, centres: torch.Tensor, radius: float) -> torch.Tensor:
    """Fraction of samples x (N, d) within ``radius`` of each centre (K, d), nearest centre only."""
    d = torch.cdist(x.double(), centres.double())  # (N, K)
    dist, k = d.min(1)
    hits = k[dist <= radius]
    return torch.bincount(hits, minlength=len(centres)).double() / len(x)


def modes_covered(x: torch.Tensor, centres: torch.Tensor, radius: float, min_frac=0.05) -> int:
    """How many modes hold at least ``min_frac`` of the samples."""
    return int((mode_mass(x, centres, radius) >= min_frac).sum())
