"""Ground-truth shape scores of a result: how square it is across, and whether it has two faces.

``corner_ratio``: a mesh's radius towards the diagonals over that towards the axes, at three
heights (the toy world's cube gives 1.40, a round cross-section 1). ``janus_score``: from 16
views all around a result, the object yaw each view implies (its depth image matched against
the truth's), their circular median and the fraction of views that disagree with it: a
Janus result (a face on each side) makes the views from behind imply a yaw ~180 degrees off.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from dream3d.cameras import Cameras
from scenes.catalogue import SHAPES
from scenes.render import sphere_trace

HEIGHTS = (-0.3, 0.0, 0.3)  # corner_ratio's cross-sections (world z)
ORBIT_AZIMUTHS = tuple(22.5 * k for k in range(16))  # the views janus_score looks from
ORBIT = (15.0, 2.8, 40.0)  # their elevation, radius (distance to the origin) and fov, degrees
FAR = 1.5  # the background's depth beyond the camera's distance to the origin
YAW_STEP = 10.0  # candidate object yaws, degrees
MAX_ORDER = 8  # a shape that is symmetric under turns of 360 / 8 counts as round
SYMMETRY_IOU = 0.999  # occupancy IoU with itself turned above which a turn is a symmetry (the
# snowman, whose nose breaks it, scores 0.995 at 48^3; round shapes 1.0)
JANUS_FRACTION = 0.25  # off_fraction at or above which a result counts as Janus


# ------------------------------------------------------------------------------ corner ratio


def extents(vertices: np.ndarray, z: float, slab: float = 0.02, half_angle: float = 7.5):
    """(towards the axes, towards the diagonals): mean over four directions each of the largest
    distance from the z axis of the vertices (V, 3) (world frame, z up) within ``slab`` of
    height z and ``half_angle`` degrees of that direction (0.0 for a wedge with none)."""
    near = vertices[np.abs(vertices[:, 2] - z) < slab]
    radius = np.hypot(near[:, 0], near[:, 1])
    angle = np.degrees(np.arctan2(near[:, 1], near[:, 0]))

    def reach(centre: float) -> float:
        off = (angle - centre + 180) % 360 - 180
        inside = np.abs(off) <= half_angle
        return float(radius[inside].max()) if inside.any() else 0.0

    axes = np.mean([reach(a) for a in (0, 90, 180, 270)])
    diagonals = np.mean([reach(a) for a in (45, 135, 225, 315)])
    return axes, diagonals


def corner_ratio(vertices: np.ndarray) -> float | None:
    """Mean over HEIGHTS of diagonals / axes (``extents``) of vertices (V, 3) in the world frame;
    heights with no vertices towards the axes are left out, None where every height is."""
    ratios = [d / a for a, d in (extents(vertices, z) for z in HEIGHTS) if a > 0]
    return float(np.mean(ratios)) if ratios else None


@functools.cache
def true_corner_ratio(shape: str) -> float | None:
    """``corner_ratio`` of the truth's mesh (``scenes.truth.mesh(shape, 96)``)."""
    from scenes.truth import mesh

    return corner_ratio(mesh(shape, 96)[0])


# ------------------------------------------------------------------------------------ depth


def orbit_cameras(azimuths) -> Cameras:
    """Cameras at these azimuths (degrees) at ORBIT's elevation, radius and fov."""
    n = len(azimuths)
    elevation, radius, fov = ORBIT
    azimuth = torch.as_tensor(azimuths, dtype=torch.float32)
    return Cameras(azimuth, torch.full((n,), elevation), torch.full((n,), radius), fov)


def sdf_depth(
    sdf: Callable[[torch.Tensor], torch.Tensor], cameras: Cameras, size: int = 32
) -> torch.Tensor:
    """Depth (B, size, size): distance along each pixel-centre ray to the surface sdf = 0,
    radius + FAR where the ray misses."""
    origins, dirs = cameras.rays(size)  # (B, size, size, 3) each
    hit, t = sphere_trace(sdf, origins.reshape(-1, 3), dirs.reshape(-1, 3))
    far = (cameras.radius[:, None, None] + FAR).expand(-1, size, size).reshape(-1)
    return torch.where(hit, t, far).reshape(len(cameras), size, size)


def true_depth(shape: str, cameras: Cameras, size: int = 32) -> torch.Tensor:
    """``sdf_depth`` (B, size, size) of the catalogue shape ``shape``."""
    return sdf_depth(SHAPES[shape], cameras, size)


def relative_depth(depth: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """depth (B, H, W) minus each camera's radius (B,), capped at FAR (the background)."""
    return (depth - radius[:, None, None]).clamp(max=FAR)


# --------------------------------------------------------------------------------- symmetry


def turn(points: torch.Tensor, degrees: float) -> torch.Tensor:
    """Points (N, 3) turned by ``degrees`` about z (counter-clockwise seen from above)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x, y, z = points.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], -1)


@functools.cache
def symmetry_order(shape: str, resolution: int = 48) -> int:
    """The largest n <= MAX_ORDER for which the shape's occupancy on a grid over [-1, 1]^3 has
    IoU > SYMMETRY_IOU with its occupancy turned by 360 / n about z (1: no turn symmetry)."""
    axis = torch.linspace(-1, 1, resolution)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    inside = SHAPES[shape](points) < 0
    order = 1
    for n in range(2, MAX_ORDER + 1):
        turned = SHAPES[shape](turn(points, 360 / n)) < 0
        iou = (inside & turned).sum() / (inside | turned).sum().clamp(min=1)
        if iou > SYMMETRY_IOU:
            order = n
    return order


# ------------------------------------------------------------------------------------ Janus


def candidate_yaws(period: float) -> torch.Tensor:
    """(P,) object yaws 0, YAW_STEP, ... below ``period`` degrees."""
    return torch.arange(0.0, period - 1e-6, YAW_STEP)


@functools.cache
def truth_candidates(shape: str, size: int = 32) -> torch.Tensor:
    """(V, P, size, size) ``relative_depth`` of the truth seen from azimuth a_v - psi_p, for
    the views a_v of ORBIT_AZIMUTHS and the candidate yaws psi_p over one symmetry period."""
    yaws = candidate_yaws(360 / symmetry_order(shape))
    azimuths = (torch.tensor(ORBIT_AZIMUTHS)[:, None] - yaws) % 360  # (V, P)
    unique, index = torch.unique(azimuths, return_inverse=True)
    cams = orbit_cameras(unique)
    depth = relative_depth(true_depth(shape, cams, size), cams.radius)  # (U, size, size)
    return depth[index]


def wrap(degrees: torch.Tensor, period: float = 360.0) -> torch.Tensor:
    """Angles mapped into [-period / 2, period / 2)."""
    return (degrees + period / 2) % period - period / 2


def circular_median(degrees: torch.Tensor, period: float = 360.0) -> float:
    """The angle among ``degrees`` (N,) with the least summed distance |wrap(x - m, period)|
    to all of them (the first such in the given order), in [-period / 2, period / 2)."""
    spread = wrap(degrees[:, None] - degrees[None], period).abs().sum(0)  # (N,)
    return float(wrap(degrees[spread.argmin()], period))


def implied_yaws(depth: torch.Tensor, shape: str) -> torch.Tensor:
    """(V,) per view of ORBIT_AZIMUTHS the candidate yaw psi whose truth depth from azimuth
    a - psi is nearest (L1 mean over pixels) to the result's ``relative_depth`` (V, S, S)."""
    truth = truth_candidates(shape, depth.shape[-1])  # (V, P, S, S)
    error = (truth - depth[:, None]).abs().mean((-1, -2))  # (V, P)
    return candidate_yaws(360 / symmetry_order(shape))[error.argmin(1)]


def janus_score(
    depth_fn: Callable[[Cameras], torch.Tensor], shape: str, size: int = 32
) -> dict | None:
    """Whether a result looks like the truth turned by one yaw from all around, or not.

    ``depth_fn(cameras)``: depth images (B, size, size) of the result (distance along each
    pixel-centre ray; the background any value >= radius + FAR). With n = ``symmetry_order``
    of the truth ``shape`` and period = 360 / n degrees, each view of ORBIT_AZIMUTHS implies
    a yaw (``implied_yaws``), taken modulo the period. Returns {"yaws": per view, "yaw": their
    circular median (``circular_median``, in [-period / 2, period / 2)), "off_fraction": the
    fraction of views whose yaw is more than min(45, period / 4) degrees from it, "janus":
    off_fraction >= JANUS_FRACTION, "order": n}. None for a round shape (n = MAX_ORDER).
    """
    order = symmetry_order(shape)
    if order >= MAX_ORDER:
        return None
    period = 360 / order
    cams = orbit_cameras(ORBIT_AZIMUTHS)
    depth = relative_depth(depth_fn(cams).detach().float().cpu(), cams.radius)
    yaws = implied_yaws(depth, shape)
    median = circular_median(yaws, period)
    off = (wrap(yaws - median, period).abs() > min(45.0, period / 4)).float().mean().item()
    return {
        "yaws": wrap(yaws, period).tolist(),
        "yaw": median,
        "off_fraction": off,
        "janus": off >= JANUS_FRACTION,
        "order": order,
    }
