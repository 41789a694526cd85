"""`dream3d bench quality`: ground-truth scores of SDS and IKL NeRFs over catalogue prompts.

For every prompt, seed and guidance it runs `dream3d run` into OUT/<prompt>-<guidance>-<seed>/
(reusing a finished run found there), then writes OUT/quality.md and OUT/quality.csv: per
prompt and guidance the means over seeds of silhouette IoU (held-out views), 3D occupancy
IoU, mesh Chamfer distance, colour error, wall time, and the diversity across seeds (mean
pairwise Chamfer distance between the seeds' meshes); then the mean per guidance.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import trimesh
import yaml

from dream3d.config import to_dict
from dream3d.guidance import GuidanceConfig
from dream3d.pipelines.compare import side, sides
from dream3d.pipelines.tables import markdown, write_csv
from dream3d.pipelines.text_to_3d import TextTo3DConfig, slug, text_to_3d

# the default prompt set: ~30 min on 2 CPU cores (estimated from the README runs' times)
DEFAULT_PROMPTS = ("a chair", "a table", "a red sphere", "a blue cube")
SCORES = (
    "silhouette_iou",
    "occupancy_iou",
    "chamfer",
    "area_ratio",
    "normal_consistency",
    "colour_error",
)
INTERVALS = ("silhouette_iou", "occupancy_iou")  # the means the tables give intervals for


def read_prompts(path: Path | None) -> list[str]:
    """One prompt per line (blank lines and # comments skipped); the default set if None."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    if not path.is_file():
        raise ValueError(f"no prompts file at {path}")
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def finished(config, out: Path) -> dict | None:
    """The metrics of a finished run in ``out`` made with the same config tree, else None."""
    done = out / "metrics.json"
    if done.is_file() and (out / "config.yaml").is_file():
        saved = yaml.safe_load((out / "config.yaml").read_text())
        if saved == yaml.safe_load(yaml.safe_dump(to_dict(config), sort_keys=False)):
            return json.loads(done.read_text())
    return None


def run_once(config: TextTo3DConfig, out: Path, progress: bool) -> dict:
    """A run's metrics: read from a finished run in ``out`` with the same config, else run."""
    return finished(config, out) or text_to_3d(config, out, progress=progress)


def diversity(paths: list[Path]) -> float | None:
    """Mean pairwise Chamfer distance between meshes (None for fewer than two)."""
    from generators.nerf.export import chamfer_distance, to_world

    meshes = [to_world(trimesh.load(p, process=False)) for p in paths]
    pairs = list(itertools.combinations(meshes, 2))
    if not pairs:
        return None
    return sum(chamfer_distance(a, b) for a, b in pairs) / len(pairs)


def quality(
    base: TextTo3DConfig,
    prompts: list[str],
    seeds: int,
    out: Path,
    progress: bool = True,
    guidances: dict[str, GuidanceConfig] | None = None,
) -> list[dict]:
    """Run every prompt x guidance x seed, write quality.md/.csv into ``out``; returns the
    rows. ``guidances``: each side's config (default ``sides()``: each guidance's defaults)."""
    guidances = guidances or sides()
    rows, scores = [], {name: [[] for _ in range(seeds)] for name in guidances}
    for prompt in prompts:
        for name, guidance in guidances.items():
            runs = []
            for seed in range(seeds):
                config = side(replace(base, prompt=prompt), guidance, seed)
                folder = out / f"{slug(prompt)}-{name}-{seed}"
                runs.append((folder, run_once(config, folder, progress)))
                scores[name][seed].append(runs[-1][1]["truth"])
            rows.append(summarise(prompt, name, runs))
    write_tables(rows, out, list(guidances), seed_intervals(scores))
    return rows


def t_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95 % Student-t interval (None for one value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / n**0.5)


def seed_intervals(scores: dict[str, list[list[dict]]]) -> dict[str, dict[str, tuple]]:
    """Per guidance and INTERVALS score: each seed's mean over the prompts, then the mean of
    those and its 95 % t-interval over the seeds (seeds are the independent repeats)."""
    return {
        name: {
            key: t_interval([sum(r[key] for r in runs) / len(runs) for runs in per_seed])
            for key in INTERVALS
        }
        for name, per_seed in scores.items()
    }


def summarise(prompt: str, guidance: str, runs: list[tuple[Path, dict]]) -> dict:
    """One table row: means over the seeds' runs."""
    row = {"prompt": prompt, "guidance": guidance, "seeds": len(runs)}
    for key in SCORES:
        values = [m["truth"].get(key) for _, m in runs]
        row[key] = _mean(values)
    row["diversity"] = diversity([folder / "mesh.ply" for folder, _ in runs])
    row["seconds"] = _mean([m["train_seconds"] for _, m in runs])
    return row


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_tables(
    rows: list[dict], out: Path, names: list[str], intervals: dict | None = None
) -> None:
    """quality.csv (a row per prompt and guidance) and quality.md (plus a mean per guidance,
    and under it ``seed_intervals``' means with their 95 % intervals over seeds)."""
    keys = list(rows[0])
    write_csv(rows, out / "quality.csv")
    lines = markdown(rows, _cell)
    for g in names:
        mine = [r for r in rows if r["guidance"] == g]
        means = [_cell(_mean([r[k] for r in mine])) for k in keys[3:]]
        lines.append("| **mean** | " + f"**{g}** | " + " | ".join(["", *means]) + " |")
    if intervals:
        lines += ["", "Mean over the prompts, 95 % t-interval over the seeds:", ""]
        for g, scores in intervals.items():
            parts = [
                f"{key} {mean:.3f}" + ("" if half is None else f" ± {half:.3f}")
                for key, (mean, half) in scores.items()
            ]
            lines.append(f"- {g}: " + ", ".join(parts))
    (out / "quality.md").write_text("\n".join(lines) + "\n")


# The benchmarks by name: (function, help). `dream3d bench NAME` runs one; each function takes
# (base config, prompts, seeds, out, progress, guidances) and writes OUT/NAME.md and NAME.csv.
BENCHMARKS = {
    "quality": (
        quality,
        "SDS and IKL NeRFs over catalogue prompts, scored against the exact ground truth.\n"
        "Runs `dream3d run` per prompt, guidance and seed into OUT and writes OUT/quality.md "
        "and OUT/quality.csv. Finished runs in OUT with the same config are reused.",
    )
}
