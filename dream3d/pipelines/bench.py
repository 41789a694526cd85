"""`dream3d bench quality`: ground-truth scores of SDS and IKL NeRFs over catalogue prompts.

For every prompt, seed and guidance it runs `dream3d run` into OUT/<prompt>-<guidance>-<seed>/
(reusing a finished run found there), then writes OUT/quality.md and OUT/quality.csv: per
prompt and guidance the means over seeds of silhouette IoU (held-out views), 3D occupancy
IoU, mesh Chamfer distance, colour error, wall time, and the diversity across seeds (mean
pairwise Chamfer distance between the seeds' meshes); then the mean per guidance.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import asdict, replace
from pathlib import Path

import trimesh
import yaml

from dream3d.pipelines.text_to_3d import DEFAULT_CFG, RunConfig, run, slug

# the default prompt set: ~30 min on 2 CPU cores (estimated from the README runs' times)
DEFAULT_PROMPTS = ("a chair", "a table", "a red sphere", "a blue cube")
GUIDANCES = ("sds", "ikl")
SCORES = ("silhouette_iou", "occupancy_iou", "chamfer", "colour_error")


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


def run_once(config: RunConfig, out: Path, progress: bool) -> dict:
    """A run's metrics: read from a finished run in ``out`` with the same config, else run."""
    done = out / "metrics.json"
    if done.is_file() and (out / "config.yaml").is_file():
        saved = yaml.safe_load((out / "config.yaml").read_text())
        if saved == _as_yaml(config):
            return json.loads(done.read_text())
    return run(config, out, progress=progress)


def _as_yaml(config: RunConfig) -> dict:
    return yaml.safe_load(yaml.safe_dump(asdict(config), sort_keys=False))


def diversity(paths: list[Path]) -> float | None:
    """Mean pairwise Chamfer distance between meshes (None for fewer than two)."""
    from generators.nerf.export import chamfer_distance, to_world

    meshes = [to_world(trimesh.load(p, process=False)) for p in paths]
    pairs = list(itertools.combinations(meshes, 2))
    if not pairs:
        return None
    return sum(chamfer_distance(a, b) for a, b in pairs) / len(pairs)


def quality(base: RunConfig, prompts: list[str], seeds: int, out: Path, progress=True):
    """Run everything, write quality.md/.csv into ``out``; returns the table rows."""
    rows = []
    for prompt in prompts:
        for guidance in GUIDANCES:
            runs = []
            for seed in range(seeds):
                config = replace(
                    base, prompt=prompt, guidance=guidance, seed=seed, cfg=DEFAULT_CFG[guidance]
                )
                folder = out / f"{slug(prompt)}-{guidance}-{seed}"
                runs.append((folder, run_once(config, folder, progress)))
            rows.append(summarise(prompt, guidance, runs))
    write_tables(rows, out)
    return rows


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


def write_csv(rows: list[dict], path: Path) -> None:
    """Rows (dicts with the same keys) as CSV with a header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: list[dict], cell=str) -> list[str]:
    """A markdown table's lines: header, rule, one line per row (cells formatted by ``cell``)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]


def write_tables(rows: list[dict], out: Path) -> None:
    """quality.csv (a row per prompt and guidance) and quality.md (plus a mean per guidance)."""
    keys = list(rows[0])
    write_csv(rows, out / "quality.csv")
    lines = markdown(rows, _cell)
    for g in GUIDANCES:
        mine = [r for r in rows if r["guidance"] == g]
        means = [_cell(_mean([r[k] for r in mine])) for k in keys[3:]]
        lines.append("| **mean** | " + f"**{g}** | " + " | ".join(["", *means]) + " |")
    (out / "quality.md").write_text("\n".join(lines) + "\n")
