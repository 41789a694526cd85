"""A NeRF as a generator: each sample is a render from a random camera of the toy world.

It plugs into dream3d.train like particles and one-step generators: ``sample(n, generator)``
draws n cameras from the one camera distribution (dream3d.cameras), picks DreamFusion's
shading for the step, renders (n, 3, size, size) images in [-1, 1] and returns the
regularisers as the sample's ``aux_loss``. ``info["views"]`` holds each camera's view
caption word (front / side / back / overhead) for the prompt's view-dependent conditioning,
``info["pose"]`` its pose features (n, 5) for a camera-conditioned fake score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from dream3d.cameras import CameraConfig, pose_features, sample_cameras
from dream3d.train import Sample
from generators.nerf.field import FieldConfig, NeRFField
from generators.nerf.occupancy import OccupancyGrid
from generators.nerf.render import (
    RegulariserConfig,
    RenderConfig,
    march_step,
    pick_shading,
    regularisers,
    render_image,
)


@dataclass
class NeRFConfig:
    """The field, how it is rendered for the teacher, and its regularisers."""

    size: int = 32  # rendered image side: the teacher's resolution
    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)  # hash grid + MLP
    render: RenderConfig = dataclasses.field(
        default_factory=RenderConfig
    )  # samples per ray, shading
    cameras: CameraConfig = dataclasses.field(
        default_factory=CameraConfig
    )  # the toy world's cameras
    reg: RegulariserConfig = dataclasses.field(
        default_factory=RegulariserConfig
    )  # opacity, orientation


class NeRFGenerator(nn.Module):
    """Renders of a ``NeRFField``; counts its own steps (a buffer, so checkpoints keep it).

    With ``render.grid.skip`` it keeps an ``OccupancyGrid`` of the field, refreshed every
    ``render.grid.every`` steps, and renders through it (``occupancy``; None without skipping).
    """

    def __init__(self, config: NeRFConfig | None = None, seed: int = 0, device="cpu"):
        super().__init__()
        self.config = config or NeRFConfig()
        self.field = NeRFField(self.config.field, seed, device)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long, device=device))
        grid, radius = self.config.render.grid, self.config.render.radius
        self.occupancy = OccupancyGrid(grid.resolution, radius, device) if grid.skip else None

    def refresh_occupancy(self, generator: torch.Generator | None = None) -> None:
        """Update the occupancy grid from the field now (a no-op without skipping)."""
        if self.occupancy is not None:
            grid = self.config.render.grid
            step = march_step(self.config.render)
            self.occupancy.refresh(self.field.density, step, grid.threshold, grid.decay, generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        """n renders (n, 3, size, size) in [-1, 1] with their cameras, views and shading."""
        c = self.config
        if int(self.steps) % c.render.grid.every == 0:
            self.refresh_occupancy(generator)
        cameras = sample_cameras(n, generator, c.cameras)
        shading = pick_shading(int(self.steps), c.render.shading, generator)
        out = render_image(
            self.field, cameras, c.size, c.render, shading, generator, occupancy=self.occupancy
        )
        reg, logs = regularisers(out, c.reg)
        self.steps += 1
        info = {"cameras": cameras, "views": cameras.views(c.cameras), "shading": shading}
        info["pose"] = pose_features(cameras, c.cameras).to(out["rgb"].device)
        return Sample(out["rgb"] * 2 - 1, info, aux_loss=reg, aux_logs=logs)
