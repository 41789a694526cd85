"""K NeRFs trained together: ProlificDreamer's particles (Wang et al. 2023, VSD), the full
Diff-Instruct generator in 3D.

Each step every particle renders its own n views from its own random cameras; the K x n
renders go to the guidance as one batch. IKL fits its one fake score on all of them, so each
particle's gradient eps_teacher - eps_fake depends on where the others are; SDS's fake score is
each render's own Dirac, so under SDS the particles train independently. The batch says
``members = K``, so each particle's gradient is the one it would get from its n views alone.
"""

from __future__ import annotations

import torch
from torch import nn

from dream3d.train import Sample
from generators.nerf.generator import NeRFConfig, NeRFGenerator

SEED_STRIDE = 7919  # particle k of seed s starts from seed s + k * SEED_STRIDE (k = 0: seed s)


def particle_seed(seed: int, k: int) -> int:
    """The init seed of particle k: particle 0 is the single NeRF of the same seed."""
    return seed + k * SEED_STRIDE


class NeRFParticles(nn.Module):
    """``k`` NeRFGenerators behind one ``sample``; ``nerfs[i]`` is particle i."""

    def __init__(self, config: NeRFConfig | None, k: int, seed: int = 0, device="cpu"):
        super().__init__()
        if k < 1:
            raise ValueError(f"particles must be >= 1, got {k}")
        self.config = config or NeRFConfig()
        self.nerfs = nn.ModuleList(
            NeRFGenerator(self.config, particle_seed(seed, i), device) for i in range(k)
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        """n renders of each particle, stacked particle by particle: x (k n, 3, size, size)."""
        parts = [nerf.sample(n, generator) for nerf in self.nerfs]
        info = {
            "views": [v for p in parts for v in p.info["views"]],
            "particle": [i for i, p in enumerate(parts) for _ in p.info["views"]],
            "shading": [p.info["shading"] for p in parts],
            "cameras": [p.info["cameras"] for p in parts],
            "pose": torch.cat([p.info["pose"] for p in parts]),
        }
        logs = _mean_logs([p.aux_logs for p in parts])
        return Sample(
            torch.cat([p.x for p in parts]),
            info,
            aux_loss=_sum([p.aux_loss for p in parts]),
            aux_logs=logs,
            members=len(parts),
        )

    def refresh_occupancy(self, generator: torch.Generator | None = None) -> None:
        """Every particle's occupancy grid, now."""
        for nerf in self.nerfs:
            nerf.refresh_occupancy(generator)


def _mean_logs(logs: list[dict]) -> dict:
    """Each key's mean over the particles that logged it (shading differs between them)."""
    keys = dict.fromkeys(k for one in logs for k in one)
    return {k: sum(o[k] for o in logs if k in o) / sum(k in o for o in logs) for k in keys}


def _sum(losses):
    losses = [loss for loss in losses if loss is not None]
    return sum(losses) if losses else None
