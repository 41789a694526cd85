"""How square a run's mesh is across: its radius towards the diagonals over that towards the axes.

    python docs/cross_section.py RUN_DIR [RUN_DIR ...]

For each `dream3d run` folder, the vertices of mesh.ply (in the world frame, z up) within
0.02 of the heights z = -0.3, 0 and 0.3, and in each, the largest distance from the z axis
within 7.5 degrees of the four axis directions (x, y, -x, -y) and of the four diagonals, each
averaged over its four. The toy world's cube (half 0.5, axis-aligned) gives 0.504 and 0.707:
a ratio of 1.40; a round cross-section gives 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh

from generators.nerf.export import to_world

HEIGHTS = (-0.3, 0.0, 0.3)


def extents(vertices: np.ndarray, z: float, slab: float = 0.02, half_angle: float = 7.5):
    """(towards the axes, towards the diagonals): mean over four directions each of the largest
    distance from the z axis of the vertices within ``slab`` of height z and ``half_angle``
    degrees of that direction."""
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


def main(runs: list[str]) -> None:
    print("| run | z | towards the axes | towards the diagonals | ratio |")
    print("|---|---|---|---|---|")
    for run in runs:
        mesh = to_world(trimesh.load(Path(run) / "mesh.ply", process=False))  # files are y up
        vertices = np.asarray(mesh.vertices)
        for z in HEIGHTS:
            axes, diagonals = extents(vertices, z)
            ratio = diagonals / axes if axes else float("nan")
            print(f"| {Path(run).name} | {z:+.1f} | {axes:.3f} | {diagonals:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
