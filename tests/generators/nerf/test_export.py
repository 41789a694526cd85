import numpy as np
import pytest
import torch
import trimesh

from generators.nerf.export import (
    MeshConfig,
    chamfer_distance,
    extract_mesh,
    mean_vertex_colour,
    mesh_metrics,
    save_mesh,
    to_world,
)

CONFIG = MeshConfig(resolution=64)
RADIUS = 0.6
FLOATER = torch.tensor([0.8, 0.8, 0.0])  # centre of a small ball far from the sphere


def ball(points: torch.Tensor, centre: torch.Tensor, radius: float) -> torch.Tensor:
    """Density (N,) crossing CONFIG.threshold at the ball's surface, linear in the distance."""
    distance = (points - centre).norm(dim=-1)
    return (CONFIG.threshold + 100 * (radius - distance)).clamp(min=0)


def sphere(points: torch.Tensor) -> torch.Tensor:
    return ball(points, torch.zeros(3), RADIUS)


def sphere_and_floater(points: torch.Tensor) -> torch.Tensor:
    return torch.maximum(sphere(points), ball(points, FLOATER, 0.08))


def red(points: torch.Tensor) -> torch.Tensor:
    return torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)


def position(points: torch.Tensor) -> torch.Tensor:
    return (points + 1) / 2


@pytest.fixture(scope="module")
def red_sphere() -> trimesh.Trimesh:
    return extract_mesh(sphere, red, CONFIG)


def test_sphere_has_true_radius_and_outward_faces(red_sphere):
    r = np.linalg.norm(red_sphere.vertices, axis=1)
    assert abs(r.mean() - RADIUS) < 0.01 * RADIUS
    assert r.min() > 0.97 * RADIUS and r.max() < 1.01 * RADIUS
    assert red_sphere.is_watertight
    # outward winding: positive enclosed volume, face normals along the radius
    assert red_sphere.volume == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.02)
    centres = red_sphere.triangles_center
    radial = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    assert (red_sphere.face_normals * radial).sum(1).min() > 0.9


def test_sphere_is_red(red_sphere):
    assert red_sphere.visual.vertex_colors.dtype == np.uint8
    assert (red_sphere.visual.vertex_colors == [255, 0, 0, 255]).all()
    np.testing.assert_allclose(mean_vertex_colour(red_sphere), [1, 0, 0])


def test_floater_is_removed_and_colours_follow_vertices():
    kept = extract_mesh(sphere_and_floater, position, CONFIG)
    assert np.linalg.norm(kept.vertices, axis=1).max() < 0.61
    assert kept.is_watertight
    expected = (kept.vertices + 1) / 2 * 255
    assert np.abs(kept.visual.vertex_colors[:, :3] - expected).max() <= 0.5 + 1e-3
    no_cleaning = MeshConfig(resolution=64, min_component_fraction=0)
    everything = extract_mesh(sphere_and_floater, position, no_cleaning)
    far = np.linalg.norm(everything.vertices - FLOATER.numpy(), axis=1) < 0.1
    assert far.sum() > 0 and len(everything.vertices) - far.sum() == len(kept.vertices)


def test_object_cut_by_the_bound_is_closed():
    mesh = extract_mesh(lambda p: ball(p, torch.zeros(3), 1.2), red, MeshConfig(32))
    assert mesh.is_watertight
    assert np.abs(mesh.vertices).max() < 1.0 + 2 / 31


def test_empty_field_raises():
    with pytest.raises(ValueError, match="empty at density threshold 5; train longer"):
        extract_mesh(lambda p: torch.zeros(len(p)), red, MeshConfig(16))


def test_save_mesh_round_trip(red_sphere, tmp_path):
    paths = save_mesh(red_sphere, tmp_path)
    assert sorted(paths) == ["glb", "obj", "ply"]
    for path in paths.values():
        loaded = trimesh.load(path, force="mesh", process=False)
        assert len(loaded.vertices) == len(red_sphere.vertices)
        assert len(loaded.faces) == len(red_sphere.faces)
        np.testing.assert_allclose(to_world(loaded).vertices, red_sphere.vertices, atol=1e-6)
        # y up in the file: the world's top (max z) is the file's max y
        top = red_sphere.vertices[:, 2].argmax()
        assert np.isclose(loaded.vertices[top, 1], red_sphere.vertices[top, 2], atol=1e-6)
        np.testing.assert_array_equal(loaded.visual.vertex_colors, red_sphere.visual.vertex_colors)
    first = paths["obj"].read_text().splitlines()[1].split()
    assert first[0] == "v" and first[4:] == ["1.00000000", "0.00000000", "0.00000000"]


def test_chamfer_distance():
    small = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    large = trimesh.creation.icosphere(subdivisions=4, radius=0.7)
    assert chamfer_distance(small, small) == 0.0
    assert chamfer_distance(small, large) == pytest.approx(0.1, rel=0.02)
    assert chamfer_distance(small, large) == pytest.approx(chamfer_distance(large, small), rel=0.01)


def test_mesh_metrics(red_sphere):
    metrics = mesh_metrics(red_sphere, reference=red_sphere)
    assert metrics["watertight"] and metrics["chamfer"] == 0.0
    assert metrics["mean_colour"] == [1.0, 0.0, 0.0]
    assert metrics["area"] == pytest.approx(4 * np.pi * RADIUS**2, rel=0.02)
