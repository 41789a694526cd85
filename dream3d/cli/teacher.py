"""`dream3d teacher train|sample|eval` and `dream3d judge train`: the embedded teachers."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dream3d.cameras import VIEWS


def add_parsers(sub, positive_int) -> None:
    teacher = sub.add_parser("teacher", help="train, sample and evaluate the embedded teachers")
    tsub = teacher.add_subparsers(dest="action", required=True, parser_class=type(teacher))
    train = tsub.add_parser("train", help="train the tiny pixel-space teacher on rendered views")
    train.add_argument("--out", type=Path, default=Path("outputs/teacher"), help="run folder")
    train.add_argument("--size", type=int, choices=[32, 64], default=32, help="image side")
    train.add_argument("--steps", type=positive_int, default=20_000, help="optimizer steps")
    train.add_argument("--batch", type=positive_int, default=64, help="images per step")
    train.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate")
    train.add_argument("--warmup", type=int, default=500, help="learning-rate warm-up steps")
    train.add_argument(
        "--channels",
        type=_channels,
        default=(32, 64, 64),
        metavar="C1,C2,...",
        help="UNet width per resolution (default 32,64,64: 2.0M parameters)",
    )
    train.add_argument("--save-every", type=positive_int, default=1000, help="checkpoint period")
    train.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    train.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from this teacher's UNet weights (same --channels and --size) instead of "
        "random ones, e.g. to fine-tune an eps-prediction teacher into v-prediction",
    )
    train.add_argument(
        "--prediction", choices=["v", "eps"], default="v", help="what the UNet learns to output"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = tsub.add_parser("sample", help="a PNG grid of DDIM samples for one prompt and view")
    _sampling_args(sample)
    sample.add_argument("--prompt", required=True, help='e.g. "a red chair"')
    sample.add_argument("--view", choices=VIEWS, default="front")
    sample.add_argument("--n", type=positive_int, default=16, help="how many samples")
    sample.add_argument("--out", type=Path, default=Path("outputs/samples"))

    ev = tsub.add_parser("eval", help="judge DDIM samples for every catalogue prompt and view")
    _sampling_args(ev)
    ev.add_argument("--n", type=positive_int, default=4, help="samples per prompt and view")
    ev.add_argument("--out", type=Path, default=Path("outputs/teacher-eval"))
    ev.add_argument(
        "--silhouettes",
        action="store_true",
        help="also score each sample's silhouette against the truth at its best-matching pose "
        "(the most a NeRF distilled from this teacher can reach; ~1 min more)",
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")

    judge = sub.add_parser("judge", help="the object/colour classifier that judges samples")
    jsub = judge.add_subparsers(dest="action", required=True, parser_class=type(judge))
    jt = jsub.add_parser("train", help="train the judge on ground-truth renders")
    jt.add_argument("--out", type=Path, default=Path("outputs/judge"), help="run folder")
    jt.add_argument("--steps", type=positive_int, default=1500)
    jt.add_argument("--batch", type=positive_int, default=64)
    jt.add_argument("--seed", type=int, default=0)
    jt.add_argument("--quiet", action="store_true")


def _channels(text: str) -> tuple[int, ...]:
    try:
        channels = tuple(int(c) for c in text.split(","))
    except ValueError:
        channels = ()
    if len(channels) < 2 or min(channels) < 8 or any(c % 8 for c in channels):
        raise argparse.ArgumentTypeError(
            f"expected two or more multiples of 8 such as 32,64,64, got {text!r}"
        )
    return channels


def _sampling_args(p) -> None:
    p.add_argument("--teacher", choices=["tiny", "oracle"], default="tiny")
    p.add_argument("--weights", type=Path, help="tiny teacher file (default: the shipped one)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, choices=[32, 64], default=32, help="oracle bank size")


def run(args: argparse.Namespace) -> dict:
    handlers = {
        ("teacher", "train"): train_tiny,
        ("teacher", "sample"): sample,
        ("teacher", "eval"): evaluate,
        ("judge", "train"): train_judge_cmd,
    }
    return handlers[(args.command, args.action)](args)


def train_tiny(args) -> dict:
    from dream3d.pipelines.world import all_captions, check_device, teacher_batch
    from dream3d.teachers.tiny import TinyConfig, TinyTeacher
    from dream3d.teachers.tiny_train import TeacherTrainConfig, train_teacher

    check_device(args.device)
    if args.resume and not (args.out / "checkpoint.pt").is_file():
        raise ValueError(f"--resume: no checkpoint at {args.out / 'checkpoint.pt'}")
    torch.manual_seed(args.seed)
    arch = TinyConfig(size=args.size, block_out_channels=args.channels, prediction=args.prediction)
    if args.resume:  # the architecture is the checkpoint's, whatever the flags say
        ckpt = torch.load(args.out / "checkpoint.pt", map_location="cpu", weights_only=True)
        arch = TinyConfig(**ckpt.get("teacher_config", asdict(arch)))
    teacher = TinyTeacher(arch).to(args.device)
    if args.init and not args.resume:
        source = TinyTeacher.load(args.init)
        theirs = (source.config.size, source.config.block_out_channels)
        if theirs != (arch.size, arch.block_out_channels):
            raise ValueError(
                f"--init {args.init}: its UNet (size, channels) is {theirs}; this run's is "
                f"{(arch.size, arch.block_out_channels)}"
            )
        teacher.unet.load_state_dict(source.unet.state_dict())
    teacher.add_captions(all_captions())  # shipped with the weights: no MiniLM at run time
    config = TeacherTrainConfig(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        save_every=args.save_every,
        warmup=args.warmup,
        progress=not args.quiet,
    )
    history = train_teacher(teacher, teacher_batch(args.size), config, args.out, args.resume)
    return {"params": teacher.n_params(), "final": history[-1] if history else {}}


def _teacher(args, spec):
    from dream3d.pipelines.world import load_tiny, oracle_teacher

    if args.teacher == "oracle":
        return oracle_teacher(spec, args.size, per_view=64, seed=args.seed)
    return load_tiny(args.weights)


def sample(args) -> dict:
    from dream3d.pipelines.world import save_grid
    from dream3d.sampling import ddim_sample
    from scenes.prompts import parse_prompt

    spec = parse_prompt(args.prompt)
    teacher = _teacher(args, spec)
    size = args.size if args.teacher == "oracle" else teacher.config.size
    cond = teacher.encode_prompt([spec.caption(args.view)])
    rng = torch.Generator().manual_seed(args.seed)
    x = ddim_sample(teacher, cond, (args.n, 3, size, size), args.steps, args.cfg, rng, clip_x0=1.0)
    path = args.out / f"{spec.text.replace(' ', '-')}-{args.view}-{args.teacher}.png"
    save_grid(x, path)
    return {"prompt": spec.caption(args.view), "grid": str(path)}


def evaluate(args) -> dict:
    """Object and colour accuracy of the judge on samples of every coloured catalogue prompt."""
    from dream3d.pipelines.world import load_judge, save_prompt_grid
    from dream3d.judge import accuracy
    from dream3d.sampling import ddim_sample
    from scenes.catalogue import COLOURS, OBJECTS
    from scenes.prompts import parse_prompt

    judge, t0 = load_judge(), time.perf_counter()
    images, objects, colours = [], [], []
    rng = torch.Generator().manual_seed(args.seed)
    tiny = None if args.teacher == "oracle" else _teacher(args, None)
    prompts = [(obj, colour) for obj in OBJECTS for colour in COLOURS]
    for obj, colour in tqdm(prompts, desc="prompts", disable=args.quiet):
        spec = parse_prompt(f"a {colour} {obj}")
        teacher = tiny or _teacher(args, spec)
        size = args.size if tiny is None else tiny.config.size
        cond = teacher.encode_prompt([spec.caption(v) for v in VIEWS for _ in range(args.n)])
        shape = (len(cond), 3, size, size)
        images.append(ddim_sample(teacher, cond, shape, args.steps, args.cfg, rng, clip_x0=1.0))
        objects += [obj] * len(cond)
        colours += [colour] * len(cond)
    metrics = accuracy(judge, torch.cat(images), objects, colours)
    if args.silhouettes:
        metrics |= silhouette_ceiling(torch.cat(images), objects, args.n)
    args.out.mkdir(parents=True, exist_ok=True)
    shown = [images[i * len(COLOURS) + i % len(COLOURS)] for i in range(len(OBJECTS))]
    names = [
        parse_prompt(f"{list(COLOURS)[i % len(COLOURS)]} {o}").text for i, o in enumerate(OBJECTS)
    ]
    save_prompt_grid([x[:: args.n] for x in shown], names, args.out / "samples.png")
    metrics |= {
        "teacher": args.teacher,
        "n": len(objects),
        "cfg": args.cfg,
        "ddim_steps": args.steps,
    }
    metrics["seconds"] = time.perf_counter() - t0
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def silhouette_ceiling(images: torch.Tensor, objects: list[str], n: int) -> dict:
    """Mean best-pose silhouette IoU of samples (in [-1, 1], n per view in VIEWS order per
    prompt), per object and over all."""
    from scenes.score import best_pose_iou, foreground

    views = [v for v in VIEWS for _ in range(n)]
    per_object = {}
    for obj in dict.fromkeys(objects):
        rows = torch.tensor([o == obj for o in objects])
        masks = foreground((images[rows] + 1) / 2)
        scores = best_pose_iou(masks, obj, views * (len(masks) // len(views)))
        per_object[obj] = round(float(scores.mean()), 4)
    mean = sum(per_object.values()) / len(per_object)
    return {"silhouette_ceiling": round(mean, 4), "silhouette_ceiling_per_object": per_object}


def train_judge_cmd(args) -> dict:
    from dream3d.pipelines.world import judge_batch
    from dream3d.judge import Judge, JudgeConfig, accuracy, train_judge
    from scenes.catalogue import COLOURS, OBJECTS

    torch.manual_seed(args.seed)
    judge = Judge(JudgeConfig(objects=list(OBJECTS), colours=list(COLOURS)))
    batch = judge_batch(32)
    history = train_judge(
        judge, batch, args.steps, args.batch, seed=args.seed, progress=not args.quiet
    )
    images, obj, col = batch(2000, torch.Generator().manual_seed(args.seed + 12345))  # held out
    names_o = [OBJECTS[i] for i in obj.tolist()]
    names_c = [list(COLOURS)[i] for i in col.tolist()]
    metrics = {"held_out": accuracy(judge, images, names_o, names_c), "history": history}
    judge.save(args.out / "judge-32.safetensors")
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {"held_out": metrics["held_out"], "weights": str(args.out / "judge-32.safetensors")}
