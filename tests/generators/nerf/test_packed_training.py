"""Which occupancy grid a NeRF trains through, nerfacc's update schedule, and (on CUDA) packed
training renders against batched renders of the same field."""

import pytest
import torch

from dream3d.cameras import Cameras
from generators.nerf.generator import NeRFConfig, NeRFGenerator
from generators.nerf.render import (
    OccGridConfig,
    RenderConfig,
    occupancy_grid,
    packed_rendering,
    render_image,
    update_occupancy_grid,
)

nerfacc = pytest.importorskip("nerfacc")


def test_packed_rendering_only_on_cuda_with_nerfacc():
    assert packed_rendering(RenderConfig(), "cuda")
    assert packed_rendering(RenderConfig(backend="nerfacc"), torch.device("cuda", 0))
    assert not packed_rendering(RenderConfig(), "cpu")
    assert not packed_rendering(RenderConfig(backend="torch"), "cuda")


def test_a_cpu_nerf_trains_through_the_torch_grid_and_counts_steps_on_the_cpu():
    nerf = NeRFGenerator(NeRFConfig(render=RenderConfig(samples=8)))
    assert nerf.estimator is None and nerf.occupancy is not None
    nerf.sample(1, torch.Generator().manual_seed(0))
    assert nerf.steps.device.type == "cpu" and int(nerf.steps) == 1
    off = NeRFConfig(render=RenderConfig(grid=OccGridConfig(skip=False)))
    assert NeRFGenerator(off).grids() == {"occupancy": None, "estimator": None}


class _Counting:
    """A density that counts the points it is asked about; ``value`` everywhere."""

    def __init__(self, value: float):
        self.value, self.points = value, 0

    def __call__(self, x):
        self.points += x.shape[0]
        return torch.full(x.shape[:1], self.value)


def test_the_estimator_is_updated_on_nerfacc_schedule():
    # 8^3 = 512 cells; every 4 steps; all cells before step 8, then 512 // 4 = 128 at random
    # and up to 128 of the occupied ones (nerfacc's documented strategy)
    grid = OccGridConfig(resolution=8, every=4, warmup=8, threshold=0.01, decay=0.5)
    config = RenderConfig(samples=16, grid=grid)  # step size 2 / 16 = 0.125
    estimator = occupancy_grid(config, "cpu")
    density = _Counting(1.0)  # occupancy 1 x 0.125 everywhere
    update_occupancy_grid(estimator, density, 0, config)
    assert density.points == 512 and estimator.occs.allclose(torch.tensor(0.125))
    update_occupancy_grid(estimator, density, 3, config)  # not a multiple of 4: nothing
    assert density.points == 512
    empty = _Counting(0.0)
    update_occupancy_grid(estimator, empty, 4, config)  # still warming up: every cell decays
    assert empty.points == 512 and estimator.occs.allclose(torch.tensor(0.0625))
    update_occupancy_grid(estimator, empty, 8, config)  # after warm-up: 128 + 128 cells
    assert empty.points == 512 + 256
    assert (estimator.occs == 0.03125).sum() >= 128  # those cells decayed again, 0.5 x
    forced = _Counting(1.0)
    update_occupancy_grid(estimator, forced, 0, config, every=1)  # a refresh: all cells
    assert forced.points == 512


@pytest.mark.requires_cuda
def test_cuda_training_renders_packed_and_matches_batched_renders_of_the_field():
    """A NeRF trained 30 steps on CUDA (nerfacc's grid, packed renders) renders its field as the
    batched renderer does (no grid) within the quadratures' difference (the tolerances of
    test_nerf_render's packed test)."""
    from dream3d.guidance import make_guidance
    from dream3d.pipelines.world import load_tiny
    from dream3d.train import TrainConfig, train

    config = NeRFConfig(render=RenderConfig(samples=64))
    nerf = NeRFGenerator(config, seed=0, device="cuda")
    assert nerf.estimator is not None and nerf.occupancy is None
    teacher = load_tiny(device="cuda")
    guidance = make_guidance("sds", teacher, cfg_scale=20.0)

    def cond_fn(sample):
        return teacher.encode_prompt([f"a red chair, {v} view" for v in sample.info["views"]])

    history = train(nerf, guidance, TrainConfig(steps=30, progress=False), cond_fn=cond_fn)
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    assert 0 < nerf.estimator.binaries.float().mean() < 1  # the grid culls some cells
    cameras = Cameras(
        torch.tensor([0.0, 90.0]), torch.tensor([15.0, 30.0]), torch.tensor([2.8, 2.8]), 40.0
    )
    # the grid culls no more than the packed-path test's threshold, so what differs is the two
    # quadratures, not what a coarse threshold leaves out
    exact = RenderConfig(samples=256, jitter=False, grid=OccGridConfig(threshold=1e-5))
    update_occupancy_grid(nerf.estimator, nerf.field.density, 0, exact, every=1)
    with torch.no_grad():
        packed = render_image(nerf.field, cameras, 32, exact, estimator=nerf.estimator)
        batched = render_image(nerf.field, cameras, 32, exact)
    for key, tol in (("rgb", 0.02), ("opacity", 0.02), ("depth", 0.05)):
        err = (packed[key] - batched[key]).abs()
        assert err.mean() < tol / 10 and err.max() < tol, key


@pytest.mark.requires_cuda
def test_rays_made_on_the_device_equal_the_cpu_rays():
    cameras = Cameras(torch.tensor([30.0]), torch.tensor([10.0]), torch.tensor([2.7]), 40.0)
    cpu = cameras.rays(16)
    cuda = cameras.to("cuda").rays(16)
    for a, b in zip(cpu, cuda):
        assert b.is_cuda and torch.allclose(a, b.cpu(), atol=1e-6)
