"""docs/views-agree.png: runs' views all around and their cross-sections against the truth.

    python docs/views_agree.py OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

One row per RUN_DIR (a `dream3d run` folder): its eight albedo views (views.png's first row,
azimuths 0, 45, ..., -45) and the cross-section of its mesh.ply at height z = 0 (vertices within
0.02 of it, seen from above, the object's front +x to the right) over the truth's (the closest
variant in metrics.json), with the corner ratio and the Janus score of metrics.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from generators.nerf.export import to_world  # noqa: E402
from scenes import truth  # noqa: E402


def slice_xy(vertices: np.ndarray, z: float = 0.0, slab: float = 0.02) -> np.ndarray:
    """(N, 2) x, y of the vertices within ``slab`` of height z."""
    return vertices[np.abs(vertices[:, 2] - z) < slab][:, :2]


def main(out: str, *pairs: str) -> None:
    runs = [(label, Path(run)) for label, run in (pair.split("=", 1) for pair in pairs)]
    fig, axes = plt.subplots(
        len(runs), 2, figsize=(9.5, 1.6 * len(runs)), gridspec_kw={"width_ratios": [5.2, 1]}
    )
    axes = np.atleast_2d(axes)
    for (label, run), (views_ax, cut_ax) in zip(runs, axes):
        image = np.asarray(Image.open(run / "views.png").convert("RGB"))
        views_ax.imshow(image[: image.shape[0] // 2])
        views_ax.set_axis_off()
        t = json.loads((run / "metrics.json").read_text())["truth"]
        janus = "–" if t.get("janus") is None else f"{t['janus_off_fraction']:.2f}"
        views_ax.set_title(
            f"{label}: silhouette IoU {t['silhouette_iou']:.3f}, off-median views {janus}",
            fontsize=8,
        )
        true_verts = truth.mesh(t["closest_variant"], 96)[0]
        mesh = to_world(trimesh.load(run / "mesh.ply", process=False))
        for verts, colour in ((true_verts, "0.75"), (np.asarray(mesh.vertices), "C3")):
            xy = slice_xy(verts)
            cut_ax.scatter(xy[:, 0], xy[:, 1], s=0.3, c=colour)
        cut_ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xticks=[], yticks=[])
        ratio = t.get("corner_ratio")
        cut_ax.set_title("z = 0" + ("" if ratio is None else f", corners {ratio:.2f}"), fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
