import pytest
import torch

from dream3d.cameras import sample_cameras
from scenes.catalogue import COLOURS
from scenes.render import render_with_mask
from scenes.score import (
    best_pose_iou,
    best_variant,
    colour_error,
    foreground,
    grid_points,
    iou,
    nearest_colour,
    nearest_variant,
    occupancy_iou,
    occupied,
    pose_grid,
    silhouette_iou,
)
from scenes.truth import occupancy, silhouette


def test_iou_by_hand():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert iou(a, b) == 1 / 3 and iou(a, a) == 1.0 and iou(a & ~a, a & ~a) == 1.0


def test_a_ball_density_scores_the_sphere_and_not_the_cube():
    points = grid_points(40)
    assert points.shape == (64000, 3) and points.abs().max() < 1

    def ball(r):
        return lambda p: 50.0 * (p.norm(dim=-1) < r).float()

    inside = occupied(ball(0.7), points, threshold=10.0)
    assert occupancy_iou(inside, "sphere", points) > 0.97  # catalogue sphere: radius 0.7
    smaller = occupied(ball(0.6), points, threshold=10.0)
    expect = 0.6**3 / 0.7**3  # nested balls: IoU is the volume ratio
    assert abs(occupancy_iou(smaller, "sphere", points) - expect) < 0.03
    assert occupancy_iou(inside, "cube", points) < 0.75


def test_best_variant_finds_the_chair_a_field_was_made_of():
    points = grid_points(32)
    for variant in ("chair-plain", "chair-arms", "chair-tall"):
        name, score = best_variant(occupancy(variant, points), points, "chair")
        assert name == variant and score == 1.0


def test_silhouette_iou_of_the_true_masks_is_one_and_of_a_ball_is_less():
    cams = sample_cameras(4, torch.Generator().manual_seed(0))
    truth = silhouette("chair-arms", cams, 24).float()
    assert silhouette_iou(truth, "chair-arms", cams) == 1.0
    assert silhouette_iou(silhouette("sphere", cams, 24).float(), "chair-arms", cams) < 0.8


def test_colours():
    assert nearest_colour(COLOURS["red"]) == "red"
    assert nearest_colour((0.8, 0.2, 0.15)) == "red"
    assert colour_error(COLOURS["blue"], "blue") < 1e-6


def test_best_pose_iou_finds_the_pose_of_true_silhouettes_and_rejects_other_objects():
    grid = pose_grid(step=15.0)
    assert len(grid) == 24 * 7 * 3 and set(grid.views()) == {"front", "side", "back", "overhead"}
    pick = torch.tensor([5, 200, 401])  # cameras on the grid: their own silhouettes score 1
    on_grid = type(grid)(grid.azimuth[pick], grid.elevation[pick], grid.radius[pick], grid.fov)
    views = on_grid.views()
    masks = silhouette("chair-tall", on_grid)[:, 0]
    assert best_pose_iou(masks, "chair", views, step=15.0).tolist() == [1.0, 1.0, 1.0]
    # renders from random cameras (anti-aliased, between grid poses) still score high
    cams = sample_cameras(6, torch.Generator().manual_seed(0))
    images, _ = render_with_mask(["cube"] * 6, ["pink"] * 6, cams)
    cube = best_pose_iou(foreground(images), "cube", cams.views(), step=15.0)
    sphere = best_pose_iou(foreground(images), "sphere", cams.views(), step=15.0)
    assert cube.min() > 0.85 and sphere.max() < cube.min()
    assert best_pose_iou(masks & False, "chair", views, step=15.0).max() == 0.0


def test_best_pose_iou_searches_only_the_poses_of_the_given_view_caption():
    """A table seen from the side (azimuth 90, elevation 35: a grid pose) scores 1 as "side";
    as "front" it scores the best IoU over the grid's front-captioned cameras only, found here
    by looping over them: a table's outline from the front is not its outline from the side."""
    grid = pose_grid(step=45.0)
    near = grid.radius == grid.radius.min()
    k = int(((grid.azimuth == 90) & (grid.elevation == 35) & near).nonzero())
    assert grid.views()[k] == "side"
    masks = silhouette("table", grid, 16)[:, 0]  # (P, 16, 16): every grid pose
    expected = max(iou(masks[k], masks[j]) for j, v in enumerate(grid.views()) if v == "front")
    assert 0.3 < expected < 0.8  # the caption decides: any pose at all would give 1
    got = best_pose_iou(masks[[k, k]], "table", ["front", "side"], step=45.0)
    assert got.tolist() == pytest.approx([expected, 1.0], abs=1e-6)


def test_foreground_by_hand():
    """A pixel is foreground when its darkest channel is more than 0.2 below white."""
    pixels = [(1.0, 1.0, 1.0), (0.75, 0.9, 0.95), (0.85, 0.85, 0.85), (1.0, 0.79, 1.0), (0, 0, 0)]
    images = torch.tensor(pixels).T.reshape(1, 3, 1, 5)
    assert foreground(images).tolist() == [[[False, True, False, True, True]]]
    assert foreground(images, level=0.1).tolist() == [[[False, True, True, True, True]]]


def test_nearest_variant_names_the_chair_each_silhouette_was_made_of():
    grid = pose_grid(step=45.0)
    near = grid.radius == grid.radius.min()
    k = int(((grid.azimuth == 45) & (grid.elevation == 35) & near).nonzero())  # a front pose
    one = type(grid)(grid.azimuth[[k]], grid.elevation[[k]], grid.radius[[k]], grid.fov)
    names = ["chair-tall", "chair-plain", "chair-arms", "chair-tall"]
    masks = torch.cat([silhouette(name, one, 32)[:, 0] for name in names])
    assert nearest_variant(masks, "chair", one.views() * 4, step=45.0) == names


def test_distribution_scores_by_hand():
    from scenes.prompts import parse_prompt
    from scenes.score import distribution_scores

    spec = parse_prompt("a chair")
    teacher = {"variants": ["chair-plain"] * 4, "colours": ["red", "blue", "green", "red"]}
    found = ["chair-plain", "chair-arms", "chair-plain"], ["red", "red", "blue"]
    d = distribution_scores(*found, spec, teacher)
    assert d["n"] == 3 and d["modes"] == 3 and d["modes_possible"] == 24
    assert d["modes_expected"] == pytest.approx(24 * (1 - (23 / 24) ** 3), abs=1e-3)
    # variants (2/3, 1/3, 0) against (1/3, 1/3, 1/3): 0.5 (1/3 + 0 + 1/3)
    assert d["variant_tv"] == 0.3333  # metrics.json keeps 4 decimals
    assert d["variant_tv_teacher"] == pytest.approx(1 / 3, abs=1e-4)  # (2/3, 1/3, 0) vs (1, 0, 0)
    # colours red 2/3, blue 1/3 against 1/8 each: 0.5 (13/24 + 5/24 + 6/8) = 0.75
    assert d["colour_tv"] == pytest.approx(0.75)
    # against the teacher's red 1/2, blue 1/4, green 1/4: 0.5 (1/6 + 1/12 + 1/4) = 0.25
    assert d["colour_tv_teacher"] == pytest.approx(0.25)
    assert d["colour_counts"] == {"red": 2, "blue": 1}
    assert d["variant_tv_floor"] == pytest.approx(8 / 27, abs=1e-4)  # E over 27 draws, by hand
    # a sphere in any colour has one variant: colour only; a red sphere leaves no choice
    d = distribution_scores(["sphere"] * 2, ["red", "pink"], parse_prompt("a sphere"))
    assert "variant_tv" not in d and d["modes_possible"] == 8 and d["colour_tv"] == 0.75
    assert distribution_scores(["sphere"], ["red"], parse_prompt("a red sphere")) is None
    # a red chair leaves the variant only (its colour is colour_error's business)
    d = distribution_scores(["chair-tall"], ["blue"], parse_prompt("a red chair"))
    assert "colour_tv" not in d and d["modes_possible"] == 3
