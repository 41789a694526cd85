import pytest
import torch

from scenes import sdf
from scenes.catalogue import BACKGROUND, COLOURS, OBJECTS, SHAPES, caption


def _grid(n: int = 64) -> torch.Tensor:
    """(n^3, 3) grid points over [-1, 1]^3."""
    axis = torch.linspace(-1, 1, n)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def test_sphere_cube_torus_match_their_formulas():
    p = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0.3, 0.4, 0], [1, 1, 0], [1, 1, 1], [0.2, 0.1, 0.4]])
    assert SHAPES["sphere"](p).tolist() == pytest.approx(
        [-0.7, 0.3, -0.2, 2**0.5 - 0.7, 3**0.5 - 0.7, 0.21**0.5 - 0.7], abs=1e-6
    )
    assert SHAPES["cube"](p).tolist() == pytest.approx(
        [-0.5, 0.5, -0.1, 0.5**0.5, 0.75**0.5, -0.1], abs=1e-6
    )
    q = torch.tensor([[0.55, 0, 0], [0, 0, 0], [0, 0.55, 0.25], [1, 0, 0], [0.55, 0, 0.5]])
    assert SHAPES["torus"](q).tolist() == pytest.approx([-0.25, 0.3, 0.0, 0.2, 0.25], abs=1e-6)


def test_helpers_at_hand_picked_points():
    p = torch.tensor([[0.0, 0, 0], [0, 0, 1], [0.5, 0, 0.2]])
    assert sdf.cylinder(p, 0.3, 0.5).tolist() == pytest.approx([-0.3, 0.5, 0.2], abs=1e-6)
    assert sdf.capsule(p, (0, 0, -1), (0, 0, 0.5), 0.1).tolist() == pytest.approx(
        [-0.1, 0.4, 0.4], abs=1e-6
    )
    cone = sdf.frustum(p, 0.5, 0.0, 0.5)  # apex at z = 0.5, base radius 0.5 at z = -0.5
    assert cone.tolist() == pytest.approx([-0.25 / 1.25**0.5, 0.5, 0.35 / 1.25**0.5], abs=1e-6)
    a, b = torch.tensor([0.1, 0.5]), torch.tensor([0.1, 0.1])
    assert sdf.smooth_union(a, b, 0.2).tolist() == pytest.approx([0.05, 0.1], abs=1e-6)


def test_every_shape_is_solid_and_inside_radius_0_9():
    p = _grid()
    for key, shape in SHAPES.items():
        inside = p[shape(p) < 0]
        assert len(inside) > 1000, key
        radius = inside.norm(dim=-1)
        assert radius.max() < 0.9, key
        assert radius.max() > 0.6, key  # fills a good part of the frame
        centre = (inside.amax(0) + inside.amin(0)) / 2
        assert centre.abs().max() < 0.2, key


def test_objects_colours_and_background():
    assert (
        sorted(
            ["chair", "table", "stool", "mug", "lamp", "snowman"]
            + ["sphere", "cube", "cone", "cylinder", "torus", "pyramid"]
        )
        == OBJECTS
    )
    assert [SHAPES[k].object for k in ("chair-plain", "chair-arms", "chair-tall")] == ["chair"] * 3
    rgb = torch.tensor(list(COLOURS.values()) + [BACKGROUND])
    assert len(COLOURS) == 8 and rgb.min() >= 0 and rgb.max() <= 1
    gaps = torch.cdist(rgb, rgb) + 9 * torch.eye(len(rgb))
    assert gaps.min() > 0.2


def test_caption_formats():
    assert caption("chair-arms", "red", "side") == "a red chair, side view"
    assert caption("mug", "orange", "overhead") == "an orange mug, overhead view"
    assert caption("torus", "blue") == "a blue torus"
