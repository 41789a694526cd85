"""`dream3d bench amortised`: triplane generators of NeRFs against the truth and against
per-prompt `dream3d run` NeRFs.

For each generator (by guidance: IKL and SDS) and each caption of a sample (every held-out
prompt; for each object its colourless prompt and one held-in colour), n z's are drawn and
each object is scored as a `dream3d run` NeRF is (silhouette and 3D IoU, colour, closest
variant, area ratio, normal consistency, Janus); per caption, how the n objects spread over
the caption's choices (distinct variant x colour modes, colour TV of colourless captions,
variant TV of chairs). Beside them, `dream3d bench quality` runs of a few of the same
captions (per-prompt NeRFs, 3 seeds) give the per-prompt reference. Writes OUT/amortised.md
(tables with 95 % bootstrap intervals over captions), amortised.csv (one line per object),
and amortised.png (captions x z, IKL | SDS).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dream3d.metrics import bootstrap_ci
from dream3d.pipelines.stats import ci_cell
from dream3d.pipelines.tables import markdown, write_csv
from generators.nerf.amortised import held_out_prompts
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import canonical, parse_prompt

SCORES = ("silhouette_iou", "occupancy_iou", "colour_error", "area_ratio", "normal_consistency")
# per-prompt runs: held-in (colourless, coloured) and held-out captions, two of each
RUN_PROMPTS = ("a chair", "a blue cube", "a red chair", "a red sphere")
SHOWN = ("a chair", "a mug", "a red chair", "a blue cube", "a lamp", "a brown snowman")


def sample_captions() -> list[str]:
    """The bench's captions: per object its colourless prompt and one held-in colour (the
    one after its held-out colour), then the 12 held-out prompts."""
    colours, held = list(COLOURS), held_out_prompts()
    held_in = [canonical(o, None) for o in OBJECTS]
    held_in += [canonical(o, colours[(i + 1) % len(colours)]) for i, o in enumerate(OBJECTS)]
    assert not set(held_in) & set(held)
    return held_in + held


def score_objects(generator, prompt: str, n: int, seed: int, mesh) -> tuple[list[dict], float]:
    """Truth scores of n objects of ``prompt`` (z from ``seed``), and ms per object made."""
    from dream3d.pipelines.outputs import scores
    from generators.nerf.export import extract_mesh

    spec = parse_prompt(prompt)
    z = generator.noise(n, torch.Generator().manual_seed(seed))
    rows, made = [], 0.0
    for k in range(n):
        start = time.perf_counter()
        nerf = generator.instance(spec.text, z[k])
        made += time.perf_counter() - start
        field = nerf.field
        shape = extract_mesh(field.density, field.albedo, mesh, "cpu")
        rows.append(scores(nerf, spec, shape, mesh.threshold))
    return rows, 1000 * made / n


def bench_amortised(
    weights: dict[str, Path],
    out: Path,
    n: int = 8,
    captions: list[str] | None = None,
    run_prompts: list[str] | None = None,
    run_seeds: int = 3,
    progress: bool = True,
    seed: int = 0,
) -> dict:
    """Score every generator in ``weights`` (guidance -> generator file) on ``captions``
    (default ``sample_captions()``), n z's each, beside ``bench quality`` runs of
    ``run_prompts`` (default RUN_PROMPTS; none: []) at ``run_seeds`` seeds; write the
    tables and picture into ``out``. Returns {"objects": rows, "tables": markdown lines}."""
    from dream3d.pipelines.generate import load_triplane
    from dream3d.pipelines.text_to_3d import OutputsConfig

    if n < 2:
        raise ValueError(f"n must be >= 2 (the spread over z needs two), got {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_prompts = list(RUN_PROMPTS if run_prompts is None else run_prompts)
    captions = list(captions or sample_captions())
    captions += [p for p in run_prompts if p not in captions]  # each run's caption, generated
    generators = {g: load_triplane(path) for g, path in weights.items()}
    mesh = OutputsConfig().mesh
    objects, per_caption = [], {}
    jobs = [(g, c) for g in generators for c in captions]
    for g, caption in tqdm(jobs, desc="captions", disable=not progress):
        truths, ms = score_objects(generators[g], caption, n, seed, mesh)
        held = parse_prompt(caption).text in held_out_prompts()
        for k, t in enumerate(truths):
            objects.append({"guidance": g, "caption": caption, "held_out": held, "z": k} | _flat(t))
        per_caption[g, caption] = {"truths": truths, "ms": ms, "held_out": held}
    write_csv(objects, out / "amortised.csv")
    runs = _per_prompt_runs(run_prompts, run_seeds, out / "runs", progress)
    lines = tables(per_caption, list(generators), captions, runs)
    (out / "amortised.md").write_text("\n".join(lines) + "\n")
    picture(generators, [c for c in SHOWN if c in captions] or captions[:6], n, seed, out)
    return {"objects": objects, "tables": lines}


def _flat(truth: dict) -> dict:
    keep = (*SCORES, "closest_variant", "nearest_colour", "janus")
    return {k: truth.get(k) for k in keep}


def _per_prompt_runs(prompts: list[str], seeds: int, out: Path, progress: bool) -> dict:
    """prompt -> guidance -> [truth of each seed's `dream3d run`] (bench quality's runs)."""
    if not prompts:
        return {}
    from dream3d.pipelines.compare import side, sides
    from dream3d.pipelines.sweep import run_all
    from dream3d.pipelines.text_to_3d import resolve, slug

    base = resolve("a chair")
    jobs = {
        (p, g, s): (side(replace(base, prompt=p), config, s), out / f"{slug(p)}-{g}-{s}")
        for p in prompts
        for g, config in sides().items()
        for s in range(seeds)
    }
    outcomes = run_all(list(jobs.values()), progress)
    runs: dict = {}
    for (p, g, _), outcome in zip(jobs, outcomes):
        if outcome.metrics is not None:
            runs.setdefault(p, {}).setdefault(g, []).append(outcome.metrics["truth"])
    return runs


def _ci(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    return ci_cell(bootstrap_ci(values), ".3f") if values else "–"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def tables(per_caption: dict, names: list[str], captions, runs: dict) -> list[str]:
    """The markdown of the bench: scores by guidance and held-in/out, the comparison with
    per-prompt runs, the spread over z, and time per object."""
    from dream3d.pipelines.stats import choices_of
    from scenes.score import distribution_scores

    lines = ["Per caption, the mean over its z's; then mean [95 % bootstrap interval] over "
             "captions.", ""]  # fmt: skip
    rows = []
    for g in names:
        for held, label in ((False, "held-in"), (True, "held-out")):
            mine = [per_caption[g, c] for c in captions if per_caption[g, c]["held_out"] is held]
            if not mine:
                continue
            row = {"guidance": g, "captions": f"{label} ({len(mine)})"}
            for key in SCORES:
                row[key] = _ci([_mean(t.get(key) for t in m["truths"]) for m in mine])
            janus = [_mean(t.get("janus") for t in m["truths"]) for m in mine]
            row["janus"] = _ci(janus)
            rows.append(row)
    lines += markdown(rows)
    if runs:
        head = (
            "Against per-prompt `dream3d run` NeRFs (bench quality's settings; the "
            "generator's mean over its z's, the runs' mean over seeds): 3D IoU"
        )
        lines += ["", head, ""]
        rows, pairs = [], {}
        for prompt, by_guidance in runs.items():
            held = parse_prompt(prompt).text in held_out_prompts()
            row = {"caption": prompt, "held_out": held}
            for g in names:
                own = per_caption.get((g, prompt))
                gen = _mean(t["occupancy_iou"] for t in own["truths"]) if own else None
                run = _mean(t["occupancy_iou"] for t in by_guidance.get(g, []))
                row[f"{g} generator"] = _fmt(gen)
                row[f"{g} runs ({len(by_guidance.get(g, []))} seeds)"] = _fmt(run)
                row[f"{g} ratio"] = _fmt(gen / run if gen is not None and run else None)
                if gen is not None and run is not None:
                    pairs.setdefault((g, held), []).append((gen, run))
            rows.append(row)
        lines += markdown(rows)
        lines += [""] + [
            f"{g}, {'held-out' if held else 'held-in'} captions of the runs: generator "
            f"{_mean(a for a, _ in p):.3f} / runs {_mean(b for _, b in p):.3f} = "
            f"{_mean(a for a, _ in p) / _mean(b for _, b in p):.3f}"
            for (g, held), p in sorted(pairs.items())
            if _mean(b for _, b in p)
        ]  # the ratio of means over each group's captions
    head = (
        "Spread over z (distinct variant x colour modes of n objects; colour TV on "
        "colourless captions, variant TV on chairs, lower is closer to the truth):"
    )
    lines += ["", head, ""]
    rows, spreads = [], {}
    colourless = [c for c in captions if parse_prompt(c).colour is None]
    for g in names:
        spreads[g] = [
            distribution_scores(*choices_of({"particle_truth": per_caption[g, c]["truths"]}),
                                parse_prompt(c))
            for c in colourless
        ]  # fmt: skip
        found = [s for s in spreads[g] if s]
        rows.append({
            "guidance": g,
            "colourless captions": len(found),
            "modes": _ci([s["modes"] for s in found]),
            "colour_tv": _ci([s.get("colour_tv") for s in found]),
            "variant_tv": _ci([s.get("variant_tv") for s in found]),
        })  # fmt: skip
    lines += markdown(rows)
    if len(names) == 2 and colourless:
        a, b = names
        diffs = [x["modes"] - y["modes"] for x, y in zip(spreads[a], spreads[b]) if x and y]
        lines += ["", f"Modes, {a} minus {b}, caption by caption: {_ci(diffs)}."]
    ms = {g: _mean(per_caption[g, c]["ms"] for c in captions) for g in names}
    lines += ["", "One object's NeRF (planes and occupancy grid), this machine: "
              + ", ".join(f"{g} {v:.1f} ms" for g, v in ms.items()) + "."]  # fmt: skip
    return lines


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


@torch.no_grad()
def picture(generators: dict, captions: list[str], n: int, seed: int, out: Path) -> None:
    """amortised.png: a row per caption, its n z's (at azimuth 30, the views' elevation) by
    each generator in turn."""
    from dream3d.pipelines.outputs import render_views
    from dream3d.pipelines.world import save_grid
    from scenes.shape_scores import orbit_cameras

    camera = orbit_cameras([30.0])
    images = []
    for caption in captions:
        text = parse_prompt(caption).text
        for generator in generators.values():
            z = generator.noise(n, torch.Generator().manual_seed(seed))
            for k in range(n):
                rgb, _ = render_views(generator.instance(text, z[k]), camera, 48, 48)
                images.append(rgb * 2 - 1)
    save_grid(torch.cat(images), out / "amortised.png", cols=n * len(generators))
