"""`dream3d teacher train|sample|eval|check-cameras`, `dream3d judge train`: embedded teachers.

Parsers only: the defaults are the job dataclasses' of dream3d.pipelines.teacher (and
teacher_check), which run the experiments.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from dream3d.cameras import VIEWS
from dream3d.pipelines.teacher import (
    DEVICES,
    EMBEDDED,
    PREDICTIONS,
    SIZES,
    EvalJob,
    JudgeTrainJob,
    SampleJob,
    SamplingConfig,
    TinyTrainJob,
    check_channels,
    evaluate,
    sample,
    train_judge,
    train_tiny,
)
from dream3d.pipelines.teacher_check import CameraCheckJob, check_cameras, check_table
from scenes.catalogue import COLOURS, OBJECTS


def add_parsers(sub, positive_int) -> None:
    _teacher_parsers(sub, positive_int)
    judge = sub.add_parser("judge", help="the object/colour classifier that judges samples")
    jsub = judge.add_subparsers(dest="action", required=True, parser_class=type(judge))
    jt = jsub.add_parser("train", help="train the judge on ground-truth renders")
    jt.add_argument("--out", type=Path, default=JudgeTrainJob.out, help="run folder")
    jt.add_argument("--steps", type=positive_int, default=JudgeTrainJob.steps)
    jt.add_argument("--batch", type=positive_int, default=JudgeTrainJob.batch)
    jt.add_argument("--seed", type=int, default=JudgeTrainJob.seed)
    jt.add_argument(
        "--held-out",
        type=positive_int,
        default=JudgeTrainJob.held_out,
        help=f"fresh renders it is scored on (default {JudgeTrainJob.held_out})",
    )
    jt.add_argument("--quiet", action="store_true")


def _teacher_parsers(sub, positive_int) -> None:
    teacher = sub.add_parser("teacher", help="train, sample and evaluate the embedded teachers")
    tsub = teacher.add_subparsers(dest="action", required=True, parser_class=type(teacher))
    _train_parser(tsub, positive_int)

    _sample_parser(tsub, positive_int)

    ev = tsub.add_parser("eval", help="judge DDIM samples for every catalogue prompt and view")
    _sampling_args(ev)
    ev.add_argument("--n", type=positive_int, default=EvalJob.n, help="samples per prompt and view")
    ev.add_argument("--out", type=Path, default=EvalJob.out)
    ev.add_argument(
        "--silhouettes",
        action="store_true",
        help="also score each sample's silhouette against the truth at its best-matching pose "
        "(the most a NeRF distilled from this teacher can reach; ~1 min more)",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    _check_parser(tsub, positive_int)


def _sample_parser(tsub, positive_int) -> None:
    samples = tsub.add_parser(
        "sample", help="a PNG grid of DDIM samples for one prompt and view (or exact camera)"
    )
    _sampling_args(samples)
    samples.add_argument("--prompt", required=True, help='e.g. "a red chair"')
    samples.add_argument("--view", choices=VIEWS, help="default: the camera's own view, else front")
    samples.add_argument("--n", type=positive_int, default=SampleJob.n, help="how many samples")
    samples.add_argument("--out", type=Path, default=SampleJob.out)
    samples.add_argument(
        "--azimuth",
        type=float,
        metavar="DEG",
        help="draw every sample at this exact camera (with --elevation; 0 is the front, 90 the "
        "object's left): a camera teacher is told it, a text-only one hears its view caption",
    )
    samples.add_argument("--elevation", type=float, metavar="DEG", help="degrees above the horizon")
    samples.add_argument(
        "--radius",
        type=float,
        metavar="R",
        help="the camera's distance (default: the middle of the world's 2.6..3.0)",
    )


def _check_parser(tsub, positive_int) -> None:
    job = CameraCheckJob
    check = tsub.add_parser(
        "check-cameras",
        help="score teachers' samples at exact cameras against the true renders there",
        description="For every coloured catalogue prompt and --cameras exact cameras from the "
        "world's distribution (the same for every teacher), draws a DDIM sample per camera "
        "with each teacher and scores it against the true render at that camera: silhouette "
        "IoU (best over the object's variants) and the judge's colour. Writes metrics.json, "
        "check.md, samples.csv and samples.png (truth | each teacher) into --out.",
    )
    check.add_argument(
        "--teachers",
        nargs="+",
        choices=EMBEDDED,
        default=list(job.teachers),
        help="default " + " ".join(job.teachers),
    )
    check.add_argument(
        "--cameras",
        type=positive_int,
        default=job.cameras,
        help=f"exact cameras per prompt (default {job.cameras}: ~5 min a tiny teacher on a CPU "
        "core)",
    )
    check.add_argument("--objects", nargs="+", choices=OBJECTS, default=list(job.objects))
    check.add_argument("--colours", nargs="+", choices=list(COLOURS), default=list(job.colours))
    check.add_argument("--weights", type=Path, help="tiny teacher file (default: the shipped one)")
    check.add_argument(
        "--camera-weights", type=Path, help="tiny-camera teacher file (default: the shipped one)"
    )
    config = SamplingConfig
    check.add_argument("--steps", type=int, default=config.steps, help="DDIM steps")
    check.add_argument("--cfg", type=float, default=config.cfg, help="classifier-free guidance")
    check.add_argument("--seed", type=int, default=config.seed, help="x_T (cameras: seed + 1)")
    check.add_argument("--size", type=int, choices=SIZES, default=config.size, help="oracle size")
    check.add_argument("--out", type=Path, default=job.out)
    check.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_parser(tsub, positive_int) -> None:
    job = TinyTrainJob
    train = tsub.add_parser("train", help="train the tiny pixel-space teacher on rendered views")
    train.add_argument("--out", type=Path, default=job.out, help="run folder")
    train.add_argument("--size", type=int, choices=SIZES, default=job.size, help="image side")
    train.add_argument("--steps", type=positive_int, default=job.steps, help="optimizer steps")
    train.add_argument("--batch", type=positive_int, default=job.batch, help="images per step")
    train.add_argument("--lr", type=float, default=job.lr, help="AdamW learning rate")
    train.add_argument("--warmup", type=int, default=job.warmup, help="learning-rate warm-up steps")
    train.add_argument(
        "--channels",
        type=_channels,
        default=job.channels,
        metavar="C1,C2,...",
        help=f"UNet width per resolution (default {_joined(job.channels)}: 2.0M parameters)",
    )
    train.add_argument(
        "--save-every", type=positive_int, default=job.save_every, help="checkpoint period"
    )
    train.add_argument("--device", choices=DEVICES, default=job.device)
    train.add_argument("--seed", type=int, default=job.seed)
    train.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    train.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from this teacher's UNet weights (same --channels and --size) instead of "
        "random ones, e.g. to fine-tune an eps-prediction teacher into v-prediction",
    )
    train.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        default=job.prediction,
        help="what the UNet learns to output",
    )
    train.add_argument(
        "--camera",
        action="store_true",
        help="a camera-conditioned teacher (MVDream): each render's exact camera goes through an "
        "MLP added to the timestep embedding, its last layer zero, so with --init it starts as "
        "that teacher; cameras are dropped 10%% of the time, so it also samples without one",
    )
    train.add_argument(
        "--camera-harmonics",
        type=positive_int,
        default=job.camera_harmonics,
        metavar="K",
        help="with --camera, the MLP also reads cos(k az), sin(k az) for k = 2..K (default 1: "
        "the pose alone; 4 lets a cube's look repeat every 90 degrees); with --init from a "
        "camera teacher with fewer, the new inputs start at zero",
    )
    train.add_argument(
        "--ema",
        type=float,
        default=TinyTrainJob.ema,
        help="EMA decay of the saved weights (default 0.999; 0.995 for a short fine-tune)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")


def _joined(channels: tuple[int, ...]) -> str:
    return ",".join(map(str, channels))


def _channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        channels = ()
    try:
        return check_channels(channels)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}, got {text!r}") from None


def _sampling_args(p) -> None:
    config = SamplingConfig
    p.add_argument("--teacher", choices=EMBEDDED, default=config.teacher)
    p.add_argument(
        "--weights", type=Path, help="tiny(-camera) teacher file (default: the shipped one)"
    )
    p.add_argument("--steps", type=int, default=config.steps, help="DDIM steps")
    p.add_argument("--cfg", type=float, default=config.cfg, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=config.seed)
    p.add_argument("--size", type=int, choices=SIZES, default=config.size, help="oracle bank size")


def run(args: argparse.Namespace) -> dict:
    """Build the job of ``dream3d <command> <action>`` from the flags and run its pipeline."""
    progress = not getattr(args, "quiet", False)
    if args.command == "judge":
        return train_judge(_job(JudgeTrainJob, args, progress=progress))
    if args.action == "train":
        return train_tiny(_job(TinyTrainJob, args, progress=progress))
    if args.action == "check-cameras":
        return _check(args, progress)
    sampling = _job(SamplingConfig, args)
    if args.action == "sample":
        return sample(_job(SampleJob, args, sampling=sampling))
    return evaluate(_job(EvalJob, args, sampling=sampling, progress=progress))


def _check(args: argparse.Namespace, progress: bool) -> dict:
    """Run the camera check, print its table; each teacher's headline numbers."""
    sampling = SamplingConfig(steps=args.steps, cfg=args.cfg, seed=args.seed, size=args.size)
    metrics = check_cameras(_job(CameraCheckJob, args, sampling=sampling, progress=progress))
    print(check_table(metrics))
    keep = ("iou", "colour", "n", "seconds")
    headline = {t: {k: m[k] for k in keep} for t, m in metrics["teachers"].items()}
    return headline | {"wrote": str(args.out)}


def _job(cls, args: argparse.Namespace, **given):
    """``cls`` from the flags named as its fields, and ``given``."""
    flags = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**(flags | given))
