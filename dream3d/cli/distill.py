"""`dream3d distill [train|sample]` and `dream3d bench distill`: image generators.

Parsers only: dream3d.pipelines.distill holds the defaults (DistillConfig) and runs the
experiments.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dream3d.cli import flag_overrides
from dream3d.guidance import GUIDANCES
from dream3d.pipelines.world import TEACHERS, teacher_help
from generators import IMAGE_GENERATORS
from scenes.prompts import parse_prompt

# the everyday flags of `dream3d distill` and the settings of the config tree they set; any
# other setting is `--set PATH=VALUE` (dream3d/pipelines/distill.py: DistillConfig)
DISTILL_FLAGS = {
    "generator": "generator.name",
    "guidance": "guidance.name",
    "teacher": "teacher.name",
    "model": "teacher.model",
    "steps": "train.steps",
    "seed": "train.seed",
    "lr": "train.lr",
    "batch": "train.batch",
    "device": "device",
    "cfg": "guidance.cfg_scale",
    "fake_steps": "guidance.fake_steps",
    "alpha": "guidance.alpha",
    "ema": "train.ema_halflife",
    "eval_n": "eval.n",
}


def add_parser(sub, positive_int) -> None:
    from dream3d.pipelines.distill import GENERATOR_DEFAULTS, GUIDANCE_DEFAULTS, DistillConfig

    config = DistillConfig()
    train = config.train  # distillation's defaults
    p = sub.add_parser(
        "distill",
        help="distill a one-step image generator, Dirac images or a generator of NeRFs (triplane) "
        "from the teacher by SDS, IKL, SiD or DMD",
        description="train (the default action): distills an image generator from the teacher, "
        "data-free, on every catalogue caption (or the four view captions of --prompt; the "
        "triplane generator of NeRFs keeps 12 prompts out, held_out_prompts()), and "
        "writes config.yaml, metrics.json (fd, precision, recall, object_acc, colour_acc, "
        "colour_tv, variant_tv against ground-truth renders), progress.png, samples.png, "
        "generator.safetensors and checkpoint.pt into --out. sample: draws --n images of "
        "--prompt in one step from --weights (default: the shipped IKL generator) into --out.",
    )
    p.add_argument("action", nargs="?", choices=["train", "sample"], default="train")
    p.add_argument("--prompt", help="a catalogue prompt, e.g. 'a red chair' (default: all)")
    p.add_argument(
        "--generator",
        choices=list(IMAGE_GENERATORS),
        help="default onestep; dirac: one image per caption; triplane: (caption, z) -> a NeRF "
        "in one step, trained through its renders (instant 3D; `dream3d generate` draws them)",
    )
    p.add_argument("--guidance", choices=list(GUIDANCES), help="default ikl")
    own = {k: d["train"] for k, d in GENERATOR_DEFAULTS.items()}
    for flag, key, text in (
        ("--steps", "steps", "generator steps"),
        ("--batch", "batch", "images (triplane: objects of 2 views) per step"),
        ("--lr", "lr", "generator learning rate"),
    ):
        kind = float if key == "lr" else positive_int
        default = ", ".join(
            [f"default {getattr(train, key):g}"] + [f"{k} {d[key]:g}" for k, d in own.items()]
        )
        p.add_argument(flag, type=kind, help=f"{text} ({default})")
    p.add_argument(
        "--fake-steps",
        type=positive_int,
        help="fake-score steps per generator step (default "
        + ", ".join(
            f"{n} {c.fake_steps}" for n, c in GUIDANCE_DEFAULTS.items() if hasattr(c, "fake_steps")
        )
        + ")",
    )
    p.add_argument("--alpha", type=float, help="SiD's alpha (default 1.2)")
    p.add_argument(
        "--ema",
        type=float,
        metavar="HALFLIFE",
        help="evaluate and save an EMA of the generator with this half-life in steps "
        "(default: the raw weights)",
    )
    p.add_argument(
        "--cfg",
        type=float,
        help="CFG scale (default "
        + ", ".join(f"{n} {c.cfg_scale:g}" for n, c in GUIDANCE_DEFAULTS.items())
        + "; triplane: as dream3d run, "
        + ", ".join(f"{n} {c().cfg_scale:g}" for n, (_, c) in GUIDANCES.items())
        + ")",
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {train.seed})")
    p.add_argument("--eval-n", type=positive_int, help=f"samples scored (default {config.eval.n})")
    teachers = [t for t in TEACHERS if not t.startswith("oracle")]  # oracles: one prompt each
    p.add_argument(
        "--teacher",
        choices=teachers,
        help=f"default tiny (triplane: tiny-camera). {teacher_help(teachers)}",
    )
    p.add_argument("--model", help="sd: a diffusers folder or a Hub id already in the cache")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default cpu")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="any setting of the config tree (see a run's config.yaml)",
    )
    p.add_argument("--config", type=Path, metavar="CONFIG_YAML", help="repeat a run's config")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument(
        "--out",
        type=Path,
        help="train: default outputs/distill-<generator>-"
        "<guidance>-<seed>; sample: default outputs/samples",
    )
    p.add_argument("--n", type=positive_int, default=16, help="sample: how many (default 16)")
    p.add_argument(
        "--weights",
        type=Path,
        help="sample: a generator.safetensors (default: the shipped one-step IKL generator)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def overrides(args) -> dict:
    """The tree the user set: --set pairs, then the flags (which win)."""
    return flag_overrides(args, DISTILL_FLAGS)


def run(args, check_writable) -> dict:
    if args.action == "sample":
        return _sample(args, check_writable)
    from dream3d.pipelines.distill import default_out, distill, resolve

    config = resolve(args.prompt, overrides(args), args.config)
    out = args.out or default_out(config)
    check_writable(out)
    metrics = distill(config, out, args.resume, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return metrics


def _sample(args, check_writable) -> dict:
    from dream3d.pipelines.distill import sample
    from dream3d.pipelines.text_to_3d import slug
    from dream3d.pipelines.world import save_grid

    if not args.prompt:
        raise ValueError("sample needs --prompt, e.g. --prompt 'a red chair'")
    out = args.out or Path("outputs/samples")
    check_writable(out)
    images, captions = sample(args.prompt, args.n, args.weights, args.seed or 0)
    path = out / f"{slug(args.prompt)}-onestep.png"
    save_grid(images, path)
    print(json.dumps({"captions": sorted(set(captions)), "n": len(images), "grid": str(path)}))
    return {"grid": str(path)}


def add_bench_parser(bsub, positive_int) -> None:
    q = bsub.add_parser(
        "distill",
        help="the image table: references, one-step IKL (raw, EMA), SDS, SiD, DMD, Dirac SDS, IKL",
        description="Distills each row's generator (one-step IKL with its raw weights and with "
        "an EMA of half-life 100 steps, SDS, SiD and DMD, Dirac SDS and IKL) on every "
        "catalogue caption with its defaults at training seeds 0..N-1, reusing finished runs "
        "in OUT, and scores them with the references (ground truth, the teacher's DDIM at 50, "
        "4 and 1 steps) on the same captions and sample count; writes OUT/distill.md (means "
        "over seeds with 95 % intervals, and each row minus one-step IKL seed by seed), "
        "distill.csv (one line per run) and distill.png.",
    )
    q.add_argument(
        "--seeds", type=positive_int, default=3, help="training seeds 0..N-1 per row (default 3)"
    )
    q.add_argument("--steps", type=positive_int, help="generator steps of every row's run")
    q.add_argument("--dirac-steps", type=positive_int, help="steps of the Dirac rows")
    q.add_argument("--eval-n", type=positive_int, help="samples scored per row")
    q.add_argument(
        "--rows",
        nargs="+",
        help="distilled rows to run: one-step-ikl one-step-ikl-ema100 one-step-sds one-step-sid "
        "one-step-dmd dirac-sds dirac-ikl (default all; one-step IKL and SDS always, as the "
        "picture shows them and the differences are against IKL)",
    )
    q.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: table the runs already finished in OUT (a row's seed count says "
        "how many), e.g. cells run by hand or by several processes at once",
    )
    q.add_argument("--out", type=Path, default=Path("outputs/bench-distill"))
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def bench(args, check_writable) -> dict:
    from dream3d.pipelines.bench_distill import bench_distill

    if args.action == "amortised":
        return bench_amortised(args, check_writable)
    check_writable(args.out)
    rows = bench_distill(
        args.out,
        args.steps,
        args.dirac_steps,
        args.eval_n,
        not args.quiet,
        args.rows,
        args.seeds,
        args.finished_only,
    )
    print((args.out / "distill.md").read_text())
    print(f"wrote {args.out}/distill.md and distill.csv", file=sys.stderr)
    return {"rows": rows}


def add_generate_parser(sub, positive_int) -> None:
    g = sub.add_parser(
        "generate",
        help="instant 3D: NeRFs of a prompt from a triplane generator, in one pass each",
        description="Draws --n objects of --prompt from a triplane generator of NeRFs "
        "(`dream3d distill --generator triplane`; default: the shipped IKL one) and writes, "
        "per z, what `dream3d run` writes of its NeRF into OUT/z-<k>/ (views.png, turntable, "
        "mesh.glb/obj/ply, metrics.json against the truth), then OUT/views.png, the turntables "
        "tiled and OUT/metrics.json (mean scores, their spread over z, time per object).",
    )
    g.add_argument("--prompt", required=True, help="a catalogue prompt, e.g. 'a red chair'")
    g.add_argument("--n", type=positive_int, default=4, help="objects, one z each (default 4)")
    g.add_argument("--weights", type=Path, help="a triplane generator.safetensors")
    g.add_argument("--seed", type=int, default=0, help="seeds the z's (default 0)")
    g.add_argument("--out", type=Path, help="default outputs/generate-<prompt>-<seed>")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def generate(args, check_writable) -> dict:
    from dream3d.pipelines.generate import generate
    from dream3d.pipelines.text_to_3d import slug

    if not args.prompt.strip():
        raise ValueError("the prompt is empty; try e.g. 'a red chair'")
    parse_prompt(args.prompt)  # outside the catalogue: one line, before anything is written
    out = args.out or Path("outputs") / f"generate-{slug(args.prompt)}-{args.seed}"
    check_writable(out)
    metrics = generate(args.weights, args.prompt, args.n, out, args.seed, not args.quiet)
    shown = {k: v for k, v in metrics.items() if k != "z_truth"}
    print(json.dumps(shown, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return metrics


def add_bench_amortised_parser(bsub, positive_int) -> None:
    from dream3d.pipelines.bench_amortised import RUN_PROMPTS

    q = bsub.add_parser(
        "amortised",
        help="instant 3D: triplane generators of NeRFs against the truth and per-prompt runs",
        description="Scores --n objects per caption of each triplane generator (by guidance; "
        "default the shipped IKL and SDS ones) as `dream3d run` NeRFs are scored, on held-in "
        "captions (each object colourless and in one colour) and the 12 held-out ones; the "
        "spread of each caption's objects over its choices; per-prompt `dream3d run` NeRFs of "
        "a few of the same captions at --run-seeds seeds beside them (reused from OUT/runs). "
        "Writes OUT/amortised.md, amortised.csv (one line per object) and amortised.png.",
    )
    q.add_argument(
        "--weights",
        nargs="+",
        metavar="GUIDANCE=FILE",
        help="generators to score, e.g. ikl=a/generator.safetensors sds=b/generator.safetensors "
        "(default: the shipped triplane-ikl and triplane-sds)",
    )
    q.add_argument(
        "--n", type=positive_int, default=8, help="objects (z's) per caption (default 8)"
    )
    q.add_argument("--captions", type=Path, help="one catalogue prompt per line (default: 36)")
    q.add_argument(
        "--run-prompts",
        nargs="*",
        help=f"prompts of the per-prompt runs (default: {', '.join(RUN_PROMPTS)}; none: no runs)",
    )
    q.add_argument(
        "--run-seeds", type=positive_int, default=3, help="seeds per prompt run (default 3)"
    )
    q.add_argument("--seed", type=int, default=0, help="seeds the z's (default 0)")
    q.add_argument("--out", type=Path, default=Path("outputs/bench-amortised"))
    q.add_argument("--quiet", action="store_true", help="no progress bars")


def bench_amortised(args, check_writable) -> dict:
    from dream3d.pipelines.bench import read_prompts
    from dream3d.pipelines.bench_amortised import bench_amortised
    from dream3d.pipelines.generate import SHIPPED_TRIPLANE

    weights = dict(SHIPPED_TRIPLANE)
    if args.weights:
        pairs = [w.partition("=") for w in args.weights]
        bad = [w for w, (g, eq, f) in zip(args.weights, pairs) if not (eq and g and f)]
        if bad:
            raise ValueError(f"--weights takes GUIDANCE=FILE, got {' '.join(bad)}")
        weights = {g: Path(f) for g, _, f in pairs}
    captions = read_prompts(args.captions) if args.captions else None
    for prompt in [*(captions or []), *(args.run_prompts or [])]:
        parse_prompt(prompt)  # outside the catalogue: one line, before anything runs
    check_writable(args.out)
    result = bench_amortised(
        weights, args.out, args.n, captions, args.run_prompts, args.run_seeds,
        not args.quiet, args.seed,
    )  # fmt: skip
    print("\n".join(result["tables"]))
    print(f"wrote {args.out}/amortised.md, amortised.csv and amortised.png", file=sys.stderr)
    return result
