"""Small network pieces shared by fake scores and generators."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(d_in: int, d_out: int, hidden: int = 128, layers: int = 3) -> nn.Sequential:
    """``layers`` hidden SiLU layers of width ``hidden``; the last layer is linear."""
    dims = [d_in] + [hidden] * layers
    blocks: list[nn.Module] = []
    for i, o in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(i, o), nn.SiLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], d_out))


class FourierTime(nn.Module):
    """Fixed sin/cos features of t / T at ``n`` log-spaced frequencies (B,) -> (B, 2n)."""

    def __init__(self, steps: int, n: int = 6):
        super().__init__()
        self.steps = steps
        self.dim = 2 * n
        self.register_buffer("freqs", 2 * math.pi * 2.0 ** torch.arange(n, dtype=torch.float32))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ang = (t.float() / self.steps)[:, None] * self.freqs
        return torch.cat([ang.sin(), ang.cos()], dim=1)
