"""Ground-truth scores of a generated 3D object against a catalogue shape.

Functions take plain tensors and callables (opacity images, a density function), so any
generator is scored the same way: silhouette IoU from rendered opacity, 3D occupancy IoU from
the density field, and which catalogue variant a prompt's object is closest to.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dream3d.cameras import Cameras
from scenes.catalogue import COLOURS, SHAPES
from scenes.truth import occupancy, silhouette


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a & b| / |a | b| of two boolean tensors (1.0 when both are empty)."""
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


def silhouette_iou(opacity: torch.Tensor, shape: str, cameras: Cameras, level=0.5) -> float:
    """IoU of rendered opacity (B, 1, H, W) > level against the shape's true masks."""
    truth = silhouette(shape, cameras, opacity.shape[-1])
    return iou(opacity.cpu() > level, truth)


def grid_points(resolution: int, bound: float = 1.0) -> torch.Tensor:
    """(R^3, 3) cell centres of a regular grid over [-bound, bound]^3."""
    axis = (torch.arange(resolution) + 0.5) / resolution * 2 * bound - bound
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


@torch.no_grad()
def occupied(density_fn: Callable, points: torch.Tensor, threshold: float, chunk=1 << 16):
    """density_fn(points) > threshold as (N,) bool, in chunks."""
    return torch.cat([density_fn(p).cpu() > threshold for p in points.split(chunk)])


def occupancy_iou(inside: torch.Tensor, shape: str, points: torch.Tensor) -> float:
    """3D IoU of predicted inside flags (N,) against the shape's occupancy at the points."""
    return iou(inside, occupancy(shape, points))


def best_variant(inside: torch.Tensor, points: torch.Tensor, obj: str) -> tuple[str, float]:
    """The catalogue shape of object word ``obj`` with the highest occupancy IoU, and the IoU."""
    scores = {k: occupancy_iou(inside, k, points) for k, s in SHAPES.items() if s.object == obj}
    best = max(scores, key=scores.get)
    return best, scores[best]


def colour_error(rgb, colour: str) -> float:
    """Euclidean RGB distance of a mean colour (3,) in [0, 1] from a catalogue albedo."""
    return float(
        torch.as_tensor(rgb, dtype=torch.float64).sub(torch.tensor(COLOURS[colour])).norm()
    )


def nearest_colour(rgb) -> str:
    """The catalogue colour whose albedo is nearest to ``rgb`` (3,) in [0, 1]."""
    return min(COLOURS, key=lambda c: colour_error(rgb, c))
