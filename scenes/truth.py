"""Exact ground truth for evaluation: occupancy, meshes and silhouettes of catalogue shapes."""

from __future__ import annotations

import numpy as np
import torch
from skimage.measure import marching_cubes

from dream3d.cameras import Cameras
from scenes.catalogue import SHAPES
from scenes.render import trace


def occupancy(shape: str, points: torch.Tensor) -> torch.Tensor:
    """Inside flags (N,) bool of points (N, 3): sdf < 0."""
    return SHAPES[shape](points) < 0


def sdf_grid(shape: str, resolution: int = 96, chunk: int = 1 << 18) -> torch.Tensor:
    """Signed distances (R, R, R) on the grid of R points per axis over [-1, 1]^3, [x, y, z]."""
    axis = torch.linspace(-1, 1, resolution)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    d = torch.cat([SHAPES[shape](p) for p in points.split(chunk)])
    return d.reshape(resolution, resolution, resolution)


def mesh(shape: str, resolution: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float32 in world units and faces (F, 3) int64 of the zero level set.

    Marching cubes of ``sdf_grid``; faces wind so normals point outwards (towards sdf > 0).
    """
    step = 2.0 / (resolution - 1)
    grid = sdf_grid(shape, resolution).numpy()
    # a level just above 0 keeps vertices off grid points where the SDF is ~0 (e.g. a cylinder's
    # caps on a grid plane), which would otherwise leave degenerate faces and open seams
    verts, faces, _, _ = marching_cubes(grid, 1e-6, spacing=(step,) * 3)
    return (verts - 1.0).astype(np.float32), faces.astype(np.int64)


def silhouette(shapes: str | list[str], cameras: Cameras, size: int = 32) -> torch.Tensor:
    """Foreground masks (B, 1, size, size) bool, one ray per pixel centre."""
    if isinstance(shapes, str):
        shapes = [shapes] * len(cameras)
    return trace(shapes, cameras, size)[0][:, None]
