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
from dream3d.pipelines.tables import markdown

# (guidance, fake score) pairs a teacher's guidance rows time: SDS, IKL with a full trainable
# copy of the teacher's UNet (fp32 weights and Adam state), IKL with LoRA adapters on it
GUIDANCE_ROWS = (("sds", None), ("ikl", "teacher"), ("ikl", "lora"))
KEYS = ("part", "teacher", "fake", "ms", "peak MiB", "trainable MiB", "error")  # a row's columns


def error_text(err: Exception) -> str:
    """An exception as one short line of a table: its type and its message's first line."""
    first = (str(err).splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:120]}"


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
            score = getattr(guidance, "fake", None)
            if score is not None:
                score.to(device)
            row["trainable MiB"] = 0.0 if score is None else fake_memory(score)["bytes"] / 2**20
            row.update(
                timed(guidance_step(guidance, teacher, size, device), device, repeats, warmup)
            )
        except Exception as err:  # an out-of-memory row is a result; the others still run
            row["error"] = error_text(err)
        rows.append(row)
        guidance = None
        free_memory(device)
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
            row["error"] = error_text(err)
        rows.append(row)
        grid = x = upstream = None
        free_memory(device)
    return rows


def free_memory(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def teachers(device) -> dict:
    """name -> (builder, render side) of the teachers whose guidance steps are timed."""
    from dream3d.pipelines.world import load_tiny
    from dream3d.teachers.shaped import random_if, random_sd15

    return {
        "tiny": (lambda: load_tiny(device=device), 32),
        "sd-1.5-shaped": (lambda: random_sd15(device), 512),
        "if-i-xl-shaped": (lambda: random_if(device), 64),
    }


def part_rows(device="cuda", repeats: int = 10) -> list[dict]:
    """Every part's row, each with every column of KEYS; a teacher that fails to build is a
    row that says so."""
    rows = []
    for name, (build, size) in teachers(device).items():
        try:
            teacher = build()
        except Exception as err:
            rows.append({"part": "build", "teacher": name, "fake": "-", "error": error_text(err)})
            continue
        rows += guidance_rows(name, teacher, size, device, repeats)
        teacher = None
        free_memory(device)
    rows += hash_grid_rows(device, repeats=2 * repeats)
    rows += render_rows(device, repeats=repeats)
    return [{k: row.get(k, "") for k in KEYS} for row in rows]


def parts_markdown(rows: list[dict]) -> list[str]:
    """The parts' table with a line that says how it was timed."""
    from dream3d.pipelines.bench_speed import cell

    lines = ["## The parts of a step", ""]
    lines += ["Median of 10 calls (hash grid 20) after 3 untimed; peak allocated memory;", ""]
    lines += ["trainable MiB: the fake score's weights, gradients and Adam moments.", ""]
    return lines + markdown(rows, cell) + [""]
