"""scenes/shape_scores.py: the corner ratio of a mesh, and the Janus score of hand-made fields
whose yaws are known by construction (the truth, turned, two-faced)."""

import math

import numpy as np
import pytest
import torch
import trimesh

from dream3d.cameras import Cameras
from scenes.catalogue import SHAPES
from scenes.shape_scores import (
    FAR,
    ORBIT_AZIMUTHS,
    circular_median,
    corner_ratio,
    janus_score,
    sdf_depth,
    symmetry_order,
    true_corner_ratio,
    true_depth,
)

CHAIR = SHAPES["chair-plain"]  # faces +x, its backrest at -x


def turned(sdf, degrees: float):
    """The field sdf turned by ``degrees`` about z (its front then faces azimuth ``degrees``)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def field(p):
        x, y, z = p.unbind(-1)  # rotate the query points back by -degrees
        return sdf(torch.stack([c * x + s * y, -s * x + c * y, z], -1))

    return field


def depth_of(sdf):
    return lambda cameras: sdf_depth(sdf, cameras, 32)


# ------------------------------------------------------------------------------ corner ratio


def fine_box(degrees: float = 0.0) -> np.ndarray:
    box = trimesh.creation.box(extents=(1, 1, 1))
    box.apply_transform(trimesh.transformations.rotation_matrix(math.radians(degrees), [0, 0, 1]))
    for _ in range(5):
        box = box.subdivide()
    return np.asarray(box.vertices)


def test_corner_ratio_of_a_cube_square_and_turned():
    # half 0.5: the +-7.5 degree wedges reach 0.5 / cos(7.5) towards the axes and the corner
    # 0.5 sqrt(2) towards the diagonals, at every height; turned by 45 the other way round
    square = math.sqrt(2) * math.cos(math.radians(7.5))  # 1.4021
    assert corner_ratio(fine_box()) == pytest.approx(square, abs=0.01)
    assert corner_ratio(fine_box(45)) == pytest.approx(1 / square, abs=0.01)
    assert corner_ratio(fine_box() + [0, 0, 5]) is None  # no vertex near any height


def test_true_corner_ratio_of_the_cube_and_the_sphere():
    assert true_corner_ratio("cube") == pytest.approx(1.40, abs=0.02)
    assert true_corner_ratio("sphere") == pytest.approx(1.0, abs=0.01)


# ------------------------------------------------------------------------------------ depth


def test_sdf_depth_of_a_sphere_is_where_its_rays_meet_it():
    azimuth, elevation, radius = torch.tensor([0.0, 100.0]), torch.tensor([15.0, -5.0]), [2.8, 2.5]
    cams = Cameras(azimuth, elevation, torch.tensor(radius), 40)
    depth = sdf_depth(lambda p: p.norm(dim=-1) - 0.7, cams, 16)
    o, d = cams.rays(16)  # |o + t d| = 0.7: t = -b - sqrt(b^2 - |o|^2 + 0.49), b = o.d
    b = (o * d).sum(-1)
    disc = b * b - (o * o).sum(-1) + 0.49
    expected = -b - disc.clamp(min=0).sqrt()
    # tracing stops within 1e-3 of the surface: up to 1e-3 / cos(incidence) short of it along
    # the ray, cos(incidence) = sqrt(disc) / 0.7; near-grazing rays are left out
    hit = disc > 0.05
    assert hit.float().mean() > 0.2
    short = expected[hit] - depth[hit]
    assert short.min() > -1e-5
    assert (short < 1e-3 * 0.7 / disc[hit].sqrt() + 1e-5).all()
    missed = disc < -1e-3
    far = (cams.radius + FAR)[:, None, None].expand_as(depth)
    assert missed.any() and torch.equal(depth[missed], far[missed])  # 4.3 and 4.0


# --------------------------------------------------------------------------------- symmetry


def test_symmetry_orders():
    assert symmetry_order("chair-plain") == 1
    assert symmetry_order("snowman") == 1  # its nose (a small part) counts
    assert symmetry_order("table") == 2  # a rectangle: half turns only
    assert symmetry_order("cube") == 4  # quarter turns, not eighths
    assert symmetry_order("sphere") == 8  # every turn: round
    assert janus_score(depth_of(SHAPES["sphere"]), "sphere") is None


# ------------------------------------------------------------------------------------ Janus


def test_circular_median():
    # least summed wrapped distance: 180 (as -180) is 10 from 170 and from -170
    assert circular_median(torch.tensor([170.0, -170.0, 180.0])) == -180.0
    assert circular_median(torch.tensor([350.0, 10.0, 0.0, 20.0])) == 10.0
    assert circular_median(torch.tensor([80.0, 10.0, 0.0]), period=90.0) == 0.0  # 80 = -10


def test_the_truth_chair_implies_yaw_zero_everywhere():
    score = janus_score(depth_of(CHAIR), "chair-plain")
    assert score["order"] == 1
    assert score["yaws"] == [0.0] * 16
    assert score["yaw"] == 0.0
    assert score["off_fraction"] == 0.0
    assert score["janus"] is False


@pytest.mark.parametrize("yaw", [90.0, -60.0])
def test_a_turned_chair_implies_its_yaw(yaw):
    # turning the object by +90 (front towards +y) must read +90, not -90 (a + psi)
    score = janus_score(depth_of(turned(CHAIR, yaw)), "chair-plain")
    assert score["yaw"] == yaw
    assert score["yaws"] == [yaw] * 16
    assert score["janus"] is False


def test_a_cube_turned_by_60_reads_minus_30_modulo_its_quarter_turn():
    score = janus_score(depth_of(turned(SHAPES["cube"], 60.0)), "cube")
    assert score["order"] == 4
    assert score["yaw"] == -30.0  # 60 - 90, in [-45, 45)
    assert score["off_fraction"] == 0.0


def test_a_chair_with_a_backrest_on_both_sides_is_janus():
    # sdf at (-|x|, y, z): the back half mirrored to the front. From the front it shows a
    # backrest nearer than the seat, as the truth does only from behind: yaw 180; from
    # behind it looks like the truth from behind: yaw 0
    def two_faced(p):
        return CHAIR(torch.stack([-p[:, 0].abs(), p[:, 1], p[:, 2]], -1))

    score = janus_score(depth_of(two_faced), "chair-plain")
    front, back = ORBIT_AZIMUTHS.index(0.0), ORBIT_AZIMUTHS.index(180.0)
    assert score["yaws"][front] == -180.0  # 180, wrapped into [-180, 180)
    assert score["yaws"][back] == 0.0
    assert score["off_fraction"] >= 0.25
    assert score["janus"] is True


@pytest.mark.parametrize("flipped, janus", [(4, True), (3, False)])
def test_janus_from_a_quarter_of_the_views_on(flipped, janus):
    # views 0..flipped-1 see the truth turned by 180 (from azimuth a, the truth from a - 180),
    # the rest the truth: yaws 180 there, 0 elsewhere; off_fraction = flipped / 16
    def depth_fn(cameras):
        turn = torch.tensor([180.0 if i < flipped else 0.0 for i in range(len(cameras))])
        moved = Cameras(cameras.azimuth - turn, cameras.elevation, cameras.radius, cameras.fov)
        return true_depth("chair-plain", moved, 32)

    score = janus_score(depth_fn, "chair-plain")
    assert score["yaws"] == [-180.0] * flipped + [0.0] * (16 - flipped)
    assert score["yaw"] == 0.0
    assert score["off_fraction"] == flipped / 16
    assert score["janus"] is janus
