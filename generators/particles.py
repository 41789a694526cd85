"""Dirac particles: each particle is a point mass generator whose parameters are its sample."""

from __future__ import annotations

import torch
from torch import nn

from dream3d.train import Sample


class Particles(nn.Module):
    """N learnable points (or images) of shape ``shape``; ``sample(n)`` cycles through them."""

    def __init__(self, init: torch.Tensor):  # (N, *shape) starting positions
        super().__init__()
        self.x = nn.Parameter(init.detach().clone().float())

    @classmethod
    def gaussian(cls, n: int, shape: tuple[int, ...], mean=0.0, std=1.0, seed: int = 0):
        """N particles drawn from N(mean, std^2 I)."""
        g = torch.Generator().manual_seed(seed)
        return cls(torch.as_tensor(mean) + std * torch.randn(n, *shape, generator=g))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        """Particles 0, 1, ..., N-1, 0, ... (n of them); a single particle gives n copies."""
        index = torch.arange(n) % self.x.shape[0]
        return Sample(self.x[index], {"index": index})
