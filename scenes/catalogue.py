"""The toy world's objects: procedural shapes as signed distance functions, colours, captions.

Every shape faces +x (a chair's back is at -x), is roughly centred at the origin and lies
inside the ball of radius 0.9, so the cameras of ``dream3d.cameras`` frame it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from scenes.sdf import (
    at,
    box,
    capsule,
    cylinder,
    frustum,
    mirror_xy,
    mirror_y,
    pyramid,
    rounded_cylinder,
    smooth_union,
    sphere,
    subtract,
    torus,
    union,
)

COLOURS: dict[str, tuple[float, float, float]] = {  # RGB albedos
    "red": (0.85, 0.10, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "purple": (0.55, 0.20, 0.75),
    "pink": (1.00, 0.55, 0.75),
    "brown": (0.50, 0.30, 0.12),
}
BACKGROUND: tuple[float, float, float] = (1.0, 1.0, 1.0)  # plain white


@dataclass(frozen=True)
class Shape:
    """A procedural object: the word its captions use and its signed distance function."""

    object: str  # "chair" for every chair variant, else the shape's key
    sdf: Callable[[torch.Tensor], torch.Tensor]  # points (N, 3) -> distances (N,)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distances (N,) at points (N, 3)."""
        return self.sdf(points)


def chair(p: torch.Tensor, half: float, legs: float, back: float, arms: bool) -> torch.Tensor:
    """Chair of seat half-width ``half``: legs ``legs`` below the seat top, back ``back`` above.

    Built with the seat top at height 0, then centred so [-legs, back] is symmetric about 0.
    """
    q = at(p, z=-(back - legs) / 2)
    seat = box(at(q, z=-0.04), (half, half, 0.04))
    foot = at(mirror_xy(q), half - 0.05, half - 0.05, -(legs + 0.08) / 2)
    leg = box(foot, (0.04, 0.04, (legs - 0.08) / 2))
    rest = box(at(q, -half + 0.04, 0, back / 2), (0.04, half, back / 2))
    d = union(seat, leg, rest)
    if arms:
        side = mirror_y(q)
        arm = box(at(side, -0.01, half + 0.04, 0.3), (half - 0.01, 0.04, 0.03))
        post = box(at(side, half - 0.06, half + 0.04, 0.11), (0.035, 0.035, 0.19))
        d = union(d, arm, post)
    return d


def table(p: torch.Tensor) -> torch.Tensor:
    """Rectangular table, wider along y, top at z = 0.3 and four legs down to -0.3."""
    top = box(at(p, z=0.26), (0.42, 0.62, 0.04))
    leg = box(at(mirror_xy(p), 0.35, 0.55, -0.04), (0.04, 0.04, 0.26))
    return union(top, leg)


def stool(p: torch.Tensor) -> torch.Tensor:
    """Bar stool: round cushion seat, four splayed legs, a foot ring."""
    q = at(p, z=0.13)
    seat = rounded_cylinder(at(q, z=0.45), 0.32, 0.05, 0.02)
    leg = capsule(mirror_xy(q), (0.16, 0.16, 0.42), (0.3, 0.3, -0.72), 0.035)
    ring = torus(at(q, z=-0.3), 0.35, 0.025)
    return union(seat, leg, ring)


def mug(p: torch.Tensor) -> torch.Tensor:
    """Open-topped mug with a handle on its +y side (seen from the front, back and above)."""
    outer = cylinder(p, 0.42, 0.5)
    body = subtract(outer, cylinder(at(p, z=0.1), 0.35, 0.5))
    loop = at(p, y=0.42, z=0.02)[:, [1, 2, 0]]  # torus axis along x
    handle = subtract(torus(loop, 0.24, 0.06), outer)
    return union(body, handle)


def lamp(p: torch.Tensor) -> torch.Tensor:
    """Table lamp: a disc base, a thin pole and a conical shade."""
    q = at(p, z=0.05)
    base = rounded_cylinder(at(q, z=-0.72), 0.32, 0.04, 0.015)
    pole = cylinder(at(q, z=-0.2), 0.035, 0.5)
    shade = frustum(at(q, z=0.42), 0.45, 0.22, 0.24)
    return union(base, pole, shade)


def snowman(p: torch.Tensor) -> torch.Tensor:
    """Three stacked, smoothly joined spheres and a carrot nose pointing +x."""
    q = at(p, z=0.06)
    body = smooth_union(sphere(at(q, z=-0.46), 0.36), sphere(at(q, z=0.08), 0.27), 0.06)
    body = smooth_union(body, sphere(at(q, z=0.5), 0.19), 0.05)
    nose = capsule(q, (0.12, 0.0, 0.5), (0.34, 0.0, 0.47), 0.035)
    return union(body, nose)


SHAPES: dict[str, Shape] = {
    "chair-plain": Shape("chair", partial(chair, half=0.42, legs=0.6, back=0.4, arms=False)),
    "chair-arms": Shape("chair", partial(chair, half=0.4, legs=0.6, back=0.65, arms=True)),
    "chair-tall": Shape("chair", partial(chair, half=0.34, legs=0.5, back=0.9, arms=False)),
    "table": Shape("table", table),
    "stool": Shape("stool", stool),
    "mug": Shape("mug", mug),
    "lamp": Shape("lamp", lamp),
    "snowman": Shape("snowman", snowman),
    "sphere": Shape("sphere", partial(sphere, radius=0.7)),
    "cube": Shape("cube", partial(box, half=(0.5, 0.5, 0.5))),
    "cone": Shape("cone", lambda p: frustum(at(p, z=0.15), 0.6, 0.0, 0.6)),
    "cylinder": Shape("cylinder", partial(cylinder, radius=0.45, half_height=0.6)),
    "torus": Shape("torus", partial(torus, major=0.55, minor=0.25)),
    "pyramid": Shape("pyramid", lambda p: pyramid(at(p, z=-0.4), 0.5, 1.1)),
}
OBJECTS: list[str] = sorted({shape.object for shape in SHAPES.values()})


def caption(shape: str, colour: str, view: str | None = None) -> str:
    """DreamFusion-style prompt: "a red chair, side view" ("an orange mug" without a view)."""
    article = "an" if colour[0] in "aeiou" else "a"
    text = f"{article} {colour} {SHAPES[shape].object}"
    return text if view is None else f"{text}, {view} view"
