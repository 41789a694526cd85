"""Signed distance primitives and combinators: points (N, 3) -> distances (N,), negative inside.

Exact distances except where a docstring says "bound": those are exact inside and a lower
bound outside (a max of plane distances), which is all sphere tracing and marching cubes need.
Axes are world axes: z is up; primitives are centred at the origin unless stated.
"""

from __future__ import annotations

import torch


def at(p: torch.Tensor, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> torch.Tensor:
    """Points (N, 3) in the frame of a primitive centred at (x, y, z)."""
    return p - p.new_tensor([x, y, z])


def mirror_xy(p: torch.Tensor) -> torch.Tensor:
    """(N, 3) with |x| and |y|: one primitive at (x, y) stands for its four mirror images."""
    return torch.cat([p[:, :2].abs(), p[:, 2:]], -1)


def mirror_y(p: torch.Tensor) -> torch.Tensor:
    """(N, 3) with |y|: one primitive at +y stands for its mirror image at -y."""
    return torch.stack([p[:, 0], p[:, 1].abs(), p[:, 2]], -1)


def sphere(p: torch.Tensor, radius: float) -> torch.Tensor:
    """|p| - r."""
    return p.norm(dim=-1) - radius


def box(p: torch.Tensor, half: tuple[float, float, float]) -> torch.Tensor:
    """Axis-aligned box of half-extents ``half``: |max(q, 0)| + min(max_i q_i, 0), q = |p| - h."""
    q = p.abs() - p.new_tensor(half)
    return q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)


def rounded_box(p: torch.Tensor, half: tuple[float, float, float], radius: float) -> torch.Tensor:
    """Box of half-extents ``half`` with edges rounded by ``radius``."""
    return box(p, tuple(h - radius for h in half)) - radius


def _capped(rho: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Distance to a 2-D rectangle from its corner-relative coordinates (rho, z) (N,) each."""
    q = torch.stack([rho, z], -1)
    return q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)


def cylinder(p: torch.Tensor, radius: float, half_height: float) -> torch.Tensor:
    """Solid cylinder along z of ``radius`` from -half_height to +half_height."""
    return _capped(p[:, :2].norm(dim=-1) - radius, p[:, 2].abs() - half_height)


def rounded_cylinder(
    p: torch.Tensor, radius: float, half_height: float, round: float
) -> torch.Tensor:
    """Cylinder along z with its rims rounded by ``round``."""
    return cylinder(p, radius - round, half_height - round) - round


def frustum(p: torch.Tensor, bottom: float, top: float, half_height: float) -> torch.Tensor:
    """Bound: cone frustum along z, radius ``bottom`` at -half_height, ``top`` at +half_height.

    The slanted side is the line through (bottom, -h) and (top, h) in (rho, z); its outward
    normal is (2h, bottom - top) / L.
    """
    rho, z = p[:, :2].norm(dim=-1), p[:, 2]
    h = half_height
    length = ((2 * h) ** 2 + (bottom - top) ** 2) ** 0.5
    side = ((rho - bottom) * 2 * h + (z + h) * (bottom - top)) / length
    return torch.maximum(side, z.abs() - h)


def torus(p: torch.Tensor, major: float, minor: float) -> torch.Tensor:
    """Torus around the z axis: |(rho - R, z)| - r."""
    q = torch.stack([p[:, :2].norm(dim=-1) - major, p[:, 2]], -1)
    return q.norm(dim=-1) - minor


def capsule(p: torch.Tensor, a: tuple, b: tuple, radius: float) -> torch.Tensor:
    """Distance to the segment a-b minus ``radius``."""
    a, b = p.new_tensor(a), p.new_tensor(b)
    pa, ba = p - a, b - a
    s = ((pa @ ba) / (ba @ ba)).clamp(0, 1)
    return (pa - s[:, None] * ba).norm(dim=-1) - radius


def pyramid(p: torch.Tensor, half_base: float, height: float) -> torch.Tensor:
    """Bound: square pyramid, base |x|, |y| <= half_base at z = 0, apex at (0, 0, height).

    Each slanted face is the plane through (b, ., 0) and (0, ., h): (h |x| + b z - b h) / L.
    """
    b, h = half_base, height
    length = (h * h + b * b) ** 0.5
    faces = (h * p[:, :2].abs() + b * p[:, 2:] - b * h) / length  # (N, 2) x- and y-faces
    return torch.maximum(faces.amax(-1), -p[:, 2])


def union(*d: torch.Tensor) -> torch.Tensor:
    """min of the distances."""
    return torch.stack(d, 0).amin(0)


def subtract(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a with b carved out: max(a, -b)."""
    return torch.maximum(a, -b)


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Polynomial smooth minimum with blend width k: min(a, b) - k/4 * max(1 - |a - b|/k, 0)^2."""
    h = (1 - (a - b).abs() / k).clamp(min=0)
    return torch.minimum(a, b) - 0.25 * k * h * h
