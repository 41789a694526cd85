"""How square a run's mesh is across: its radius towards the diagonals over that towards the axes.

    python docs/cross_section.py RUN_DIR [RUN_DIR ...]

For each `dream3d run` folder, the vertices of mesh.ply (in the world frame, z up) within
0.02 of the heights z = -0.3, 0 and 0.3, and in each, the largest distance from the z axis
within 7.5 degrees of the four axis directions (x, y, -x, -y) and of the four diagonals, each
averaged over its four. The toy world's cube (half 0.5, axis-aligned) gives 0.504 and 0.707:
a ratio of 1.40; a round cross-section gives 1. The measure lives in scenes.shape_scores
(``extents``; ``corner_ratio`` averages the three heights' ratios into a run's score).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh

from generators.nerf.export import to_world
from scenes.shape_scores import HEIGHTS, extents


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
