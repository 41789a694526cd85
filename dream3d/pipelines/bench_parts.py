"""The parts of a text-to-3D step, timed alone on one device (`dream3d bench speed --device
cuda` and `dream3d bench gpu`): a guidance step per teacher and fake score, the hash grid's
forward and backward per backend, and a 4096-ray render.

A guidance step is what the training loop does with a render once it has it: the teacher's
encoding (SD's VAE, differentiable), k = 1 fake-score step (IKL), the CFG teacher call and the
backward into the render's pixels. Each row is the median of ``repeats`` timed calls after
``warmup`` untimed ones, with the peak memory allocated during them (CUDA; the process's
peak RSS on a CPU, where the rows exist only so that tests can run them small).
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable

import torch

from dream3d.cameras import Cameras
from dream3d.guidance import make_guidance
from dream3d.guidance.fake_scores import fake_memory

# (guidance, fake score) pairs a teacher's guidance rows time: SDS, IKL with a full trainable
# copy of the teacher's UNet (fp32 weights and Adam state), IKL with LoRA adapters on it
GUIDANCE_ROWS = (("sds", None), ("ikl", "teacher"), ("ikl", "lora"))


def timed(fn: Callable[[], object], device, repeats: int = 10, warmup: int = 3) -> dict:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` ones, and the
    peak memory (MiB) while they ran."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": statistics.median(times), "peak MiB": peak}


def guidance_step(guidance, teacher, size: int, device) -> Callable[[], None]:
    """One guidance step on a (1, 3, size, size) render standing in for a NeRF's."""
    render = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    cond = teacher.encode_prompt(["a red chair, front view"])
    rng = torch.Generator().manual_seed(0)

    def step():
        x = guidance.to_teacher(render * 2 - 1)
        guidance.update_fake(x.detach(), cond, 0.5, rng)
        loss, _ = guidance.loss(x, cond, 0.5, rng)
        loss.backward()
        render.grad = None

    return step


def guidance_rows(name: str, teacher, size: int, device, repeats=10, warmup=3) -> list[dict]:
    """A row per GUIDANCE_ROWS entry for ``teacher`` (named ``name``) at renders of ``size``."""
    rows = []
    for kind, fake in GUIDANCE_ROWS:
        row = {"part": f"{kind} step", "teacher": name, "fake": fake or "-"}
        try:
            options = {} if fake is None else {"fake": fake}
            guidance = make_guidance(kind, teacher, **options)
            if hasattr(guidance, "fake"):
                guidance.fake.to(device)
            fake = getattr(guidance, "fake", None)
            row["trainable MiB"] = 0.0 if fake is None else fake_memory(fake)["bytes"] / 2**20
            row.update(
                timed(guidance_step(guidance, teacher, size, device), device, repeats, warmup)
            )
        except Exception as err:  # an out-of-memory row is a result; the others still run
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        rows.append(row)
        guidance = None
        _free(device)
    return rows


def render_rows(device, rays_side: int = 64, repeats=10, warmup=3, preset=None) -> list[dict]:
    """A ``rays_side``^2-ray render (4096 by default) of the cuda preset's field at its samples
    per ray, forward and backward with deferred lambertian shading: through nerfacc's grid
    (packed) where the device allows, and without a grid (batched, dense samples)."""
    from dream3d.pipelines.text_to_3d import resolve
    from generators.nerf.generator import NeRFGenerator
    from generators.nerf.render import render_image

    config = resolve("a chair", preset or "cuda", {"device": str(torch.device(device).type)})
    nerf = NeRFGenerator(config.nerf, 0, device)
    nerf.refresh_occupancy()
    camera = Cameras(torch.tensor([30.0]), torch.tensor([20.0]), torch.tensor([2.8]), 40.0)
    rows = []
    render_config = config.nerf.render
    for how, grids in (("grid", nerf.grids()), ("no grid", {})):
        packed = grids.get("estimator") is not None
        part = f"render {rays_side**2} rays, {'packed' if packed else how}"

        def render(grids=grids):
            out = render_image(nerf.field, camera, rays_side, render_config, "lambertian", **grids)
            out["rgb"].sum().backward()

        row = {"part": part, "teacher": "-", "fake": "-"}
        row.update(timed(render, device, repeats, warmup))
        rows.append(row)
    return rows


def hash_grid_rows(device, points: int = 2**18, repeats=20, warmup=3) -> list[dict]:
    """Forward and backward (a random upstream gradient into the table) of the cuda preset's
    hash grid (16 levels x 2, 2^19 table) on ``points`` random points, per backend."""
    from dataclasses import replace

    from dream3d.pipelines.text_to_3d import resolve
    from generators.nerf.field import build_grid

    config = resolve("a chair", "cuda", {}).nerf.field.grid
    rows = []
    for backend in ("torch", "triton", "tcnn"):
        row = {"part": f"hash grid fwd+bwd, {points} points", "teacher": "-", "fake": backend}
        try:
            grid = build_grid(replace(config, backend=backend), device).to(device)
            x = torch.rand(points, 3, device=device)
            upstream = torch.randn(points, grid.out_dim, device=device)

            def step(grid=grid, x=x, upstream=upstream):
                grid.zero_grad(set_to_none=True)
                grid(x).backward(upstream)

            row.update(timed(step, device, repeats, warmup))
        except Exception as err:  # a backend missing here is a row that says so
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        rows.append(row)
        grid = x = upstream = None
        _free(device)
    return rows


def _free(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
