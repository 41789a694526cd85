"""The one camera distribution: every renderer (ground truth, NeRF) samples views from here.

World frame: z up, objects centred at the origin inside the unit-radius ball, facing +x.
A camera sits on a sphere around the origin at (azimuth, elevation, radius) and looks at the
origin; azimuth 0 is the front (+x), 90 the object's left side (+y), 180 its back.
View captions follow DreamFusion: front / side / back by azimuth, overhead above 60 degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dream3d.config import POSITIVE, Range, check_ranges

VIEWS = ("front", "side", "back", "overhead")
POSE_DIM = 5  # width of pose_features: cos/sin azimuth, cos/sin elevation, radius offset


# where each camera setting may lie (a range's both ends)
RANGES = {
    "radius": POSITIVE,
    "elevation": Range(-90, 90),
    "fov": Range(0, 180, low_open=True, high_open=True),
    "overhead": Range(-90, 90),
    "front": Range(0, 180),
}


@dataclass(frozen=True)
class CameraConfig:
    """Ranges the cameras are drawn from, uniformly."""

    radius: tuple[float, float] = (2.6, 3.0)  # distance to the origin
    elevation: tuple[float, float] = (-10.0, 80.0)  # degrees above the horizon
    fov: float = 40.0  # vertical field of view, degrees
    overhead: float = 60.0  # elevations above this are "overhead" views
    front: float = 45.0  # |azimuth| below this is "front"; above 180 - this, "back"

    def __post_init__(self):
        check_ranges(self, RANGES)
        for name in ("radius", "elevation"):  # each a (min, max) range to draw from
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} [{lo:g}, {hi:g}]: the min is above the max")


POSE_RADIUS = CameraConfig.radius  # the radius range pose features are normalised by


@dataclass
class Cameras:
    """A batch of pinhole cameras looking at the origin."""

    azimuth: torch.Tensor  # (B,) degrees in [-180, 180)
    elevation: torch.Tensor  # (B,) degrees
    radius: torch.Tensor  # (B,)
    fov: float  # degrees

    def __len__(self) -> int:
        return len(self.azimuth)

    def __getitem__(self, index) -> Cameras:
        """The cameras at ``index`` (a slice or an index tensor) as a batch of their own."""
        return Cameras(self.azimuth[index], self.elevation[index], self.radius[index], self.fov)

    def to(self, device) -> Cameras:
        """The same cameras with their tensors on ``device`` (a copy that does not wait for the
        device's queued work), so rays are made where they are rendered."""
        poses = (self.azimuth, self.elevation, self.radius)
        return Cameras(*(x.to(device, non_blocking=True) for x in poses), self.fov)

    @property
    def origins(self) -> torch.Tensor:
        """(B, 3) camera centres."""
        az, el = torch.deg2rad(self.azimuth), torch.deg2rad(self.elevation)
        unit = torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], -1)
        return self.radius[:, None] * unit

    def rays(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ray origins and unit directions through pixel centres, each (B, size, size, 3).

        Row 0 is the top of the image; the camera's up vector is the world z projected.
        """
        o = self.origins
        forward = torch.nn.functional.normalize(-o, dim=-1)
        z = torch.tensor([0.0, 0.0, 1.0], device=o.device).expand_as(forward)
        right = torch.nn.functional.normalize(torch.cross(forward, z, dim=-1), dim=-1)
        up = torch.cross(right, forward, dim=-1)
        half = math.tan(math.radians(self.fov) / 2)
        u = (torch.arange(size, device=o.device) + 0.5) / size * 2 - 1  # (size,) left to right
        ii, jj = torch.meshgrid(-u * half, u * half, indexing="ij")  # rows top-down, cols
        d = (
            forward[:, None, None]
            + jj[None, ..., None] * right[:, None, None]
            + ii[None, ..., None] * up[:, None, None]
        )
        d = torch.nn.functional.normalize(d, dim=-1)
        return o[:, None, None].expand_as(d), d

    def views(self, config: CameraConfig = CameraConfig()) -> list[str]:
        """The DreamFusion view caption of each camera."""
        return [view_of(float(a), float(e), config) for a, e in zip(self.azimuth, self.elevation)]


def pose_features(cameras: Cameras) -> torch.Tensor:
    """(B, POSE_DIM) features of each camera: cos az, sin az, cos el, sin el, and the radius
    as (r - mid) / half of the world's default radius range (2.6-3.0: in [-1, 1] there). They
    fix the camera (it looks at the origin, z up), the whole input of a camera-conditioned
    teacher or fake score; ``cameras_from_pose`` inverts them."""
    az, el = torch.deg2rad(cameras.azimuth), torch.deg2rad(cameras.elevation)
    lo, hi = POSE_RADIUS
    offset = (cameras.radius - (lo + hi) / 2) / ((hi - lo) / 2)
    return torch.stack([az.cos(), az.sin(), el.cos(), el.sin(), offset], -1).float()


def cameras_from_pose(pose: torch.Tensor, fov: float = CameraConfig.fov) -> Cameras:
    """The cameras whose ``pose_features`` are ``pose`` (B, POSE_DIM), of field of view fov."""
    pose = pose.double().cpu()
    az = torch.rad2deg(torch.atan2(pose[:, 1], pose[:, 0]))
    el = torch.rad2deg(torch.atan2(pose[:, 3], pose[:, 2]))
    lo, hi = POSE_RADIUS
    radius = (lo + hi) / 2 + pose[:, 4] * (hi - lo) / 2
    return Cameras(az.float(), el.float(), radius.float(), fov)


def view_of(azimuth: float, elevation: float, config: CameraConfig = CameraConfig()) -> str:
    """front / side / back from the azimuth, overhead above ``config.overhead`` elevation."""
    if elevation > config.overhead:
        return "overhead"
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    if a < config.front:
        return "front"
    return "back" if a > 180.0 - config.front else "side"


def sample_cameras(
    n: int,
    generator: torch.Generator | None = None,
    config: CameraConfig = CameraConfig(),
    view: str | None = None,
) -> Cameras:
    """n cameras from the distribution; with ``view``, from that view's part of it only."""
    if view is not None and view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of: {', '.join(VIEWS)}")
    u = torch.rand(n, 3, generator=generator)
    el_lo, el_hi = config.elevation
    if view == "overhead":
        el_lo = config.overhead
    elif view is not None:
        el_hi = config.overhead
    az = u[:, 0] * 360.0 - 180.0
    if view == "front":
        az = (u[:, 0] * 2 - 1) * config.front
    elif view == "back":
        az = 180.0 - config.front + u[:, 0] * 2 * config.front
        az = (az + 180.0) % 360.0 - 180.0
    elif view == "side":
        span = 180.0 - 2 * config.front
        side = torch.where(u[:, 0] < 0.5, 1.0, -1.0)
        az = side * (config.front + (u[:, 0] * 2 % 1.0) * span)
    el = el_lo + u[:, 1] * (el_hi - el_lo)
    radius = config.radius[0] + u[:, 2] * (config.radius[1] - config.radius[0])
    return Cameras(az, el, radius, config.fov)
