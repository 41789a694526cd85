"""Ground-truth scores of a generated 3D object against a catalogue shape.

Functions take plain tensors and callables (opacity images, a density function), so any
generator is scored the same way: silhouette IoU from rendered opacity, 3D occupancy IoU from
the density field, and which catalogue variant a prompt's object is closest to.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import torch

from dream3d.cameras import CameraConfig, Cameras
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
    scores = {k: occupancy_iou(inside, k, points) for k in variants(obj)}
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


def foreground(images: torch.Tensor, level: float = 0.2) -> torch.Tensor:
    """(B, H, W) bool: pixels of images (B, 3, H, W) in [0, 1] whose darkest channel is more
    than ``level`` below the white background (every catalogue albedo has one at <= 0.75)."""
    return (1 - images).amax(1) > level


def pose_grid(step: float = 7.5, config: CameraConfig | None = None) -> Cameras:
    """Cameras on a grid over the toy world's distribution (default ``CameraConfig()``):
    azimuth and elevation every ``step`` degrees, three radii."""
    config = config or CameraConfig()
    azimuths = torch.arange(-180.0, 180.0, step)
    elevations = torch.arange(config.elevation[0], config.elevation[1] + 1e-6, step)
    radii = torch.linspace(*config.radius, 3)
    poses = torch.tensor(list(itertools.product(azimuths, elevations, radii)))
    return Cameras(poses[:, 0], poses[:, 1], poses[:, 2], config.fov)


def variants(obj: str) -> list[str]:
    """The SHAPES keys whose object word is ``obj`` (the three chairs for "chair")."""
    return [k for k, s in SHAPES.items() if s.object == obj]


@functools.cache
def _pose_silhouettes(obj: str, size: int, step: float) -> tuple[list[str], torch.Tensor]:
    """View captions (P,) of the pose grid and silhouettes (V, P, size^2) of obj's variants."""
    cams = pose_grid(step)
    masks = [silhouette(v, cams, size).reshape(len(cams), -1) for v in variants(obj)]
    return cams.views(), torch.stack(masks)


def pose_scores(masks: torch.Tensor, obj: str, views: list[str], step: float = 7.5):
    """(N, V) IoU of each mask (N, H, W) with a true silhouette of each variant of ``obj``
    (``variants(obj)`` order) from its best camera of ``pose_grid(step)`` whose view caption
    is ``views[i]``."""
    grid_views, truth = _pose_silhouettes(obj, masks.shape[-1], step)
    keep = {view: torch.tensor([v == view for v in grid_views]) for view in set(views)}
    scores = []
    for mask, view in zip(masks.reshape(len(masks), -1), views):
        t = truth[:, keep[view]]  # (V, P', H W)
        union = (t | mask).sum(-1).clamp(min=1)
        scores.append(((t & mask).sum(-1) / union).amax(1))  # (V,)
    return torch.stack(scores)


def best_pose_iou(masks: torch.Tensor, obj: str, views: list[str], step: float = 7.5):
    """(N,) IoU of each mask (N, H, W) with a true silhouette of ``obj`` (any variant) from the
    best camera of ``pose_grid(step)`` whose view caption is ``views[i]``.

    Applied to a teacher's 2D samples it bounds what a 3D object distilled from them can score
    on silhouettes: a sample is matched to its most favourable pose, one sample at a time.
    """
    return pose_scores(masks, obj, views, step).amax(1)


def nearest_variant(masks: torch.Tensor, obj: str, views: list[str], step: float = 7.5):
    """The variant of ``obj`` (a SHAPES key) whose best-pose silhouette fits each mask best."""
    names = variants(obj)
    return [names[i] for i in pose_scores(masks, obj, views, step).argmax(1).tolist()]


def distribution_scores(found_variants: list[str], found_colours: list[str], spec, teacher=None):
    """How results (one per particle or seed) spread over the choices a prompt leaves.

    ``found_*``: each result's closest variant and nearest colour; ``spec``: the PromptSpec.
    Counts of each, their total variation distance to the truth (uniform over the prompt's
    variants / colours) with ``*_floor``, what n draws from the truth itself give on average,
    and the number of distinct (variant, colour) modes reached (``modes_expected``: by n
    uniform draws). ``teacher``: {"variants": [...], "colours": [...]} of the teacher's judged
    samples adds the distances to them. None for a prompt that leaves no choice.
    """
    from collections import Counter

    from dream3d.metrics import expected_modes, expected_tv, label_histogram, total_variation

    shapes = variants(spec.object)
    axes = {  # found, the truth's choices, every label
        "variant": (found_variants, shapes, shapes),
        "colour": (found_colours, spec.colours, list(COLOURS)),
    }
    if len(shapes) == 1 and len(spec.colours) == 1:
        return None
    n, possible = len(found_colours), len(shapes) * len(spec.colours)
    out = {"n": n, "modes": len(set(zip(found_variants, found_colours)))}
    out |= {"modes_possible": possible, "modes_expected": round(expected_modes(n, possible), 3)}
    for axis, (found, allowed, names) in axes.items():
        out[f"{axis}_counts"] = dict(Counter(found).most_common())
        if len(allowed) == 1:
            continue
        truth = torch.tensor([float(name in allowed) for name in names])
        seen = label_histogram(found, names)
        out[f"{axis}_tv"] = round(total_variation(seen, truth), 4)
        out[f"{axis}_tv_floor"] = round(expected_tv(n, truth), 4)
        if teacher is not None:
            theirs = label_histogram(teacher[f"{axis}s"], names)
            out[f"{axis}_tv_teacher"] = round(total_variation(seen, theirs), 4)
    return out
