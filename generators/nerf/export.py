"""A trained NeRF as a coloured triangle mesh: marching cubes of its density, albedo per vertex.

The field comes in as two plain callables, so any field (hash grid, MLP, an analytic test
shape) exports the same way:

    density_fn(points (N, 3)) -> (N,) densities >= 0
    albedo_fn(points (N, 3)) -> (N, 3) colours in [0, 1]

Meshes stay in the world frame (z up, objects in the unit ball, see dream3d/cameras.py) at
their true scale, so they compare directly with the ground truth of scenes/truth.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from dream3d.config import AT_LEAST_1, POSITIVE, UNIT, Range, check_ranges

FieldFn = Callable[[torch.Tensor], torch.Tensor]
FORMATS = ("glb", "obj", "ply")
Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)  # z up -> y up


@dataclass(frozen=True)
class MeshConfig:
    """How a density field becomes a mesh.

    The surface is the level set density = ``threshold``. A slab of thickness d at constant
    density sigma has opacity 1 - exp(-sigma d) (the volume rendering integral), so at
    sigma = 5 a slab ln(2) / 5 ~ 0.14 thick (1/15 of the unit ball's diameter) is already
    half opaque: renders show denser regions as solid and thinner ones as haze. A fixed
    threshold of this order is what threestudio uses for density fields (it also offers
    "auto", the grid's mean); fixed keeps meshes of different runs comparable.
    """

    resolution: int = 96  # grid points per axis: 96^3 = 0.9M density queries
    bound: float = 1.0  # the grid spans [-bound, bound]^3; objects sit in the unit ball
    threshold: float = 5.0  # density of the isosurface: a slab 0.14 thick is half opaque
    min_component_fraction: float = 0.05  # drop parts with fewer faces than this x the largest
    chunk: int = 1 << 18  # points per density_fn / albedo_fn call

    def __post_init__(self):
        ranges = {"resolution": Range(2), "bound": POSITIVE, "chunk": AT_LEAST_1}
        check_ranges(self, ranges | {"min_component_fraction": UNIT})


def _evaluate(fn: FieldFn, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """fn over points (N, 3) in chunks without autograd; outputs concatenated, float32 on CPU."""
    with torch.no_grad():
        return torch.cat([fn(p).float().cpu() for p in points.split(chunk)])


def density_grid(
    density_fn: FieldFn, config: MeshConfig = MeshConfig(), device: str | torch.device = "cpu"
) -> np.ndarray:
    """Densities (R, R, R) at the R^3 grid points over [-bound, bound]^3, indexed [x, y, z]."""
    axis = torch.linspace(-config.bound, config.bound, config.resolution, device=device)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return _evaluate(density_fn, points, config.chunk).reshape((config.resolution,) * 3).numpy()


def extract_mesh(
    density_fn: FieldFn,
    albedo_fn: FieldFn,
    config: MeshConfig = MeshConfig(),
    device: str | torch.device = "cpu",
) -> trimesh.Trimesh:
    """The surface density = threshold in world units, RGBA uint8 vertex colours, floaters removed.

    The grid is padded with one layer of empty cells (density 0, as outside the renderer's
    bound), so an object cut by the bound still gives a closed surface. Faces wind so that
    normals point away from high density (outwards).
    """
    grid = density_grid(density_fn, config, device)
    if not np.isfinite(grid).all():
        raise ValueError("the field's density has NaN or inf values; the run diverged")
    if not grid.max() > config.threshold:
        raise ValueError(
            f"the field is empty at density threshold {config.threshold:g}; "
            "train longer or lower outputs.mesh.threshold"
        )
    step = 2 * config.bound / (config.resolution - 1)
    # "ascent": the object is where values are high, so normals point down the gradient
    verts, faces, _, _ = marching_cubes(
        np.pad(grid, 1), config.threshold, spacing=(step,) * 3, gradient_direction="ascent"
    )
    verts = (verts - config.bound - step).astype(np.float32)  # padded index 1 is -bound
    rgb = _evaluate(albedo_fn, torch.from_numpy(verts).to(device), config.chunk)
    rgb = (rgb.reshape(-1, 3).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], 1)  # (V, 4)
    mesh = trimesh.Trimesh(verts, faces.astype(np.int64), vertex_colors=rgba, process=False)
    return remove_floaters(mesh, config.min_component_fraction)


def remove_floaters(mesh: trimesh.Trimesh, min_fraction: float) -> trimesh.Trimesh:
    """A copy keeping the edge-connected parts with >= min_fraction x the largest part's faces."""
    labels = trimesh.graph.connected_component_labels(
        mesh.face_adjacency, node_count=len(mesh.faces)
    )  # (F,) part of each face
    counts = np.bincount(labels)
    mesh = mesh.copy()
    mesh.update_faces(counts[labels] >= min_fraction * counts.max())
    mesh.remove_unreferenced_vertices()
    return mesh


def save_mesh(mesh: trimesh.Trimesh, out_dir: Path | str, stem: str = "mesh") -> dict[str, Path]:
    """Write <stem>.glb, .obj (lines ``v x y z r g b``) and .ply, all with vertex colours.

    Returns {format: path}. The files are y up, glTF's convention and most viewers' default:
    world (x, y, z) (z up) is written as (x, z, -y), so the object stands upright with its
    front (+x) to the right. ``to_world`` undoes it for a loaded file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    upright = mesh.copy()
    upright.apply_transform(Y_UP)
    paths = {fmt: out_dir / f"{stem}.{fmt}" for fmt in FORMATS}
    for path in paths.values():
        upright.export(path)
    return paths


def to_world(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A loaded y-up file back in the world frame (z up): (x, y, z) -> (x, -z, y)."""
    mesh = mesh.copy()
    mesh.apply_transform(np.linalg.inv(Y_UP))
    return mesh


def surface_samples(
    mesh: trimesh.Trimesh, n_points: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """n_points (n, 3) drawn uniformly by area from the surface and their faces' unit normals."""
    points, faces = trimesh.sample.sample_surface(mesh, n_points, seed=seed)
    return points, mesh.face_normals[faces]


def chamfer_distance(
    a: trimesh.Trimesh, b: trimesh.Trimesh, n_points: int = 20_000, seed: int = 0
) -> float:
    """Symmetric Chamfer distance between two surfaces, in world units (not squared).

    CD = (mean_{x in A} min_{y in B} |x - y| + mean_{y in B} min_{x in A} |x - y|) / 2 over
    n_points samples drawn uniformly by area from each surface with the same seed, so
    CD(M, M) = 0 exactly and concentric spheres of radii r and s give |r - s|. Sampling
    leaves a floor of about half the sample spacing, sqrt(area / n_points) / 2, between two
    different meshes of one surface (0.0075 for spheres of radius 0.6 at 20k points).
    """
    x = surface_samples(a, n_points, seed)[0]  # (n, 3)
    y = surface_samples(b, n_points, seed)[0]  # (n, 3)
    a_to_b = cKDTree(y).query(x)[0].mean()
    b_to_a = cKDTree(x).query(y)[0].mean()
    return float((a_to_b + b_to_a) / 2)


def normal_consistency(
    mesh: trimesh.Trimesh,
    truth: trimesh.Trimesh,
    n_points: int = 20_000,
    n_truth: int = 200_000,
    seed: int = 0,
) -> float:
    """Mean |n . n_true| over points of ``mesh``: n its face normal there, n_true the normal at
    the nearest of ``n_truth`` points of ``truth`` (both drawn by area). 1 for the same smooth
    surface; a bumpy copy of it scores lower, whatever the winding of either."""
    x, n = surface_samples(mesh, n_points, seed)
    y, n_true = surface_samples(truth, n_truth, seed + 1)
    # exact nearest neighbours; big leaves and both cores: a mesh far inside the truth has many
    # nearly equidistant truth points, and small leaves made that 2x slower (same answer)
    nearest = cKDTree(y, leafsize=128).query(x, workers=-1)[1]
    return float(np.abs((n * n_true[nearest]).sum(-1)).mean())


def area_ratio(mesh: trimesh.Trimesh, truth: trimesh.Trimesh) -> float:
    """Surface area of ``mesh`` over that of ``truth``: 1 for the true surface, more for bumps."""
    return float(mesh.area / truth.area)


def mean_vertex_colour(mesh: trimesh.Trimesh) -> np.ndarray:
    """Mean RGB (3,) in [0, 1] over the vertices (unweighted by area)."""
    return mesh.visual.vertex_colors[:, :3].astype(np.float64).mean(0) / 255


def mesh_metrics(mesh: trimesh.Trimesh, reference: trimesh.Trimesh | None = None) -> dict:
    """Purely geometric numbers for metrics.json; with ``reference``, the Chamfer distance to it."""
    metrics = {
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "watertight": bool(mesh.is_watertight),
        "area": float(mesh.area),
        "mean_colour": mean_vertex_colour(mesh).round(4).tolist(),
    }
    if reference is not None:
        metrics["chamfer"] = chamfer_distance(mesh, reference)
    return metrics
