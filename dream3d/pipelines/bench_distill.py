"""`dream3d bench distill`: the image table, Diff-Instruct's experiment against the truth.

Rows: an independent ground-truth sample (the floor), the teacher's DDIM at 50, 4 and 1 steps,
one-step generators distilled by IKL (raw weights, and an EMA with a half-life of 100
steps), SDS, SiD and DMD, and Dirac images by SDS and IKL; all on
every catalogue caption, with the same scored captions and sample count. Each distilled row
runs at training seeds 0..N-1 (OUT/<row>/seed-<s>/; a finished run with the same config is
reused): its cells are the mean over seeds with a 95 % bootstrap interval, and a second table
gives each row minus one-step IKL, seed by seed (paired: the same seed draws the same z, t and
noise where the losses allow). The references do not depend on the training seed; they are
kept in OUT/references.json for their config. Writes OUT/distill.md, distill.csv (one line
per run) and distill.png (the same captions and z through the teacher's DDIM, one-step IKL
and one-step SDS at seed 0).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from dream3d.config import to_dict
from dream3d.metrics import bootstrap_ci
from dream3d.pipelines.distill import (
    REFERENCE_STEPS,
    DistillConfig,
    ddim_images,
    distill,
    draw,
    references,
    resolve,
    shown_captions,
)
from dream3d.pipelines.image_scores import KEYS, cycled
from dream3d.pipelines.stats import ci_cell
from dream3d.pipelines.sweep import finished
from dream3d.pipelines.tables import markdown, write_csv

# the distilled rows: (row name, overrides of the distill defaults)
RUNS = (
    ("one-step IKL", {"guidance": {"name": "ikl"}}),
    ("one-step IKL EMA100", {"guidance": {"name": "ikl"}, "train": {"ema_halflife": 100}}),
    ("one-step SDS", {"guidance": {"name": "sds"}}),
    ("one-step SiD", {"guidance": {"name": "sid"}}),
    ("one-step DMD", {"guidance": {"name": "dmd"}}),
    ("Dirac SDS", {"generator": {"name": "dirac"}, "guidance": {"name": "sds"}}),
    ("Dirac IKL", {"generator": {"name": "dirac"}, "guidance": {"name": "ikl"}}),
)
BASELINE = "one-step IKL"  # the paired differences are against it (always run)
ALWAYS = ("one-step-ikl", "one-step-sds")  # run whatever --rows says: the picture shows them
COLUMNS = ("row", "seed", *KEYS, "nfe", "ms_per_image", "train_seconds")
PAIRED = ("fd", "precision", "recall", "colour_tv", "variant_tv")  # the differences' columns


def row_folder(name: str) -> str:
    """ "one-step IKL" -> "one-step-ikl": a row's run folder and its name for --rows."""
    return name.lower().replace(" ", "-")


def run_configs(
    steps: int | None, dirac_steps: int | None, eval_n: int | None, rows=None, seed: int = 0
) -> dict:
    """Row name -> DistillConfig of each distilled row at training ``seed`` (``rows``: their
    folder names; None: all)."""
    known = [row_folder(name) for name, _ in RUNS]
    unknown = sorted(set(rows or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown rows {', '.join(unknown)}; choose from: {', '.join(known)}")
    configs = {}
    for name, over in RUNS:
        if rows and row_folder(name) not in rows:
            continue
        dirac = over.get("generator", {}).get("name") == "dirac"
        chosen = dirac_steps if dirac else steps
        train = over.get("train", {}) | {"seed": seed} | ({"steps": chosen} if chosen else {})
        tree = over | {"train": train} | ({"eval": {"n": eval_n}} if eval_n else {})
        configs[name] = resolve(overrides=tree)
    return configs


def cached_references(config: DistillConfig, out: Path, progress: bool) -> list[dict]:
    """The reference rows, from OUT/references.json when made with the same eval and teacher."""
    key = {"n": config.eval.n, "seed": config.eval.seed, "teacher": to_dict(config.teacher)}
    path = out / "references.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == json.loads(json.dumps(key)):
            return saved["rows"]
    rows = references(config, REFERENCE_STEPS, progress=progress)
    path.write_text(json.dumps({"key": key, "rows": rows}, indent=1) + "\n")
    return rows


def bench_distill(
    out: Path,
    steps: int | None = None,
    dirac_steps: int | None = None,
    eval_n: int | None = None,
    progress: bool = True,
    rows: list[str] | None = None,
    seeds: int = 3,
    finished_only: bool = False,
) -> list[dict]:
    """Every run's line (dicts with COLUMNS; the references' seed is None), written to
    OUT/distill.csv, with the table of means and intervals and the paired one in distill.md;
    ``rows`` picks distilled rows by folder name (the one-step IKL and SDS rows always run);
    ``finished_only`` tables the runs already finished in OUT and trains none (a row's seed
    count says how many it has; one-step IKL and SDS need seed 0 for the picture)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picked = None if rows is None else sorted({*rows, *ALWAYS})
    configs = [run_configs(steps, dirac_steps, eval_n, picked, s) for s in range(seeds)]
    names = list(configs[0])
    if finished_only and not all(
        finished(configs[0][n], out / row_folder(n) / "seed-0") for n in (BASELINE, "one-step SDS")
    ):
        raise ValueError(f"{out} has no finished seed 0 of one-step IKL and SDS to table")
    table = [r | {"seed": None} for r in cached_references(configs[0][BASELINE], out, progress)]
    references_md = [{k: r.get(k) for k in COLUMNS if k != "seed"} for r in table]
    runs = collect(configs, out, progress, finished_only)
    table += [{"row": name, "seed": seed} | metrics for (name, seed), metrics in runs.items()]
    table = [{k: r.get(k) for k in COLUMNS} for r in table]
    write_csv(table, out / "distill.csv")
    lines = markdown(references_md + summary(runs, names, seeds), _cell)
    fast = speed(out / row_folder(BASELINE) / "seed-0" / "generator.safetensors")
    lines += ["", "Side by side in one process, 64 images of 64 captions, this machine: one-step "
              f"{fast['onestep_ms']:.1f} ms/image, the teacher's DDIM 50 with CFG "
              f"{fast['ddim50_ms']:.1f} ms/image: {fast['ratio']:.0f}x."]  # fmt: skip
    lines += ["", f"Each row minus {BASELINE}, training seed by seed (mean [95 % interval]):", ""]
    lines += markdown(paired(runs, names, seeds), _cell)
    (out / "distill.md").write_text("\n".join(lines) + "\n")
    picture(configs[0], out)
    return table


def collect(configs: list[dict], out: Path, progress: bool, finished_only: bool) -> dict:
    """(row, seed) -> metrics of each run, seed by seed (every row's seed 0 first): a finished
    run in OUT/<row>/seed-<s> with the same config is reused, a missing one distilled there
    (or, ``finished_only``, left out)."""
    runs = {}
    for seed, by_row in enumerate(configs):
        for name, config in by_row.items():
            folder = out / row_folder(name) / f"seed-{seed}"
            metrics = finished(config, folder)
            if metrics is None and not finished_only:
                metrics = distill(config, folder, progress=progress)
            if metrics is not None:
                runs[name, seed] = metrics
    return runs


def summary(runs: dict, names: list[str], seeds: int) -> list[dict]:
    """A line per distilled row: each score's mean over the seeds that finished, with its
    interval; nfe as is, time per image and training time as means."""
    lines = []
    for name in names:
        done = [runs[name, s] for s in range(seeds) if (name, s) in runs]
        if not done:
            continue
        line = {"row": f"{name} ({len(done)} seeds)"}
        line |= {k: ci_cell(bootstrap_ci([m[k] for m in done]), ".3f") for k in KEYS}
        line["nfe"] = done[0]["nfe"]
        for k in ("ms_per_image", "train_seconds"):
            values = [m[k] for m in done if m.get(k) is not None]
            line[k] = sum(values) / len(values) if values else None
        lines.append(line)
    return lines


def paired(runs: dict, names: list[str], seeds: int) -> list[dict]:
    """A line per row but the baseline: its score minus the baseline's at the same seed, mean
    with interval over the seeds where both finished."""
    lines = []
    for name in names:
        both = [s for s in range(seeds) if (name, s) in runs and (BASELINE, s) in runs]
        if name == BASELINE or not both:
            continue
        line = {"row": f"{name} - {BASELINE}", "seeds": len(both)}
        for k in PAIRED:
            diffs = [runs[name, s][k] - runs[BASELINE, s][k] for s in both]
            ci = tuple(round(v, 9) + 0.0 for v in bootstrap_ci(diffs))  # no "-0.000"
            line[k] = ci_cell(ci, "+.3f")
        lines.append(line)
    return lines


def speed(weights: Path, n: int = 64) -> dict:
    """ms per image of one-step sampling and of the teacher's 50-step DDIM with CFG, measured
    one after the other on the same ``n`` captions in one batch (after a warm-up)."""
    from dream3d.pipelines.distill import load_generator

    parts, _ = load_generator(weights)
    captions = cycled(parts.captions, n)
    onestep = lambda: draw(parts, captions, 0, batch=n)  # noqa: E731
    ddim = lambda k: ddim_images(parts.teacher, captions, k, 3.0, 0, False, batch=n)  # noqa: E731
    onestep(), ddim(1)  # warm-up: first calls allocate
    times = {}
    for name, fn in (("onestep_ms", onestep), ("ddim50_ms", lambda: ddim(50))):
        start = time.perf_counter()
        fn()
        times[name] = 1000 * (time.perf_counter() - start) / n
    return times | {"ratio": times["ddim50_ms"] / times["onestep_ms"]}


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def picture(configs: dict, out: Path, per_row: int = 4, seed: int = 7) -> None:
    """distill.png: for each shown caption, ``per_row`` fixed z through the teacher's DDIM 50,
    one-step IKL and one-step SDS (x_T of DDIM is the z the generators get)."""
    from dream3d.pipelines.distill import load_generator
    from dream3d.pipelines.world import save_grid

    ikl, _ = load_generator(out / "one-step-ikl" / "seed-0" / "generator.safetensors")
    sds, _ = load_generator(out / "one-step-sds" / "seed-0" / "generator.safetensors")
    captions = [c for c in shown_captions(ikl.captions) for _ in range(per_row)]
    blocks = [
        ddim_images(ikl.teacher, captions, 50, 3.0, seed, progress=False, batch=len(captions)),
        draw(ikl, captions, seed, batch=len(captions)),
        draw(sds, captions, seed, batch=len(captions)),
    ]
    rows = [
        torch.cat([b[i : i + per_row] for b in blocks]) for i in range(0, len(captions), per_row)
    ]
    save_grid(torch.cat(rows), out / "distill.png", cols=3 * per_row)
