"""`dream3d` command line. Bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import tempfile
from pathlib import Path

from dream3d.cli import distill as distill_cli
from dream3d.cli import flag_overrides
from dream3d.cli import teacher as teacher_cli
from dream3d.diffusion import WEIGHTINGS, check_t_range
from dream3d.guidance import GUIDANCES, PAIR
from dream3d.pipelines.world import TEACHERS, teacher_help
from dream3d.train import NonFiniteError, TrainConfig

EXIT_BAD_INPUT = 2
TRAIN = TrainConfig()  # the defaults the help texts quote


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535, got {value}")
    return value


def _t_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
        return check_t_range((lo, hi))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected T_MIN,T_MAX in (0, 1]: {err}") from None


def _lab_parser(sub) -> None:
    lab = sub.add_parser(
        "lab",
        help="measure the Diff-Instruct claims on exact Gaussian-mixture teachers",
        description="Runs one experiment and writes metrics.json and PNG plots into --out.",
    )
    lab.add_argument(
        "experiment",
        choices=["dirac", "modes", "misaligned"],
        help="dirac: IKL with a point-mass fake score equals SDS; "
        "modes: mode coverage of IKL vs SDS on an 8-mode mixture; "
        "misaligned: plain KL (t ~ 0) vs the IKL integral on a thin ring",
    )
    lab.add_argument("--out", type=Path, help="output folder (default outputs/lab-EXPERIMENT)")
    lab.add_argument("--steps", type=_positive_int, help="generator steps per run")
    lab.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    lab.add_argument("--teacher", choices=["ring8", "grid25"], help="mixture for `modes`")
    lab.add_argument(
        "--guidance",
        nargs="+",
        choices=sorted(GUIDANCES),
        help="guidances to run (modes; misaligned: beyond its KL and IKL arms, e.g. sid dmd)",
    )
    lab.add_argument("--weighting", choices=WEIGHTINGS, help="w(t) for every run")
    lab.add_argument("--fake-steps", type=_positive_int, help="k fake-score steps per step")
    lab.add_argument("--t-range", type=_t_range, help="T_MIN,T_MAX of the IKL runs")
    lab.add_argument("--lr", type=float, help="generator learning rate")
    lab.add_argument("--quiet", action="store_true", help="no progress bars")


# The everyday flags of the NeRF commands and the settings of the config tree they set; any
# other setting is `--set PATH=VALUE` (dream3d/pipelines/text_to_3d.py: TextTo3DConfig).
RUN_FLAGS = {
    "guidance": "guidance.name",
    "teacher": "teacher.name",
    "weights": "teacher.weights",
    "model": "teacher.model",
    "steps": "train.steps",
    "seed": "train.seed",
    "device": "device",
    "cfg": "guidance.cfg_scale",
    "lr": "train.lr",
    "batch": "train.batch",
    "fake_steps": "guidance.fake_steps",
    "t_range": "guidance.t_range",
    "particles": "particles",
}
SIDE_FLAGS = ("guidance", "seed")  # set by compare and bench for each run, not by the user


def _run_parser(sub) -> None:
    run = sub.add_parser(
        "run",
        help="train a NeRF from a prompt with SDS or IKL; views, video, mesh and scores",
        description="Trains a NeRF on the teacher (the embedded tiny one by default) and writes "
        "config.yaml (the whole resolved config), metrics.json, progress.png, views.png, "
        "turntable.mp4/.gif and mesh.glb/.obj/.ply into --out. Settings: the defaults, then "
        "the preset (scenes/presets/*.yaml) or --config, then --set, then the flags below.",
    )
    run.add_argument("--prompt", help='e.g. "a chair" or "a red chair" (or from --config)')
    run.add_argument("--guidance", choices=list(GUIDANCES), help="default ikl")
    run.add_argument("--seed", type=int, help=f"random seed (default {TRAIN.seed})")
    run.add_argument(
        "--out", type=Path, help="default outputs/<prompt>-<guidance>-<seed>[-<K>particles]"
    )
    run.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    run.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG_YAML",
        help="repeat a run: its OUT/config.yaml instead of a preset (flags still apply)",
    )
    _nerf_options(run)
    run.add_argument("--lr", type=float, help=f"field learning rate (default {TRAIN.lr:g})")
    run.add_argument("--batch", type=_positive_int, help=f"views per step (default {TRAIN.batch})")
    run.add_argument("--fake-steps", type=_positive_int, help="IKL fake-score steps per step")
    run.add_argument("--t-range", type=_t_range, help="T_MIN,T_MAX fractions of T")
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def _teacher_options(p) -> None:
    p.add_argument(
        "--teacher", choices=list(TEACHERS), help=f"default tiny-camera. {teacher_help()}"
    )
    p.add_argument("--weights", help="tiny teacher file (default: the shipped one)")
    p.add_argument(
        "--model",
        help="sd and if: a Hub id already in the local Hugging Face cache, or a diffusers "
        "folder (default stable-diffusion-v1-5/stable-diffusion-v1-5 for sd, "
        "DeepFloyd/IF-I-XL-v1.0 for if); nothing is downloaded",
    )


def _nerf_options(p) -> None:
    """The settings every NeRF command shares with `dream3d run`."""
    _teacher_options(p)
    p.add_argument(
        "--steps", type=_positive_int, help=f"NeRF steps of every run (default {TRAIN.steps})"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="default cpu")
    p.add_argument(
        "--particles",
        type=_positive_int,
        metavar="K",
        help="K NeRFs trained together per run (default 1): IKL fits one fake score on all "
        "their renders, SDS trains each alone; each one's outputs go to OUT/particle-<k>/",
    )
    p.add_argument("--preset", help="cpu | cuda (scenes/presets) or a .yaml file")
    p.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance scale (default "
        + ", ".join(f"{n} {c().cfg_scale:g}" for n, (_, c) in GUIDANCES.items())
        + ")",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="any setting of the config tree, e.g. --set guidance.cfg_scale=30 "
        "--set nerf.render.samples=64 (repeatable; see a run's config.yaml for every path)",
    )


def _overrides(args, skip=()) -> dict:
    """The tree the user set: --set pairs, then the flags (which win)."""
    return flag_overrides(args, RUN_FLAGS, skip)


def _resolve(args, prompt, skip=()):
    """The run config and the user's overrides; prints how an unusual prompt was read."""
    from dream3d.pipelines.text_to_3d import read_prompt, resolve

    overrides = _overrides(args, skip)
    config = resolve(prompt, args.preset, overrides, getattr(args, "config", None))
    spec = read_prompt(config.prompt)
    if spec.mapped_from:
        print(f"dream3d: {spec.mapped_from!r} read as {spec.text!r}", file=sys.stderr)
    return config, overrides


def _compare_parser(sub) -> None:
    cmp = sub.add_parser(
        "compare",
        help="SDS and IKL on the same prompt and seeds: side-by-side image, video and table",
        description="Runs `dream3d run` for each guidance and seed into OUT/<guidance>-<seed>/ "
        "and writes compare.png, compare.mp4/.gif and compare.md/.csv into OUT. --cfg and "
        "--set guidance.* apply to every guidance that has the setting.",
    )
    cmp.add_argument("--prompt", required=True, help='e.g. "a chair"')
    cmp.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 (default 3)")
    _nerf_options(cmp)
    _guidances_option(cmp)
    _sweep_options(cmp)
    cmp.add_argument("--out", type=Path, help="default outputs/compare-<prompt>[-<K>particles]")
    cmp.add_argument("--quiet", action="store_true", help="no progress bars")


def _guidances_option(p) -> None:
    """Which guidances compare and the benches run, side by side (default SDS and IKL)."""
    p.add_argument(
        "--guidance",
        nargs="+",
        choices=list(GUIDANCES),
        default=list(PAIR),
        metavar="NAME",
        help=f"guidances to run: {', '.join(GUIDANCES)} (default {' '.join(PAIR)})",
    )


def _sweep_options(p) -> None:
    """How the runs of compare and bench quality are spread (dream3d/pipelines/sweep.py)."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run each run as a Ray task: on a Ray started here (no ADDRESS, or RAY_ADDRESS), "
        "or on the cluster at ADDRESS (HOST:PORT, ray://HOST:PORT, auto); needs "
        'pip install -e ".[sweep]"',
    )
    p.add_argument(
        "--ray-cpus",
        type=_positive_int,
        metavar="N",
        help="CPUs (and torch threads) per Ray task (default: this process's torch threads, "
        "so the numbers equal a serial run's); a GPU each with --device cuda",
    )


def compare_nerf(args) -> dict:
    from dream3d.pipelines.compare import compare, sides
    from dream3d.pipelines.text_to_3d import particles_suffix, slug

    config, overrides = _resolve(args, args.prompt, skip=SIDE_FLAGS)
    guidances = sides(overrides.get("guidance", {}), args.guidance)
    out = args.out or Path("outputs") / f"compare-{slug(args.prompt)}{particles_suffix(config)}"
    _check_writable(out)
    sweep = {"ray": args.ray, "cpus": args.ray_cpus}
    rows = compare(config, list(range(args.seeds)), out, not args.quiet, guidances, **sweep)
    print((out / "compare.md").read_text())
    print(f"wrote {out}", file=sys.stderr)
    _check_failures(rows)
    return {"rows": rows}


class RunsFailed(RuntimeError):
    """Some runs of a sweep failed (the others' table was written)."""


def _check_failures(rows: list[dict]) -> None:
    failed = [r for r in rows if "error" in r]
    if failed:
        first = failed[0]
        raise RunsFailed(f"{len(failed)} run(s) failed, first {first['out']}: {first['error']}")


def _bench_parser(sub) -> None:
    from dream3d.pipelines.bench import BENCHMARKS

    bench = sub.add_parser(
        "bench",
        help="benchmarks: ground-truth quality of SDS vs IKL (3D, and images: distill), speed",
    )
    bsub = bench.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, (_, text) in BENCHMARKS.items():
        q = bsub.add_parser(name, help=text.splitlines()[0], description=text)
        q.add_argument("--prompts", type=Path, help="one prompt per line (default: 4)")
        q.add_argument(
            "--seeds", type=_positive_int, default=3, help="seeds 0..N-1 per prompt (default 3)"
        )
        _nerf_options(q)
        _guidances_option(q)
        _sweep_options(q)
        q.add_argument("--out", type=Path, default=Path(f"outputs/bench-{name}"))
        q.add_argument("--quiet", action="store_true", help="no progress bars")
    speed = bsub.add_parser(
        "speed",
        help="where a run's time goes: per-step phases, output phase, peak memory, IKL/SDS",
        description="Runs `dream3d run` once per guidance (the defaults unless options say "
        "otherwise), each in a fresh process, timing the training step's phases (render "
        "forward, render backward with normals, teacher, fake-score update, optimizer) and "
        "the output phase's parts; writes OUT/speed.md and speed.csv.",
    )
    speed.add_argument("--prompt", default="a chair", help='default "a chair"')
    _guidances_option(speed)
    _nerf_options(speed)
    speed.add_argument("--out", type=Path, default=Path("outputs/bench-speed"))
    speed.add_argument("--quiet", action="store_true", help="no progress bars")
    _bench_gpu_parser(bsub)
    distill_cli.add_bench_parser(bsub, _positive_int)
    distill_cli.add_bench_amortised_parser(bsub, _positive_int)


def _bench_gpu_parser(bsub) -> None:
    from dream3d.pipelines.bench_gpu import SECTIONS

    gpu = bsub.add_parser(
        "gpu",
        help="everything a CUDA machine can measure, written to docs/gpu.md",
        description="On a CUDA machine: runs the requires_cuda tests (from a checkout), times "
        "the parts of a step (SDS, IKL with a full copy and with LoRA, for the tiny teacher "
        "and SD-1.5- and IF-I-XL-shaped teachers with random weights; the hash grid per "
        "backend; a 4096-ray render), then short `dream3d run --device cuda` runs of each "
        "guidance against the CPU defaults, and writes one markdown report with the date, "
        "GPU and versions. A section that fails is a line of the report; the others run.",
    )
    gpu.add_argument("--out", type=Path, default=Path("docs/gpu.md"), help="default docs/gpu.md")
    gpu.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="default all"
    )
    gpu.add_argument(
        "--steps", type=_positive_int, default=300, help="steps of each CUDA run (default 300)"
    )
    gpu.add_argument(
        "--cpu-steps",
        type=_positive_int,
        default=40,
        help="steps of each CPU-default run on this machine's CPU (default 40)",
    )
    gpu.add_argument(
        "--work", type=Path, default=Path("outputs/bench-gpu"), help="where the runs go"
    )
    gpu.add_argument("--quiet", action="store_true", help="no progress bars")


def bench(args) -> dict:
    from dream3d.pipelines.bench import BENCHMARKS, read_prompts
    from dream3d.pipelines.compare import sides

    if args.action == "speed":
        return bench_speed(args)
    if args.action == "gpu":
        return bench_gpu(args)
    if args.action not in BENCHMARKS:  # the image benchmark has options of its own
        return distill_cli.bench(args, _check_writable)

    prompts = read_prompts(args.prompts)
    # every prompt is resolved (a bad one fails before any run starts); the first is the base
    config, overrides = [_resolve(args, prompt, skip=SIDE_FLAGS) for prompt in prompts][0]
    guidances = sides(overrides.get("guidance", {}), args.guidance)
    _check_writable(args.out)
    run_bench, _ = BENCHMARKS[args.action]
    sweep = {"ray": args.ray, "cpus": args.ray_cpus}
    rows = run_bench(config, prompts, args.seeds, args.out, not args.quiet, guidances, **sweep)
    print((args.out / f"{args.action}.md").read_text())
    print(f"wrote {args.out}/{args.action}.md and {args.action}.csv", file=sys.stderr)
    _check_failures(rows)
    return {"rows": rows}


def bench_speed(args) -> dict:
    from dream3d.pipelines.bench_speed import speed
    from dream3d.pipelines.compare import sides

    config, overrides = _resolve(args, args.prompt, skip=SIDE_FLAGS)
    guidances = sides(overrides.get("guidance", {}), args.guidance)
    _check_writable(args.out)
    rows = speed(config, guidances, args.out, not args.quiet, parts=config.device == "cuda")
    print((args.out / "speed.md").read_text())
    print(f"wrote {args.out}/speed.md and speed.csv", file=sys.stderr)
    return {"rows": rows}


def bench_gpu(args) -> dict:
    from dream3d.pipelines.bench_gpu import report
    from dream3d.pipelines.world import check_device

    check_device("cuda", "dream3d bench gpu")
    _check_writable(args.out.parent)
    _check_writable(args.work)
    text = report(args.out, args.only, args.steps, args.cpu_steps, not args.quiet, args.work)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return {"report": text}


def run_nerf(args) -> dict:
    from dream3d.pipelines.text_to_3d import default_out, text_to_3d

    if args.prompt is None and args.config is None:
        raise ValueError("the prompt is missing: --prompt TEXT (or --config OUT/config.yaml)")
    config, _ = _resolve(args, args.prompt)
    out = args.out or default_out(config)
    _check_writable(out)
    metrics = text_to_3d(config, out, args.resume, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return metrics


def _app_parser(sub) -> None:
    app = sub.add_parser(
        "app",
        help="the Gradio app: SDS and IKL side by side in the browser",
        description="Serves a page that runs `dream3d compare` for one prompt and seed, shows "
        "both runs live, then their turntables, meshes (glb/obj/ply) and scores. Each job's "
        "files go to OUT/compare-<prompt>-<seed>-<time>/. `python app.py` takes the same options.",
    )
    app.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    app.add_argument("--port", type=_port, default=7860, help="1-65535 (default 7860)")
    app.add_argument("--share", action="store_true", help="a public gradio.live link (internet)")
    app.add_argument(
        "--concurrency", type=_positive_int, default=1, help="runs training at once (default 1)"
    )
    app.add_argument(
        "--queue",
        type=_positive_int,
        default=16,
        help="requests that may wait for a slot; more are told the app is busy (default 16)",
    )
    app.add_argument("--out", type=Path, default=Path("outputs/app"), help="default outputs/app")
    app.add_argument("--preset", help="run preset: cpu | cuda or a .yaml file (default: by device)")
    app.add_argument("--device", choices=["cpu", "cuda"], help="default cuda when available")


def serve_app(args) -> None:
    from dream3d.app import AppConfig, serve
    from dream3d.pipelines.text_to_3d import resolve
    from dream3d.pipelines.world import check_device

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError('the app needs gradio: pip install -e ".[app]"') from None
    app = AppConfig(args.out, args.preset, args.concurrency, queue=args.queue)
    if args.device:
        app.device = args.device
    check_device(app.device)
    resolve("a chair", app.preset, {"device": app.device})  # a bad preset fails here
    _check_writable(args.out)
    serve(app, args.host, args.port, args.share)


def build_parser() -> Parser:
    parser = Parser(
        prog="dream3d",
        description="SDS vs IKL (Diff-Instruct) with pretrained and exact diffusion teachers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _lab_parser(sub)
    _run_parser(sub)
    _compare_parser(sub)
    _bench_parser(sub)
    _app_parser(sub)
    distill_cli.add_parser(sub, _positive_int)
    distill_cli.add_generate_parser(sub, _positive_int)
    teacher_cli.add_parsers(sub, _positive_int)
    return parser


def run_lab(args) -> dict:
    from dream3d.pipelines.lab import LABS, LabOptions

    options = LabOptions(
        out=args.out or Path(f"outputs/lab-{args.experiment}"),
        steps=args.steps,
        seed=args.seed,
        teacher=args.teacher,
        guidance=args.guidance or ["sds", "ikl"],
        weighting=args.weighting,
        fake_steps=args.fake_steps,
        t_range=args.t_range,
        lr=args.lr,
        progress=not args.quiet,
    )
    _check_writable(options.out)
    metrics = LABS[args.experiment](options)
    print(json.dumps(_without_curves(metrics), indent=2))
    print(f"wrote {options.out}/metrics.json", file=sys.stderr)
    return metrics


def _without_curves(metrics: dict) -> dict:
    """metrics.json as printed: per-step curves stay in the file."""
    return {
        k: _without_curves(v) if isinstance(v, dict) else v
        for k, v in metrics.items()
        if "curve" not in k
    }


def os_error(err: OSError) -> str:
    """One line for an OSError: the path and the cause (what a checkpoint write left: the
    last good checkpoint)."""
    where = f"{err.filename}: " if err.filename else ""
    line = f"{where}{err.strerror or err}"
    if err.errno == errno.ENOSPC:
        line += " (a checkpointed run keeps its last checkpoint: free space, then --resume)"
    return line


_MADE: list[Path] = []  # folders _check_writable made for this command, deepest first


def _check_writable(out: Path) -> None:
    missing = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        _MADE.extend(missing)
        tempfile.TemporaryFile(dir=out).close()  # a name of its own: commands may share OUT
    except OSError as err:
        raise ValueError(f"cannot write to {out}: {err.strerror}") from None


def _unmake() -> None:
    """The folders a command that failed on its input made, removed while they are empty: a
    refused command leaves the disk as it found it."""
    for path in _MADE:
        try:
            path.rmdir()
        except OSError:  # something was written there after all: keep it and its parents
            break
    _MADE.clear()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _MADE.clear()
    try:
        if args.command == "lab":
            run_lab(args)
        elif args.command == "run":
            run_nerf(args)
        elif args.command == "compare":
            compare_nerf(args)
        elif args.command == "bench":
            bench(args)
        elif args.command == "app":
            serve_app(args)
        elif args.command == "distill":
            distill_cli.run(args, _check_writable)
        elif args.command == "generate":
            distill_cli.generate(args, _check_writable)
        else:
            if getattr(args, "out", None) is not None:
                _check_writable(args.out)
            result = teacher_cli.run(args)
            print(json.dumps(_without_curves(result), indent=2))
    except ValueError as err:
        _unmake()
        print(f"dream3d: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # the disk, not the input: a full disk, a folder made read-only
        _unmake()
        print(f"dream3d: error: {os_error(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteError as err:
        print(f"dream3d: stopped: {err}", file=sys.stderr)
        return 1
    except RunsFailed as err:
        print(f"dream3d: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dream3d: interrupted (a checkpointed run goes on with --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
