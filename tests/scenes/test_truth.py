import numpy as np
import torch

from dream3d.cameras import Cameras
from scenes.render import render_with_mask
from scenes.truth import mesh, occupancy, silhouette


def test_occupancy_of_the_sphere_and_the_mug_cavity():
    p = torch.tensor([[0.0, 0, 0], [0.69, 0, 0], [0.71, 0, 0], [0, 0, 0.3]])
    assert occupancy("sphere", p).tolist() == [True, True, False, True]
    wall = torch.tensor([[0.0, 0, 0], [0.38, 0, 0], [0.45, 0, 0], [0, 0, -0.45]])  # r 0.35-0.42
    assert occupancy("mug", wall).tolist() == [False, True, False, True]  # floor below -0.4


def test_sphere_mesh_has_the_right_radius_volume_and_outward_faces():
    v, f = mesh("sphere", resolution=64)
    assert v.dtype == np.float32 and f.dtype == np.int64 and f.max() < len(v)
    assert np.abs(np.linalg.norm(v, axis=1) - 0.7).max() < 2e-3
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6  # > 0 when faces face out
    assert abs(volume / (4 / 3 * np.pi * 0.7**3) - 1) < 0.01


def test_silhouette_is_the_renderers_hard_mask():
    az = torch.tensor([0.0, 135.0])
    cams = Cameras(az, torch.tensor([5.0, 70.0]), torch.tensor([2.6, 3.0]), 40.0)
    masks = silhouette(["table", "torus"], cams, 24)
    assert masks.shape == (2, 1, 24, 24) and masks.dtype == torch.bool
    _, hard = render_with_mask(["table", "torus"], ["red", "red"], cams, 24, supersample=1)
    assert torch.equal(masks.float(), hard)
    assert 0.1 < masks.float().mean() < 0.6
