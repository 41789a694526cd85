"""`dream3d bench speed`: where the time of a `dream3d run` goes, for SDS and IKL.

Each guidance's run is a whole `dream3d run` (by default the defaults: what a user waits
for) in a fresh process, so imports count, runs do not warm each other up and the peak memory
is that run's own (peak RSS on a CPU, peak allocated CUDA memory on a GPU). A ``Clock`` splits
the training steps (render forward, render backward with the normals, teacher, fake-score
update, optimizer, checkpoints) and the output phase (progress.png, views.png, turntable, mesh,
scores). OUT gets speed.md (three tables and the IKL/SDS ratios) and speed.csv (one row per run).
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from dream3d.guidance import GuidanceConfig
from dream3d.pipelines.tables import markdown, write_csv

STEP_PHASES = ("render forward", "render backward", "teacher", "fake-score update", "optimizer")
OUTPUT_PARTS = ("progress.png", "views.png", "turntable", "mesh", "scores")


def profile_run(config, out: Path, progress: bool = False) -> dict:
    """One timed `dream3d run` of ``config`` into ``out`` in this process: its row (``wall s``
    from the call; ``speed`` puts in the whole process's)."""
    import torch

    from dream3d.clock import Clock
    from dream3d.pipelines.text_to_3d import text_to_3d

    start = time.perf_counter()
    cuda = config.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = Clock(cuda=cuda)
    metrics = text_to_3d(config, out, progress=progress, clock=clock)
    wall = time.perf_counter() - start
    s, steps = clock.seconds, config.train.steps
    train = metrics["train_seconds"]
    outputs = sum(s[p] for p in OUTPUT_PARTS)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"guidance": config.guidance.name, "device": config.device, "steps": steps}
    row["s_per_step"] = train / steps
    row.update({f"{p} ms": 1000 * s[p] / steps for p in STEP_PHASES})
    row["checkpoint s"] = s["checkpoint"]
    row.update({f"{p} s": s[p] for p in OUTPUT_PARTS})
    row.update(
        {
            "start s": wall - train - outputs,  # teacher, field, config.yaml (+ imports: speed)
            "train s": train,
            "outputs s": outputs,
            "wall s": wall,
            "peak MiB": peak,
            "silhouette_iou": metrics["truth"]["silhouette_iou"],
            "occupancy_iou": metrics["truth"]["occupancy_iou"],
        }
    )
    return row


def speed(
    base,
    guidances: dict[str, GuidanceConfig],
    out: Path,
    progress: bool = True,
    parts: bool = False,
) -> list[dict]:
    """Profile a run of ``base`` per guidance, each in a fresh process, into OUT/<guidance>;
    write OUT/speed.md and speed.csv; returns the rows. ``parts`` (CUDA): also time the parts
    of a step alone (bench_parts.part_rows: guidance steps of the tiny, SD-1.5- and IF-shaped
    teachers, the hash grid per backend, a 4096-ray render) into speed.md and parts.csv."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for name, guidance in guidances.items():
        config = replace(base, guidance=guidance)
        start = time.perf_counter()
        # a fresh interpreter: its imports count, as a user's do
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            row = pool.submit(profile_run, config, out / name, progress).result()
        wall = time.perf_counter() - start
        row["start s"] += wall - row["wall s"]
        row["wall s"] = wall
        rows.append(row)
    write_csv(rows, out / "speed.csv")
    text = speed_markdown(rows)
    if parts:
        from dream3d.pipelines.bench_parts import part_rows, parts_markdown

        table = part_rows(base.device)
        write_csv(table, out / "parts.csv")
        text += "\n" + "\n".join(parts_markdown(table)) + "\n"
    (out / "speed.md").write_text(text)
    return rows


def cell(value) -> str:
    """Floats below 1 to 3 significant digits, larger ones to 0.1; others as they are."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def speed_markdown(rows: list[dict]) -> str:
    """speed.md: per step, output phase and totals, one row per run, then the ratios."""

    def table(keys):
        return markdown([{k: r[k] for k in ("guidance", *keys)} for r in rows], cell)

    first = rows[0]
    lines = [f"Device {first['device']}, {first['steps']} steps per run.", ""]
    lines += ["Training, per step (s_per_step in seconds, the phases in milliseconds):", ""]
    lines += table(["s_per_step", *(f"{p} ms" for p in STEP_PHASES), "checkpoint s"]) + [""]
    lines += ["Output phase (seconds):", ""]
    lines += table([*(f"{p} s" for p in OUTPUT_PARTS), "outputs s"]) + [""]
    lines += ["Whole run (seconds; start = imports, teacher, field, config.yaml):", ""]
    lines += table(["start s", "train s", "outputs s", "wall s", "peak MiB"]) + [""]
    by = {r["guidance"]: r for r in rows}
    if {"sds", "ikl"} <= by.keys():
        step = by["ikl"]["s_per_step"] / by["sds"]["s_per_step"]
        wall = by["ikl"]["wall s"] / by["sds"]["wall s"]
        lines.append(f"IKL / SDS: {step:.2f}x per step, {wall:.2f}x wall.")
    return "\n".join(lines) + "\n"
