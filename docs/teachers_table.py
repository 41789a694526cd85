"""The same bench quality under several teachers: means over seeds and the paired difference of
each teacher against the first, per guidance (docs/camera.md's tables).

    python docs/teachers_table.py NAME=BENCH_OUT [NAME=BENCH_OUT ...] > table.md

Each BENCH_OUT is a `dream3d bench quality --seeds N --teacher NAME` folder; runs are read from
its <prompt>-<guidance>-<seed>/metrics.json. Teachers are paired seed by seed (same prompt,
guidance and seed), with dream3d.pipelines.stats's 95 % bootstrap intervals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dream3d.pipelines.stats import interval_lines, intervals

SCORES = (
    "silhouette_iou",
    "occupancy_iou",
    "area_ratio",
    "normal_consistency",
    "corner_ratio",
    "janus",
)


def read_runs(folder: Path) -> dict:
    """(prompt, guidance, seed) -> metrics["truth"] of every finished run in ``folder``."""
    runs = {}
    for path in sorted(folder.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        runs[(m["prompt"], m["guidance"], m["seed"])] = m["truth"]
    return runs


def main(*pairs: str) -> None:
    teachers = {name: read_runs(Path(out)) for name, out in (p.split("=", 1) for p in pairs)}
    first = next(iter(teachers.values()))
    prompts = list(dict.fromkeys(p for p, _, _ in first))
    seeds = 1 + max(s for _, _, s in first)
    for guidance in dict.fromkeys(g for _, g, _ in first):
        scores = {
            score: {
                (p, name, s): truth.get(score)
                for name, runs in teachers.items()
                for (p, g, s), truth in runs.items()
                if g == guidance
            }
            for score in SCORES
        }
        records = intervals(scores, list(teachers), prompts, seeds)
        print(f"\n**{guidance.upper()}**, mean over seeds [95 % bootstrap interval]:\n")
        print(
            "\n".join(interval_lines(records, paired=False)).replace("| guidance |", "| teacher |")
        )
        print(f"\n**{guidance.upper()}**, paired differences, seed by seed:\n")
        print("\n".join(interval_lines(records, paired=True)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:])
