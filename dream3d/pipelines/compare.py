"""`dream3d compare`: SDS and IKL on the same prompt and seeds, side by side.

Each run is an ordinary `dream3d run` in OUT/<guidance>-<seed>/ (in process, or as Ray tasks:
dream3d.pipelines.sweep); OUT gets compare.png (views of every run, one row each),
compare.mp4/.gif (the turntables next to each other, SDS left) and compare.md/.csv
(ground-truth scores and wall time per run, the mean per guidance with its 95 % bootstrap
interval over seeds, the paired IKL - SDS difference, and for a prompt that leaves a choice
how the results spread over it: dream3d.pipelines.stats).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dream3d.guidance import PAIR, GuidanceConfig, guidance_config
from dream3d.pipelines.stats import failed_lines, failures, report, spread_choices
from dream3d.pipelines.sweep import run_all
from dream3d.pipelines.tables import markdown, write_csv
from dream3d.pipelines.text_to_3d import TextTo3DConfig, text_to_3d
from dream3d.video import read_gif, write_video

COLUMNS = ("occupancy_iou", "silhouette_iou", "chamfer", "colour_error", "nearest_colour")
SCORED = ("silhouette_iou", "occupancy_iou", "chamfer", "colour_error")  # with intervals


def sides(settings: dict | None = None, names=PAIR) -> dict[str, GuidanceConfig]:
    """One config per guidance in ``names`` (GUIDANCES entries; default SDS and IKL), each
    from its defaults and those of ``settings`` (a guidance node of the tree, e.g.
    {"cfg_scale": 30}) that it has; a setting no guidance has is a ValueError."""
    settings = {k: v for k, v in (settings or {}).items() if k != "name"}
    return {name: guidance_config(name, **settings) for name in dict.fromkeys(names)}


def side(config: TextTo3DConfig, guidance: GuidanceConfig, seed: int) -> TextTo3DConfig:
    """``config`` with this guidance and seed."""
    return replace(config, guidance=guidance, train=replace(config.train, seed=seed))


def compare(
    config: TextTo3DConfig,
    seeds: list[int],
    out: Path,
    progress: bool = True,
    guidances: dict[str, GuidanceConfig] | None = None,
    watch=None,
    on_run=None,
    ray: str | None = None,
    cpus: int | None = None,
) -> list[dict]:
    """Run every guidance for every seed, then write the side-by-side files; returns a row
    per finished run, then {"out", "error"} for each failed one.

    ``guidances``: the config of each side (default ``sides()``: each guidance's defaults).
    ``watch`` goes to every run; ``on_run(config, out, metrics)`` hears of each finished run;
    with either, the runs go in this process one by one and an error stops them (the app).
    Otherwise through ``sweep.run_all`` (``ray``, ``cpus``): finished runs in OUT are reused
    and a failed run is listed under the table. A ValueError if every run failed.
    """
    guidances = guidances or sides()
    jobs = {(g, s): side(config, guidance, s) for s in seeds for g, guidance in guidances.items()}
    if watch is not None or on_run is not None:
        metrics = {}
        for (g, s), one in jobs.items():
            metrics[(g, s)] = text_to_3d(one, out / f"{g}-{s}", progress=progress, watch=watch)
            if on_run is not None:
                on_run(one, out / f"{g}-{s}", metrics[(g, s)])
        outcomes = []
    else:
        outcomes = run_all(
            [(one, out / f"{g}-{s}") for (g, s), one in jobs.items()], progress, ray, cpus
        )
        metrics = {k: o.metrics for k, o in zip(jobs, outcomes) if o.metrics is not None}
    if not metrics:
        raise ValueError("every run failed: " + "; ".join(failed_lines(outcomes)))
    done = [s for s in seeds if all((g, s) in metrics for g in guidances)]
    side_by_side_views(out, done, list(guidances))
    side_by_side_video(out, done, list(guidances))
    rows = [row_of(m) for m in metrics.values()]
    write_table(rows, metrics, config, out, list(guidances), seeds, outcomes)
    return rows + failures(outcomes)


def row_of(metrics: dict) -> dict:
    """One table row from a run's metrics.json."""
    truth = metrics["truth"]
    row = {"guidance": metrics["guidance"], "seed": metrics["seed"]}
    row.update({k: truth.get(k, "") for k in COLUMNS})
    row["seconds"] = metrics["train_seconds"]
    return row


def _labelled(path: Path, label: str) -> Image.Image:
    image = Image.open(path).convert("RGB")
    canvas = Image.new("RGB", (image.width + 70, image.height), "white")
    canvas.paste(image, (70, 0))
    ImageDraw.Draw(canvas).text((4, image.height // 2 - 6), label, fill="black")
    return canvas


def side_by_side_views(out: Path, seeds: list[int], names: list[str]) -> None:
    """compare.png: each run's views.png as a row, labelled guidance and seed."""
    rows = [_labelled(out / f"{g}-{s}" / "views.png", f"{g} {s}") for s in seeds for g in names]
    grid = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    for i, row in enumerate(rows):
        grid.paste(row, (0, i * rows[0].height))
    grid.save(out / "compare.png")


def side_by_side_video(out: Path, seeds: list[int], names: list[str]) -> None:
    """compare.mp4 and .gif: the runs' turntables in one frame, SDS | IKL, a row per seed."""

    rows = [
        np.concatenate([read_gif(out / f"{g}-{s}" / "turntable.gif") for g in names], axis=2)
        for s in seeds
    ]
    video = np.concatenate(rows, axis=1)  # (N, H * seeds, W * 2, 3)
    write_video(video, out / "compare.mp4", fps=12)
    write_video(video, out / "compare.gif", fps=12)


def write_table(rows, metrics: dict, config, out: Path, names, seeds, outcomes) -> None:
    """compare.csv (every run) and compare.md: every run, the mean per guidance, then the
    means and paired differences with their intervals over seeds, the distribution scores
    (for a prompt that leaves a choice, against the teacher's judged samples too) and the
    failed runs. ``metrics``: (guidance, seed) -> a finished run's metrics."""
    keys = list(rows[0])
    write_csv(rows, out / "compare.csv")
    lines = markdown(rows)
    for g in names:
        mine = [r for r in rows if r["guidance"] == g]
        cells = [g, "mean"] + [_mean([r[k] for r in mine]) for k in keys[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    prompt, n = config.prompt, max(seeds) + 1
    runs = {(prompt, g, s): (out / f"{g}-{s}", m) for (g, s), m in metrics.items()}
    teacher = spread_choices(config, [prompt], len(seeds), out)
    lines += report(runs, names, [prompt], n, SCORED, teacher, outcomes)[0]
    (out / "compare.md").write_text("\n".join(lines) + "\n")


def _mean(values) -> str:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return f"{sum(numbers) / len(numbers):.4g}" if len(numbers) == len(values) else ""
