"""Empty-space skipping in PyTorch: an occupancy grid over the scene, on any device.

Instant-NGP's grid (Müller et al. 2022, sec. 4; nerfacc's ``OccGridEstimator`` is the same on
CUDA only): the scene box [-radius, radius]^3 is cut into R^3 cells, each holding an
occupancy ``o``. A refresh evaluates the density at one random point in every cell and sets
o <- max(decay o, sigma x step) (step: the renderer's sample spacing, so sigma x step is about
a sample's opacity); a cell is occupied where o > threshold, grown by one cell in every
direction so a surface can move into its neighbours between refreshes. The renderer
evaluates the field only at samples in occupied cells, and behind the point where a ray's
transmittance falls below ``early_stop_eps`` not at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OccupancyGrid(nn.Module):
    """Occupancy o (R, R, R) of cells over [-radius, radius]^3 (buffers: checkpoints keep it).

    Until its first refresh every cell is occupied, so rendering is exact.
    """

    def __init__(self, resolution: int, radius: float, device="cpu"):
        super().__init__()
        self.resolution, self.radius = resolution, radius
        shape = (resolution,) * 3
        self.register_buffer("values", torch.full(shape, float("inf"), device=device))
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def cell_points(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One point per cell (R^3, 3), uniform in the cell (cell centres without generator),
        cells in [x, y, z] order."""
        r, device = self.resolution, self.values.device
        axis = torch.arange(r, device=device, dtype=torch.float32)
        corner = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        if generator is None:
            u = torch.full_like(corner, 0.5)
        else:
            u = torch.rand(corner.shape, generator=generator).to(device)
        return (corner + u) / r * (2 * self.radius) - self.radius

    @torch.no_grad()
    def refresh(
        self,
        density_fn,
        step: float,
        threshold: float,
        decay: float,
        generator: torch.Generator | None = None,
        chunk: int = 1 << 16,
    ) -> None:
        """o <- max(decay o, density x step) at a random point per cell; then the mask."""
        points = self.cell_points(generator)
        sigma = torch.cat([density_fn(p) for p in points.split(chunk)]).reshape(self.values.shape)
        fresh = sigma.float() * step
        finite = torch.isfinite(self.values)  # before the first refresh: no history to decay
        self.values.copy_(torch.where(finite, torch.maximum(decay * self.values, fresh), fresh))
        grown = F.max_pool3d((self.values > threshold).float()[None, None], 3, 1, 1)[0, 0]
        self.mask.copy_(grown > 0)

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        """Whether points (..., 3) lie in occupied cells (False outside the box; its far faces
        belong to the last cells)."""
        r = self.resolution
        inside = (points.abs() <= self.radius).all(-1)
        cell = ((points + self.radius) / (2 * self.radius) * r).floor().long().clamp(0, r - 1)
        flat = (cell[..., 0] * r + cell[..., 1]) * r + cell[..., 2]
        return self.mask.reshape(-1)[flat] & inside

    def fraction(self) -> float:
        """The fraction of cells occupied."""
        return float(self.mask.float().mean())
