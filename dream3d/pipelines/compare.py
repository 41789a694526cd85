"""`dream3d compare`: SDS and IKL on the same prompt and seeds, side by side.

Each run is an ordinary `dream3d run` in OUT/<guidance>-<seed>/; OUT gets compare.png (views
of every run, one row each), compare.mp4/.gif (the turntables next to each other, SDS left)
and compare.md/.csv (ground-truth scores and wall time per run, and the mean per guidance).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageSequence

from dream3d.guidance import GUIDANCES, GuidanceConfig, guidance_config
from dream3d.pipelines.tables import markdown, write_csv
from dream3d.pipelines.text_to_3d import TextTo3DConfig, text_to_3d
from dream3d.video import write_video

COLUMNS = ("occupancy_iou", "silhouette_iou", "chamfer", "colour_error", "nearest_colour")


def sides(settings: dict | None = None) -> dict[str, GuidanceConfig]:
    """One config per guidance of GUIDANCES, each from its defaults and those of ``settings``
    (a guidance node of the tree, e.g. {"cfg_scale": 30}) that it has; a setting no guidance
    has is a ValueError."""
    settings = {k: v for k, v in (settings or {}).items() if k != "name"}
    return {name: guidance_config(name, **settings) for name in GUIDANCES}


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
) -> list[dict]:
    """Run every guidance for every seed, then write the side-by-side files; returns the rows.

    ``guidances``: the config of each side (default ``sides()``: each guidance's defaults).
    ``watch`` goes to every run; ``on_run(config, out, metrics)`` hears of each finished run.
    """
    guidances = guidances or sides()
    rows = []
    for seed in seeds:
        for name, guidance in guidances.items():
            one = side(config, guidance, seed)
            metrics = text_to_3d(one, out / f"{name}-{seed}", progress=progress, watch=watch)
            rows.append(row_of(metrics))
            if on_run is not None:
                on_run(one, out / f"{name}-{seed}", metrics)
    side_by_side_views(out, seeds, list(guidances))
    side_by_side_video(out, seeds, list(guidances))
    write_table(rows, out, list(guidances))
    return rows


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

    def frames(path):
        return np.stack(
            [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))]
        )

    rows = [
        np.concatenate([frames(out / f"{g}-{s}" / "turntable.gif") for g in names], axis=2)
        for s in seeds
    ]
    video = np.concatenate(rows, axis=1)  # (N, H * seeds, W * 2, 3)
    write_video(video, out / "compare.mp4", fps=12)
    write_video(video, out / "compare.gif", fps=12)


def write_table(rows: list[dict], out: Path, names: list[str]) -> None:
    """compare.csv (every run) and compare.md (every run, then the mean per guidance)."""
    keys = list(rows[0])
    write_csv(rows, out / "compare.csv")
    lines = markdown(rows)
    for g in names:
        mine = [r for r in rows if r["guidance"] == g]
        cells = [g, "mean"] + [_mean([r[k] for r in mine]) for k in keys[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "compare.md").write_text("\n".join(lines) + "\n")


def _mean(values) -> str:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return f"{sum(numbers) / len(numbers):.4g}" if len(numbers) == len(values) else ""
