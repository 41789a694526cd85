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
    rows = []
    for prompt in prompts:
        for name, guidance in guidances.items():
            runs = []
            for seed in range(seeds):
                config = side(replace(base, prompt=prompt), guidance, seed)
                folder = out / f"{slug(prompt)}-{name}-{seed}"
                runs.append((folder, run_once(config, folder, progress)))
            rows.append(summarise(prompt, name, runs))
    write_tables(rows, out, list(guidances))
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


def write_tables(rows: list[dict], out: Path, names: list[str]) -> None:
    """quality.csv (a row per prompt and guidance) and quality.md (plus a mean per guidance)."""
    keys = list(rows[0])
    write_csv(rows, out / "quality.csv")
    lines = markdown(rows, _cell)
    for g in names:
        mine = [r for r in rows if r["guidance"] == g]
        means = [_cell(_mean([r[k] for r in mine])) for k in keys[3:]]
        lines.append("| **mean** | " + f"**{g}** | " + " | ".join(["", *means]) + " |")
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
