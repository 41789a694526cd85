"""Empty-space skipping: the occupancy grid by hand, and renders through it against dense ones."""

import math

import pytest
import torch

from dream3d.cameras import Cameras
from generators.nerf.field import FieldConfig, HashGridConfig, NeRFField
from generators.nerf.generator import NeRFConfig, NeRFGenerator
from generators.nerf.occupancy import OccupancyGrid
from generators.nerf.render import OccGridConfig, RenderConfig, render_image, render_rays

FRONT = Cameras(torch.tensor([0.0]), torch.tensor([20.0]), torch.tensor([2.8]), 40.0)


def test_cell_lookup_by_hand():
    grid = OccupancyGrid(4, 1.0)  # cells 0.5 wide: cell i spans [-1 + 0.5 i, -0.5 + 0.5 i)
    grid.mask.zero_()
    grid.mask[1, 2, 3] = True  # x in [-0.5, 0), y in [0, 0.5), z in [0.5, 1]
    points = torch.tensor(
        [
            [-0.25, 0.25, 0.75],  # inside cell (1, 2, 3)
            [-0.25, 0.25, 1.0],  # on the box's face: still the last cell
            [-0.25, 0.25, 1.01],  # outside the box
            [0.25, 0.25, 0.75],  # cell (2, 2, 3)
            [-0.5, 0.0, 0.5],  # the cell's low corner belongs to it
        ]
    )
    assert grid.occupied(points).tolist() == [True, True, False, False, True]
    assert grid.fraction() == 1 / 64


def test_refresh_thresholds_decays_and_grows_by_one_cell():
    grid = OccupancyGrid(8, 1.0)  # cells 0.25 wide; centres at -0.875, -0.625, ...
    assert grid.fraction() == 1.0  # occupied everywhere until the first refresh
    centre = torch.tensor([0.125, 0.125, 0.125])  # the centre of cell (4, 4, 4)

    def blob(points):  # density 1 within 0.1 of that centre, 0 elsewhere
        return ((points - centre).norm(dim=-1) < 0.1).float()

    # without a generator the refresh reads cell centres: only cell (4, 4, 4) is dense;
    # density x step = 1 x 0.05 > threshold 0.01, so it and its 26 neighbours are occupied
    grid.refresh(blob, step=0.05, threshold=0.01, decay=0.5)
    expected = torch.zeros(8, 8, 8, dtype=torch.bool)
    expected[3:6, 3:6, 3:6] = True
    assert torch.equal(grid.mask, expected)
    assert grid.values[4, 4, 4].item() == pytest.approx(0.05)
    # the blob vanishes: o = max(0.5 x 0.05, 0) = 0.025 stays above 0.01 once, then 0.0125,
    # then 0.00625: the cell empties at the third refresh
    for occupied in (True, True, False):
        grid.refresh(lambda p: torch.zeros(len(p)), step=0.05, threshold=0.01, decay=0.5)
        assert bool(grid.mask[4, 4, 4]) is occupied


def solid_ball(points):
    """A ball of radius 0.5, density 30, red."""
    inside = points.norm(dim=-1) < 0.5
    sigma = torch.where(inside, 30.0, 0.0)
    return sigma, torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)


def counting(fn, counter):
    def wrapped(points):
        counter.append(len(points))
        return fn(points)

    return wrapped


def test_skipping_renders_a_solid_ball_as_the_dense_renderer_does_at_a_fraction_of_the_cost():
    config = RenderConfig(samples=64, jitter=False, backend="torch")
    origins, dirs = (x.reshape(-1, 3) for x in FRONT.rays(24))
    dense_calls, sparse_calls = [], []
    dense = render_rays(counting(solid_ball, dense_calls), origins, dirs, config)
    grid = OccupancyGrid(32, 1.0)
    grid.refresh(lambda p: solid_ball(p)[0], step=2 / 64, threshold=0.01, decay=0.95)
    field_fn = counting(solid_ball, sparse_calls)
    density_fn = counting(lambda p: solid_ball(p)[0], sparse_calls)
    sparse = render_rays(field_fn, origins, dirs, config, density_fn=density_fn, occupancy=grid)
    # behind transmittance 1e-4 a ray's weights sum to at most 1e-4 more, at depths t < 3.8
    assert (dense["opacity"] - sparse["opacity"]).abs().max() < 1.01e-4
    assert (dense["rgb"] - sparse["rgb"]).abs().max() < 1.01e-4
    assert (dense["depth"] - sparse["depth"]).abs().max() < 3.8e-4
    # a ray through the ball meets density 30 x step 0.031: alpha 0.61 per sample, so it stops
    # after ~10 samples; rays that miss the ball's cells cost nothing
    assert sum(sparse_calls) < 0.2 * sum(dense_calls)


def test_full_grid_without_early_stop_is_the_dense_render_and_its_gradients():
    field = NeRFField(FieldConfig(grid=HashGridConfig(levels=4, log2_table=10)), seed=1)
    grid = OccGridConfig(early_stop_eps=0.0)
    config = RenderConfig(samples=16, backend="torch", grid=grid)
    everywhere = OccupancyGrid(8, 1.0)  # not refreshed: every cell occupied

    def render(occupancy):
        field.zero_grad()
        rng = torch.Generator().manual_seed(3)
        out = render_image(field, FRONT, 8, config, "lambertian", rng, occupancy=occupancy)
        (out["rgb"].sum() + out["orientation"].sum()).backward()
        return out, [p.grad.clone() for p in field.parameters()]

    (dense, dense_grads), (sparse, sparse_grads) = render(None), render(everywhere)
    for key in ("rgb", "opacity", "depth", "normals", "orientation", "distortion"):
        assert torch.allclose(dense[key], sparse[key], atol=1e-6), key
    for a, b in zip(dense_grads, sparse_grads):
        assert torch.allclose(a, b, atol=1e-5)


def test_generator_refreshes_its_grid_and_skips_the_empty_box():
    config = NeRFConfig(size=16)
    generator = NeRFGenerator(config, seed=0)
    rng = torch.Generator().manual_seed(0)
    generator.sample(1, rng)  # step 0 refreshes the grid from the initial blob
    # the blob's density exp(10 (1 - |x| / 0.5)) x step 2 / 48 exceeds 0.01 for |x| < 0.57;
    # grown by one cell (1/16), about the ball of radius 0.63 to 0.68: ~14 % of the box
    ball = 4 / 3 * math.pi * 0.63**3 / 8
    assert ball < generator.occupancy.fraction() < 1.6 * ball
    before = generator.occupancy.values.clone()
    for _ in range(config.render.grid.every - 1):
        generator.sample(1, rng)
    assert torch.equal(generator.occupancy.values, before)  # not refreshed in between
    generator.sample(1, rng)
    assert not torch.equal(generator.occupancy.values, before)
    assert "occupancy.mask" in generator.state_dict()  # checkpoints keep it
