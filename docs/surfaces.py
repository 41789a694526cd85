"""docs/surfaces.png: shaded views and meshes of runs, side by side.

    python docs/surfaces.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each RUN_DIR is a `dream3d run` output folder: the first four shaded views of its
views.png (its second row) and its mesh.ply rendered in grey with one light.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from PIL import Image  # noqa: E402

LIGHT = np.array([0.5, 0.8, 0.35]) / np.linalg.norm([0.5, 0.8, 0.35])


def shaded_views(run: Path, n: int = 4) -> np.ndarray:
    """The first n views of the shaded (second) row of views.png, side by side."""
    image = np.asarray(Image.open(run / "views.png").convert("RGB"))
    half = image.shape[0] // 2
    width = image.shape[1] // 8
    return image[half:, : n * width]


def draw_mesh(ax, run: Path) -> str:
    """Grey lambertian render of run/mesh.ply on a 3-D axis; its caption."""
    mesh = trimesh.load(run / "mesh.ply", process=False)
    shade = 0.35 + 0.6 * np.clip(mesh.face_normals @ LIGHT, 0, 1)
    faces = Poly3DCollection(mesh.triangles[:, :, [0, 2, 1]], linewidths=0)
    faces.set_facecolor(np.repeat(shade[:, None], 3, 1))
    ax.add_collection3d(faces)
    lo, hi = mesh.bounds
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    for axis, c in zip("xzy", centre):  # y up
        getattr(ax, f"set_{axis}lim")(c - half, c + half)
    ax.view_init(elev=15, azim=-60)
    ax.set_axis_off()
    return f"mesh: {len(mesh.faces)} faces, area {mesh.area:.1f}"


def main(out: str, *pairs: str) -> None:
    runs = [pair.split("=", 1) for pair in pairs]
    fig = plt.figure(figsize=(2.4 * len(runs), 5.1), dpi=100)
    for i, (label, run) in enumerate(runs):
        ax = fig.add_subplot(2, len(runs), i + 1)
        ax.imshow(shaded_views(Path(run)))
        ax.set_title(f"{label}: shaded views", fontsize=8)
        ax.set_axis_off()
        ax = fig.add_subplot(2, len(runs), len(runs) + i + 1, projection="3d")
        ax.set_title(draw_mesh(ax, Path(run)), fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
