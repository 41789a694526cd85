"""`dream3d bench quality`: ground-truth scores of SDS and IKL NeRFs over catalogue prompts.

For every prompt, seed and guidance it runs `dream3d run` into OUT/<prompt>-<guidance>-<seed>/
(...-<K>particles/ with particles; in process, or as Ray tasks: dream3d.pipelines.sweep; a
finished run found there is reused), then writes OUT/quality.md and OUT/quality.csv: per
prompt and guidance the means over seeds of the ground-truth scores, the diversity (mean
pairwise Chamfer distance between meshes: of the seeds, or of each run's particles) and wall
time; then (dream3d.pipelines.stats) each mean with its 95 % bootstrap interval, the paired
IKL - SDS difference (same prompt, same seed) with its interval, the same over the prompts'
means, and for prompts that leave a choice how the results spread over it (over the seeds,
or over each run's particles), against the truth and the teacher's own samples.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import trimesh

from dream3d.guidance import GuidanceConfig
from dream3d.pipelines.compare import side, sides
from dream3d.pipelines.stats import failed_lines, failures, report, spread_choices
from dream3d.pipelines.sweep import run_all
from dream3d.pipelines.tables import markdown, write_csv
from dream3d.pipelines.text_to_3d import TextTo3DConfig, particles_suffix, slug

# the default prompt set: ~30 min on 2 CPU cores (estimated from the README runs' times)
DEFAULT_PROMPTS = ("a chair", "a table", "a red sphere", "a blue cube")
SCORES = (
    "silhouette_iou",
    "occupancy_iou",
    "chamfer",
    "area_ratio",
    "normal_consistency",
    "colour_error",
    "corner_ratio",  # radius to the diagonals / to the axes (truth: 1.40 cube, 1 round)
    "janus",  # over seeds, the rate of two-faced results (None for round objects)
)


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
    ray: str | None = None,
    cpus: int | None = None,
) -> list[dict]:
    """Run every prompt x guidance x seed (``ray``, ``cpus``: see sweep.run_all), write
    quality.md/.csv into ``out``; returns the table's rows, then {"out", "error"} for each
    failed run (listed under the table, and left out of it). ``guidances``: each side's config
    (default ``sides()``)."""
    guidances = guidances or sides()
    jobs = {
        (prompt, name, seed): side(replace(base, prompt=prompt), guidance, seed)
        for prompt in prompts
        for name, guidance in guidances.items()
        for seed in range(seeds)
    }
    more = particles_suffix(base)
    folders = {key: out / f"{slug(key[0])}-{key[1]}-{key[2]}{more}" for key in jobs}
    outcomes = run_all([(jobs[k], folders[k]) for k in jobs], progress, ray, cpus)
    runs = {k: (folders[k], o.metrics) for k, o in zip(jobs, outcomes) if o.metrics is not None}
    rows = [summarise(p, g, runs, seeds) for p in prompts for g in guidances]
    rows = [r for r in rows if r["seeds"]]
    if not rows:
        raise ValueError("every run failed: " + "; ".join(failed_lines(outcomes)))
    teacher = spread_choices(base, prompts, seeds, out)
    write_tables(rows, runs, list(guidances), prompts, seeds, teacher, outcomes, out)
    return rows + failures(outcomes)


def summarise(prompt: str, guidance: str, runs: dict, seeds: int) -> dict:
    """One table row: the means over the seeds' finished runs."""
    mine = [runs[(prompt, guidance, s)] for s in range(seeds) if (prompt, guidance, s) in runs]
    row = {"prompt": prompt, "guidance": guidance, "seeds": len(mine)}
    for key in SCORES:
        row[key] = _mean([m["truth"].get(key) for _, m in mine])
    if mine and mine[0][1].get("particles", 1) > 1:  # within each run, over its particles
        meshes = [sorted(folder.glob("particle-*/mesh.ply")) for folder, _ in mine]
        row["diversity"] = _mean([diversity(paths) for paths in meshes])
    else:  # over the seeds
        row["diversity"] = diversity([folder / "mesh.ply" for folder, m in mine if "mesh" in m])
    row["seconds"] = _mean([m["train_seconds"] for _, m in mine])
    return row


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_tables(rows, runs, names, prompts, seeds, teacher, outcomes, out: Path) -> None:
    """quality.csv (a row per prompt and guidance), quality-intervals.csv (``stats.intervals``)
    and quality.md: the table with a mean per guidance, the means with their intervals, the
    paired differences, the distribution scores (``stats.choice_records``), the failed runs."""
    keys = list(rows[0])
    write_csv(rows, out / "quality.csv")
    lines = markdown(rows, _cell)
    for g in names:
        mine = [r for r in rows if r["guidance"] == g]
        means = [_cell(_mean([r[k] for r in mine])) for k in keys[3:]]
        lines.append("| **mean** | " + f"**{g}** | " + " | ".join(["", *means]) + " |")
    stats, records = report(runs, names, prompts, seeds, SCORES, teacher, outcomes)
    write_csv(records, out / "quality-intervals.csv")
    lines += stats
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
