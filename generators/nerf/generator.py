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
from dream3d.config import AT_LEAST_1, check_ranges
from dream3d.train import Sample
from generators.nerf.field import FieldConfig, NeRFField
from generators.nerf.occupancy import OccupancyGrid
from generators.nerf.render import (
    RegulariserConfig,
    RenderConfig,
    march_step,
    occupancy_grid,
    packed_rendering,
    pick_shading,
    regularisers,
    render_image,
    update_occupancy_grid,
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

    def __post_init__(self):
        check_ranges(self, {"size": AT_LEAST_1})


class NeRFGenerator(nn.Module):
    """Renders of a ``NeRFField``; counts its own steps (a buffer, so checkpoints keep it; made
    on the CPU whatever the device, so reading it never waits for a GPU).

    With ``render.grid.skip`` it keeps an occupancy grid of the field and renders through it:
    on CUDA with nerfacc, nerfacc's ``OccGridEstimator`` (``estimator``) with packed rendering,
    updated as nerfacc recommends (every ``grid.every`` steps; all cells during the first
    ``grid.warmup`` steps, then a quarter of them at random and a quarter of the occupied);
    elsewhere the PyTorch ``OccupancyGrid`` (``occupancy``), refreshed every ``grid.every``
    steps. Without skipping both are None.
    """

    def __init__(self, config: NeRFConfig | None = None, seed: int = 0, device="cpu"):
        super().__init__()
        self.config = config or NeRFConfig()
        self.field = NeRFField(self.config.field, seed, device)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        render = self.config.render
        grid, packed = render.grid, packed_rendering(render, device)
        self.estimator = occupancy_grid(render, device) if grid.skip and packed else None
        skip = grid.skip and not packed
        self.occupancy = OccupancyGrid(grid.resolution, render.radius, device) if skip else None

    def grids(self) -> dict:
        """The grid keywords of ``render_image`` for this generator's renders."""
        return {"occupancy": self.occupancy, "estimator": self.estimator}

    def refresh_occupancy(self, generator: torch.Generator | None = None) -> None:
        """Update the occupancy grid from the field now (a no-op without skipping): every cell
        of the PyTorch grid; nerfacc's as at step 0 (every cell unless ``grid.warmup`` is 0)."""
        render = self.config.render
        if self.estimator is not None:
            update_occupancy_grid(self.estimator, self.field.density, 0, render, every=1)
        if self.occupancy is not None:
            grid, step = render.grid, march_step(render)
            self.occupancy.refresh(self.field.density, step, grid.threshold, grid.decay, generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        """n renders (n, 3, size, size) in [-1, 1] with their cameras, views and shading."""
        c, step = self.config, int(self.steps)
        if self.estimator is not None:  # nerfacc's schedule: every n steps, warm-up first
            update_occupancy_grid(self.estimator, self.field.density, step, c.render)
        elif step % c.render.grid.every == 0:
            self.refresh_occupancy(generator)
        cameras = sample_cameras(n, generator, c.cameras)
        shading = pick_shading(step, c.render.shading, generator)
        out = render_image(
            self.field, cameras, c.size, c.render, shading, generator, **self.grids()
        )
        reg, logs = regularisers(out, c.reg)
        self.steps += 1
        info = {"cameras": cameras, "views": cameras.views(c.cameras), "shading": shading}
        device = out["rgb"].device
        info["pose"] = pose_features(cameras).to(device, non_blocking=True)
        return Sample(out["rgb"] * 2 - 1, info, aux_loss=reg, aux_logs=logs)
