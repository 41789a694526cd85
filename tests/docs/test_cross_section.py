"""docs/cross_section.py: the radius of a mesh towards the diagonals and towards the axes."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "cross_section.py"


@pytest.fixture(scope="module")
def extents():
    spec = importlib.util.spec_from_file_location("cross_section", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extents


def fine(mesh: trimesh.Trimesh, times: int) -> np.ndarray:
    for _ in range(times):
        mesh = mesh.subdivide()
    return np.asarray(mesh.vertices)


def test_an_axis_aligned_cube_is_square_across(extents):
    # half 0.5: the wedges of +-7.5 degrees reach 0.5 / cos(7.5) towards the axes and
    # the corner, 0.5 sqrt(2), towards the diagonals
    axes, diagonals = extents(fine(trimesh.creation.box(extents=(1, 1, 1)), 5), 0.0)
    assert axes == pytest.approx(0.5 / math.cos(math.radians(7.5)), abs=0.005)
    assert diagonals == pytest.approx(0.5 * math.sqrt(2), abs=0.005)


def test_a_turned_cube_and_a_cylinder_are_not(extents):
    box = trimesh.creation.box(extents=(1, 1, 1))
    box.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 4, [0, 0, 1]))
    axes, diagonals = extents(fine(box, 5), 0.0)  # its corners now lie on the axes
    assert axes == pytest.approx(0.5 * math.sqrt(2), abs=0.005)
    assert diagonals == pytest.approx(0.5 / math.cos(math.radians(7.5)), abs=0.005)
    cylinder = fine(trimesh.creation.cylinder(radius=0.4, height=1.0, sections=256), 3)
    assert extents(cylinder, 0.25) == pytest.approx((0.4, 0.4), abs=0.002)
    assert extents(cylinder, 0.8) == (0.0, 0.0)  # above the top: no vertices at that height
