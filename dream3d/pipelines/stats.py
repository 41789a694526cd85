"""Statistics of SDS-vs-IKL tables (DESIGN.md section 6): seeds are the independent repeats.

Per prompt and guidance, the mean of a score over seeds with its 95 % percentile bootstrap
interval (dream3d.metrics.bootstrap_ci); the paired difference of each guidance against the
first (IKL - SDS) seed by seed, with its interval; the same for the mean over the prompts (a
seed counts there when all its prompts finished). With 3 seeds the bootstrap has 27 equally
likely resamples, so each end of the interval is the smallest or largest seed: an interval is
the seeds' range, and one that excludes 0 says every seed went the same way, no more.
"""

from __future__ import annotations

import json
from pathlib import Path

from dream3d.metrics import bootstrap_ci

ALL = "all prompts"  # the row of the mean over the prompts
TEACHER_SAMPLES = 8  # the teacher's judged DDIM samples per view caption (distribution scores)


def per_seed(values: dict, prompt: str, name: str, prompts: list[str], seeds: int) -> dict:
    """seed -> the score of (prompt, name, seed), or for ALL the mean over ``prompts``;
    ``values`` maps (prompt, guidance, seed) to a score (None: not scored)."""
    out = {}
    for s in range(seeds):
        keys = [(p, name, s) for p in (prompts if prompt == ALL else [prompt])]
        got = [values.get(k) for k in keys]
        if all(v is not None for v in got):
            out[s] = sum(got) / len(got)
    return out


def intervals(scores: dict, names: list[str], prompts: list[str], seeds: int) -> list[dict]:
    """Records (prompt, of, score, n, mean, lo, hi): each guidance's mean over seeds, and each
    guidance but the first minus the first, seed by seed. ``scores``: score -> values as in
    ``per_seed``."""
    records = []
    for prompt in [*prompts, ALL]:
        for score, values in scores.items():
            by = {g: per_seed(values, prompt, g, prompts, seeds) for g in names}
            sets = {g: list(v.values()) for g, v in by.items()}
            for g in names[1:]:
                both = sorted(by[g].keys() & by[names[0]].keys())
                sets[f"{g} - {names[0]}"] = [by[g][s] - by[names[0]][s] for s in both]
            for of, vals in sets.items():
                if vals:
                    mean, lo, hi = bootstrap_ci(vals)
                    records.append(dict(prompt=prompt, of=of, score=score, n=len(vals),
                                        mean=mean, lo=lo, hi=hi))  # fmt: skip
    return records


def interval_lines(records: list[dict], paired: bool) -> list[str]:
    """A markdown table of ``intervals`` records: the guidances' rows, or (``paired``) the
    differences' rows; a cell is "mean [lo, hi]"."""
    rows = [r for r in records if (" - " in r["of"]) == paired]
    if not rows:
        return []
    scores = list(dict.fromkeys(r["score"] for r in rows))
    sign = "+" if paired else ""
    lines = ["| prompt | " + ("difference" if paired else "guidance") + " | seeds | "]
    lines[0] += " | ".join(scores) + " |"
    lines.append("|" + "---|" * (3 + len(scores)))
    for key in dict.fromkeys((r["prompt"], r["of"]) for r in rows):
        mine = {r["score"]: r for r in rows if (r["prompt"], r["of"]) == key}
        cells = [
            f"{r['mean']:{sign}.3f} [{r['lo']:{sign}.3f}, {r['hi']:{sign}.3f}]" if r else "–"
            for r in (mine.get(s) for s in scores)
        ]
        n = max(r["n"] for r in mine.values())
        lines.append(f"| {key[0]} | {key[1]} | {n} | " + " | ".join(cells) + " |")
    return lines


def failures(outcomes) -> list[dict]:
    """{"out", "error"} of each failed run of a sweep."""
    return [{"out": str(o.out), "error": o.error} for o in outcomes if o.error is not None]


def failed_lines(outcomes) -> list[str]:
    """'- OUT: error' for each failed run of a sweep (dream3d.pipelines.sweep.Outcome)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return []
    return ["", f"{len(failed)} run(s) failed and are left out:", ""] + [
        f"- {o.out}: {o.error}" for o in failed
    ]


CHOICE_KEYS = ("colour_tv", "variant_tv", "modes", "colour_tv_teacher", "variant_tv_teacher")


def teacher_choices(base, prompt: str, out: Path) -> dict | None:
    """The teacher's judged choices for a prompt that leaves one (pipelines.teacher
    .judged_choices, cached in OUT/teacher-<prompt>.json); None for other prompts and for
    teachers that are not embedded."""
    from dream3d.pipelines.teacher import EMBEDDED, SamplingConfig, judged_choices
    from dream3d.pipelines.text_to_3d import slug
    from scenes.prompts import parse_prompt
    from scenes.score import variants

    spec = parse_prompt(prompt)
    if base.teacher.name not in EMBEDDED or (spec.colour and len(variants(spec.object)) == 1):
        return None
    path = out / f"teacher-{slug(prompt)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    weights = getattr(base.teacher, "weights", None)
    sampling = SamplingConfig(teacher=base.teacher.name, weights=weights)
    choices = judged_choices(spec, TEACHER_SAMPLES, sampling)
    path.write_text(json.dumps(choices, indent=1))
    return choices


def spread_choices(base, prompts: list[str], seeds: int, out: Path) -> dict | None:
    """prompt -> ``teacher_choices`` when each side has more than one result to spread (seeds
    or particles), else None: no distribution scores (and no teacher sampling) for one."""
    if seeds < 2 and base.particles < 2:
        return None
    return {p: teacher_choices(base, p, out) for p in prompts}


def choices_of(metrics: dict) -> tuple[list[str], list[str]]:
    """A run's results' (closest variants, nearest colours): its particles', or its own."""
    truths = metrics.get("particle_truth") or [metrics["truth"]]
    return [t["closest_variant"] for t in truths], [t["nearest_colour"] for t in truths]


def choice_records(runs: dict, names, prompts, seeds: int, teacher: dict) -> list[dict]:
    """Distribution scores (scenes.score.distribution_scores) of each prompt that leaves a
    choice, per guidance: over each run's particles (then mean and interval over seeds, and
    each guidance but the first minus the first, seed by seed) or, for single NeRFs, over the
    seeds; and the teacher's own judged samples against the truth.
    ``runs``: (prompt, guidance, seed) -> (folder, metrics); ``teacher``: prompt -> choices."""
    from scenes.prompts import parse_prompt
    from scenes.score import distribution_scores

    records = []
    for prompt in prompts:
        spec, theirs = parse_prompt(prompt), teacher.get(prompt)
        per_seed = {}  # guidance -> seed -> a particle run's distribution scores
        for g in names:
            mine = {s: runs[(prompt, g, s)][1] for s in range(seeds) if (prompt, g, s) in runs}
            if not mine:
                continue
            first = next(iter(mine.values()))
            if first.get("particles", 1) > 1:
                scored = {s: distribution_scores(*choices_of(m), spec, theirs)
                          for s, m in mine.items()}  # fmt: skip
                each, over = list(scored.values()), f"{first['particles']} particles, per seed"
            else:
                pooled = [sum(lists, []) for lists in zip(*(choices_of(m) for m in mine.values()))]
                each, scored = [distribution_scores(*pooled, spec, theirs)], None
                over = "the seeds"
            if each[0] is not None:  # the prompt leaves a choice
                records.append(_choice_record(prompt, g, over, each))
                if scored is not None:
                    per_seed[g] = scored
        records += _paired_choices(prompt, names, per_seed)
        if theirs is not None:
            own = distribution_scores(theirs["variants"], theirs["colours"], spec)
            if own is not None:
                records.append(_choice_record(prompt, "teacher", "its DDIM samples", [own]))
    return records


def _paired_choices(prompt: str, names, per_seed: dict) -> list[dict]:
    """Records of each guidance's particle distribution scores minus the first's, paired on
    the seeds both have."""
    records, base = [], per_seed.get(names[0])
    for g in names[1:]:
        seeds = sorted(set(per_seed.get(g, {})) & set(base or {}))
        if not seeds:
            continue
        ours, theirs = [per_seed[g][s] for s in seeds], [base[s] for s in seeds]
        keys = [k for k in CHOICE_KEYS if k in ours[0]]
        record = {"prompt": prompt, "of": f"{g} - {names[0]}", "over": "paired, per seed"}
        record |= {"runs": len(seeds), "n": ours[0]["n"], "floor": {}, "counts": None}
        for key in keys:
            record[key] = bootstrap_ci([a[key] - b[key] for a, b in zip(ours, theirs)])
        records.append(record)
    return records


def _choice_record(prompt: str, of: str, over: str, each: list[dict]) -> dict:
    """Mean and interval of each CHOICE_KEYS score over ``each`` (distribution_scores)."""
    record = {"prompt": prompt, "of": of, "over": over, "runs": len(each), "n": each[0]["n"]}
    for key in CHOICE_KEYS:
        if key in each[0]:
            record[key] = bootstrap_ci([d[key] for d in each])
    record["floor"] = {k: each[0][k] for k in each[0] if k.endswith(("_floor", "_expected"))}
    record["counts"] = each[0]["colour_counts"] if len(each) == 1 else None
    return record


def choice_lines(records: list[dict]) -> list[str]:
    """A markdown table of ``choice_records``: mean [lo, hi] over runs (one run: the value),
    what n draws from the truth give on average, and a single run's colour counts."""
    if not records:
        return []
    head = "| prompt | results | over | runs | n | " + " | ".join(CHOICE_KEYS)
    lines = [head + " | truth's own n draws | colours |", "|" + "---|" * (7 + len(CHOICE_KEYS))]
    for r in records:
        sign = "+" if " - " in r["of"] else ""  # a paired difference
        cells = [ci_cell(r.get(k), sign + (".3g" if k == "modes" else ".3f")) for k in CHOICE_KEYS]
        floor = ", ".join(f"{k} {v:.3g}" for k, v in r["floor"].items()) or "–"
        counts = ", ".join(f"{c} {n}" for c, n in (r["counts"] or {}).items()) or "–"
        lines.append(
            f"| {r['prompt']} | {r['of']} | {r['over']} | {r['runs']} | {r['n']} | "
            + " | ".join(cells)
            + f" | {floor} | {counts} |"
        )
    return lines


def ci_cell(ci, spec: str) -> str:
    """A (mean, lo, hi) as "mean [lo, hi]" in ``spec``; the mean alone when the interval is a
    point (one seed), "–" for None."""
    if ci is None:
        return "–"
    mean, lo, hi = ci
    return f"{mean:{spec}}" if lo == hi == mean else f"{mean:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def report(runs: dict, names, prompts, seeds: int, keys, teacher, outcomes):
    """The statistics part of a table, as markdown lines, and the ``intervals`` records of
    ``keys`` (scores in each run's metrics["truth"]): the means with their intervals, the
    paired differences, the distribution scores (``teacher``: prompt -> judged choices, or
    None to leave them out), then the failed runs. ``runs``: (prompt, guidance, seed) ->
    (folder, metrics) of the finished runs."""
    scores = {k: {key: m["truth"].get(k) for key, (_, m) in runs.items()} for k in keys}
    records = intervals(scores, names, prompts, seeds)
    lines = ["", "Mean over seeds [95 % bootstrap interval over seeds]:", ""]
    lines += interval_lines(records, paired=False)
    lines += ["", "Paired differences, seed by seed [95 % bootstrap interval]:", ""]
    lines += interval_lines(records, paired=True)
    choices = [] if teacher is None else choice_records(runs, names, prompts, seeds, teacher)
    if choices:
        lines += ["", f"{CHOICES_TITLE}:", "", *choice_lines(choices)]
    return lines + failed_lines(outcomes), records


CHOICES_TITLE = (
    "How the results spread over the prompt's choices (total variation distance to the "
    "truth, uniform, and to the teacher's own judged samples; modes: distinct (variant, colour))"
)
