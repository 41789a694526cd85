"""Image generators distilled from a teacher by SDS or IKL: Diff-Instruct's own experiment.

A one-step generator (or a set of Dirac images) learns every catalogue caption, or the four
view captions of one prompt, from the teacher alone: training is data-free. It is then
scored against ground-truth renders of the same captions (``image_scores``), which training
never sees. The config nests the components' configs as text-to-3D's does.

    from dream3d.pipelines.distill import distill, resolve
    metrics = distill(resolve(overrides={"train": {"steps": 100}}), "outputs/distill")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from dream3d.cameras import VIEWS
from dream3d.checkpoint import (
    not_weights,
    read_weights,
    resume_point,
    save_weights,
    state_mismatch,
)
from dream3d.config import (
    from_dict,
    load_yaml,
    merge,
    to_dict,
    variant_name,
    variants,
    write_config,
)
from dream3d.guidance import (
    GUIDANCES,
    DMDConfig,
    GuidanceConfig,
    IKLConfig,
    SiDConfig,
    build_guidance,
)
from dream3d.nn import seeded
from dream3d.pipelines.image_scores import ScoreConfig, Scorer, cycled, read_caption
from dream3d.pipelines.world import (
    TEACHERS,
    WEIGHTS,
    TinySource,
    all_captions,
    build_teacher,
    check_device,
    load_judge,
    save_grid,
)
from dream3d.sampling import ddim_sample
from dream3d.train import TrainConfig, train
from generators import IMAGE_GENERATORS
from generators.images import DiracImages, OneStepConfig
from scenes.prompts import parse_prompt

# the shipped one-step generators, distilled from the shipped tiny teacher (their .json: how):
# one per guidance that has a file, in the registry's order (the app's Images tab shows each)
SHIPPED = {
    g: WEIGHTS / f"onestep-{g}-32.safetensors"
    for g in GUIDANCES
    if (WEIGHTS / f"onestep-{g}-32.safetensors").is_file()
}
# captions of samples.png, one row each (those the generator knows), 8 fixed z per row
SHOWN = (
    "a chair, front view",
    "a chair, side view",
    "a red chair, front view",
    "a mug, side view",
    "a blue mug, front view",
    "a snowman, front view",
    "a lamp, side view",
    "a green torus, overhead view",
)


# Distillation's guidance settings, the same for both but the fake score: the CFG scale the
# teacher samples with (3, as `dream3d teacher sample`), DMD's normalised weighting, and for
# IKL a trainable copy of the teacher as fake score, 2 steps per generator step at 10x the
# generator's learning rate (measured on the 2-core CPU over 300 steps, fd against the truth:
# 1 step at lr 1e-4 with a generator lr of 1e-4 collapsed every z to one image, fd 19 -> 97;
# generator lr 5e-5 at CFG 1 rose to 89; this recipe went 44.7 -> 28.6, and doubling both
# learning rates was worse at step 100, 46.2 against 42.7).
GUIDANCE_DEFAULTS = {
    "ikl": IKLConfig(
        cfg_scale=3.0,
        weighting="dmd",
        fake="teacher",
        fake_steps=2,
        fake_lr=2e-4,
        share_draw=False,  # the shipped generators' recipe (and the default)
    ),
    "sds": GuidanceConfig(cfg_scale=3.0, weighting="dmd"),
    # SiD and DMD: IKL's fake score and learning rates, their own fake:generator ratios (1, 5)
    "sid": SiDConfig(cfg_scale=3.0, fake="teacher", fake_lr=2e-4, share_draw=False),
    "dmd": DMDConfig(cfg_scale=3.0, fake="teacher", fake_lr=2e-4, share_draw=False),
}


# Settings a generator needs apart from the one-step defaults. Dirac images are pixels, moved
# by large steps; 300 x 64 draws give each of 864 images ~22 updates (8 images of "a red cube"
# are judged right after 30 at lr 0.1: tests/dream3d/pipelines/test_distill.py). The triplane
# generator's samples are NeRF renders: `dream3d run`'s teacher (told the camera) and guidance
# settings (the registry's defaults, not the image recipe above), objects of 2 views per step;
# 2500 steps, lr decayed by a cosine: at a constant lr 1e-3 for 4000 steps IKL's fd went
# 150, 134, 160, 528 at steps 1000-4000 (docs/instant3d.md); ~0.9 s an IKL step on one core
GENERATOR_DEFAULTS = {
    "dirac": {"train": {"batch": 64, "lr": 0.1, "steps": 300}},
    "triplane": {
        "teacher": {"name": "tiny-camera"},
        "train": {
            "batch": 4,
            "lr": 1e-3,
            "lr_schedule": "cosine",
            "steps": 2500,
            "save_every": 100,
        },
        "eval": {"every": 1000},
    },
}
NERF_GUIDANCE = ("triplane",)  # generators that take the registry's (NeRF) guidance defaults


def _guidance() -> GuidanceConfig:
    return GUIDANCE_DEFAULTS["ikl"]


def _train() -> TrainConfig:
    """Distillation's training: 8 images per step."""
    return TrainConfig(steps=600, batch=8, lr=2e-5, log_every=10, save_every=100)


@dataclass
class DistillConfig:
    """Everything a distillation depends on; written to OUT/config.yaml."""

    prompt: str | None = None  # one catalogue prompt (its four view captions); None: every caption
    device: Literal["cpu", "cuda"] = "cpu"
    generator: OneStepConfig = field(
        default_factory=OneStepConfig, metadata=variants(IMAGE_GENERATORS)
    )
    guidance: GuidanceConfig = field(
        default_factory=_guidance, metadata=variants(GUIDANCES, GUIDANCE_DEFAULTS)
    )  # distillation's SDS and IKL, not the NeRF's
    teacher: TinySource = field(default_factory=TinySource, metadata=variants(TEACHERS))
    train: TrainConfig = field(default_factory=_train)  # steps, images per step, lr, seed
    eval: ScoreConfig = field(default_factory=ScoreConfig)  # scores against the truth

    def __post_init__(self):
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("the prompt is empty; try e.g. 'a red chair', or leave it out")


def resolve(
    prompt: str | None = None, overrides: dict | None = None, config_file: Path | None = None
) -> DistillConfig:
    """The run's config: defaults <- a run's config.yaml <- overrides <- prompt."""
    base = load_yaml(config_file) if config_file is not None else {}
    tree = merge(base, overrides or {})
    if prompt is not None:
        tree["prompt"] = prompt
    generator = tree.get("generator")
    kind = generator.get("name") if isinstance(generator, dict) else None
    if config_file is None:
        tree = merge(GENERATOR_DEFAULTS.get(kind, {}), tree)
    if kind in NERF_GUIDANCE and config_file is None:
        guidance = tree.get("guidance") or {}
        name = guidance.get("name", "ikl") if isinstance(guidance, dict) else "ikl"
        if name in GUIDANCES:
            plain = to_dict(GUIDANCES[name][1]())
            tree["guidance"] = merge(plain, guidance if isinstance(guidance, dict) else {})
    return from_dict(DistillConfig, tree)


def default_out(config: DistillConfig) -> Path:
    """outputs/distill-<generator>-<guidance>-<seed>[-<prompt slug>]."""
    from dream3d.pipelines.text_to_3d import slug

    name = variant_name(IMAGE_GENERATORS, config.generator)
    tail = f"-{slug(config.prompt)}" if config.prompt else ""
    return Path("outputs") / f"distill-{name}-{config.guidance.name}-{config.train.seed}{tail}"


def captions(prompt: str | None) -> list[str]:
    """Every catalogue caption (prompt None) or the prompt's four view captions."""
    if prompt is None:
        return all_captions()
    spec = parse_prompt(prompt)
    return [spec.caption(v) for v in VIEWS]


@dataclass
class Parts:
    """What a distillation trains and scores with."""

    teacher: object
    generator: torch.nn.Module
    guidance: object
    captions: list[str]  # the generator's captions
    scored: list[str]  # one per scored sample


def build(config: DistillConfig) -> Parts:
    """Teacher, generator, guidance and captions of a run (nothing trained yet); what they
    draw depends on the run's seed alone, whatever runs beside it (``seeded``)."""
    known = captions(config.prompt)
    name = variant_name(IMAGE_GENERATORS, config.generator)
    scored = cycled(known, config.eval.n)
    own = scored if name == "dirac" else known  # Dirac images: one per scored sample
    cls = IMAGE_GENERATORS[name][0]
    with seeded(config.train.seed):  # teacher, generator, guidance: one stream, in turn
        teacher = _teacher(config)
        generator = cls(config.generator, teacher, own, sample_shape(teacher), config.train.seed)
        generator = generator.to(config.device)
        guidance = build_guidance(config.guidance, teacher)
    return Parts(teacher, generator, guidance, own, scored)


def _teacher(config: DistillConfig):
    """The run's teacher (build it inside ``seeded`` with the run's seed)."""
    check_device(config.device)
    if config.teacher.name.startswith("oracle"):
        raise ValueError("distill needs a network teacher (tiny or sd); the oracle is per prompt")
    spec = parse_prompt(config.prompt or "a chair")
    return build_teacher(config.teacher, spec, 32, config.device, config.train.seed)


@torch.no_grad()
def sample_shape(teacher) -> tuple[int, ...]:
    """(C, H, W) of one sample in the teacher's space (a latent teacher's VAE shape)."""
    size = teacher.image_size
    encode = getattr(teacher, "encode_images", None)
    if encode is None:
        return (3, size, size)
    return tuple(encode(torch.zeros(1, 3, size, size, device=teacher.device)).shape[1:])


def to_images(teacher, x: torch.Tensor) -> torch.Tensor:
    """Samples in the teacher's space as images in [-1, 1] (a latent teacher decodes)."""
    decode = getattr(teacher, "decode_images", None)
    return (x if decode is None else decode(x)).float().cpu()


def draw(parts: Parts, captions: list[str], seed: int, batch: int = 256) -> torch.Tensor:
    """One image per caption in [-1, 1], z from ``seed``: the same z for the same seed."""
    rng = torch.Generator().manual_seed(seed)
    if isinstance(parts.generator, DiracImages):
        return to_images(parts.teacher, parts.generator.draw(captions, rng))
    chunks = [captions[i : i + batch] for i in range(0, len(captions), batch)]
    return torch.cat([to_images(parts.teacher, parts.generator.draw(c, rng)) for c in chunks])


def distill(
    config: DistillConfig, out: Path | str, resume: bool = False, progress: bool = True
) -> dict:
    """Train, score and write every output into ``out``; returns metrics.json's content."""
    out = Path(out)
    if resume:  # a missing or spoilt checkpoint fails before config.yaml is written
        resume = resume_point(out, config)
    parts = build(config)
    judge = load_judge()
    out.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(judge, parts.scored, config.eval.seed)
    every = config.eval.every
    # the generator as built: its initial state also when resuming (train() loads later)
    fd_start = scorer(draw(parts, parts.scored, config.eval.seed), fd_only=True)["fd"]

    def on_log(step: int, row: dict) -> dict:
        if every and step and step % every == 0:
            row["fd"] = scorer(draw(parts, parts.scored, config.eval.seed), fd_only=True)["fd"]
        return row

    name = variant_name(IMAGE_GENERATORS, config.generator)
    history = train(
        parts.generator,
        parts.guidance,
        config.train if progress else replace(config.train, progress=False),
        cond_fn=lambda sample: parts.teacher.encode_prompt(sample.info["captions"]),
        on_log=on_log,
        desc=f"{config.guidance.name} {name}",
        checkpoint=out / "checkpoint.pt",
        resume=resume,
        ready=partial(write_config, config, out),
    )
    metrics = scorer(draw(parts, parts.scored, config.eval.seed))
    history[-1]["fd"] = metrics["fd"]
    history.insert(0, {"step": -1, "fd": fd_start})  # progress.png's first fd point
    metrics |= {
        "fd_start": fd_start,
        "nfe": 0 if name == "dirac" else 1,  # Dirac images are their parameters
        "ms_per_image": None if name == "dirac" else ms_per_image(parts),
        "n": len(parts.scored),
        "train_seconds": round(history[-1]["time"], 1),
        "steps": config.train.steps,
    }
    save_generator(parts, config, out / "generator.safetensors")
    save_samples(parts, config.eval.seed, out / "samples.png")
    from dream3d.pipelines.outputs import save_progress

    save_progress(history, out / "progress.png", ("loss", "grad_norm", "fd"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def ms_per_image(parts: Parts, n: int = 64) -> float:
    """Milliseconds per image of one-step sampling, batches of ``n`` (after one warm-up)."""
    shown = cycled(parts.captions, n)
    draw(parts, shown, 0)
    start = time.perf_counter()
    draw(parts, shown, 1)
    return round(1000 * (time.perf_counter() - start) / n, 3)


def shown_captions(known: list[str]) -> list[str]:
    """samples.png's rows: SHOWN's captions the generator knows (its own first four if none)."""
    rows = [c for c in SHOWN if c in known]
    return rows or list(dict.fromkeys(known))[:4]


def save_samples(parts: Parts, seed: int, path: Path, cols: int = 8) -> None:
    """samples.png: one row per shown caption, ``cols`` fixed z: two runs or two checkpoints
    compare picture by picture (Dirac images: the first image of each row's caption)."""
    rows = shown_captions(parts.captions)
    if isinstance(parts.generator, DiracImages):
        images = draw(parts, parts.captions, seed)
        first = [parts.captions.index(c) for c in rows]
        save_grid(images[first], path, cols=len(first))
        return
    save_grid(draw(parts, [c for c in rows for _ in range(cols)], seed), path, cols=cols)


def save_generator(parts: Parts, config: DistillConfig, path: Path) -> None:
    """The generator's weights (safetensors) with what rebuilds it: the run's config tree."""
    state = {k: v.detach().cpu().contiguous() for k, v in parts.generator.state_dict().items()}
    meta = {"what": "dream3d image generator", "config": json.dumps(to_dict(config))}
    save_weights(path, state, meta)


def load_generator(path: Path | str, device: str = "cpu") -> tuple[Parts, DistillConfig]:
    """A generator written by ``save_generator``, with its teacher; bad files are one line.
    Loaded once per file version (the app draws from the same files again and again)."""
    path = Path(path)
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    return _load_generator(str(path), device, stamp)


@lru_cache(maxsize=4)
def _load_generator(path: str, device: str, stamp) -> tuple[Parts, DistillConfig]:
    tensors, meta = read_weights(path, "generator", ("config",))
    try:
        config = from_dict(DistillConfig, json.loads(meta["config"]) | {"device": device})
    except ValueError as err:
        raise not_weights(path, "generator", f"bad metadata: {err}") from None
    parts = build(config)
    mismatch = state_mismatch(parts.generator, tensors)
    if mismatch:
        raise not_weights(path, "generator", mismatch)
    parts.generator.load_state_dict(tensors)
    parts.generator.eval()
    return parts, config


def sample(
    prompt: str, n: int = 16, weights: Path | str | None = None, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """``n`` one-step samples (n, 3, H, W) in [-1, 1] of a prompt and their captions: a caption
    with a view ("a red chair, side view") as it is, else its views in turn. ``weights``: a
    generator file (None: the shipped IKL one)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    parts, _ = load_generator(weights or SHIPPED["ikl"])
    if prompt.rstrip().endswith(" view"):
        spec, view = read_caption(prompt.strip())
        asked = [spec.caption(view)]
    else:
        asked = captions(prompt)
    unknown = [c for c in asked if c not in parts.captions]
    if unknown:
        raise ValueError(f"this generator was not distilled on {unknown[0]!r}")
    wanted = cycled(asked, n)
    return draw(parts, wanted, seed), wanted


REFERENCE_STEPS = (50, 4, 1)  # the teacher's DDIM steps of the reference rows


def references(
    config: DistillConfig, steps=REFERENCE_STEPS, cfg: float = 3.0, progress: bool = True
) -> list[dict]:
    """Reference rows on the run's scored captions and count: an independent ground-truth
    sample (the floor) and the teacher's DDIM (eta 0, CFG ``cfg`` as `dream3d sample`) at each
    of ``steps``; NFE counts network evaluations per image (CFG doubles each step)."""
    with seeded(config.train.seed):
        teacher = _teacher(config)
    scored = cycled(captions(config.prompt), config.eval.n)
    scorer = Scorer(load_judge(), scored, config.eval.seed)
    rows = [{"row": "ground truth (floor)", "nfe": 0, "ms_per_image": None} | scorer.floor()]
    for n_steps in steps:
        start = time.perf_counter()
        images = ddim_images(teacher, scored, n_steps, cfg, config.eval.seed, progress)
        ms = 1000 * (time.perf_counter() - start) / len(scored)
        nfe = n_steps * (2 if cfg != 1 else 1)
        rows.append({"row": f"teacher DDIM {n_steps}", "nfe": nfe, "ms_per_image": round(ms, 3)})
        rows[-1] |= scorer(images)
    return rows


def ddim_images(
    teacher, captions: list[str], steps: int, cfg: float, seed: int, progress=True, batch: int = 144
) -> torch.Tensor:
    """One DDIM sample per caption as images in [-1, 1], in batches, x_T from ``seed``."""
    rng = torch.Generator().manual_seed(seed)
    shape = sample_shape(teacher)
    clip = None if hasattr(teacher, "decode_images") else 1.0  # pixel teachers clamp x0
    out = []
    chunks = [captions[i : i + batch] for i in range(0, len(captions), batch)]
    for chunk in tqdm(chunks, desc=f"ddim {steps}", disable=not progress, leave=False):
        cond = teacher.encode_prompt(chunk)
        x = ddim_sample(
            teacher,
            cond,
            (len(chunk), *shape),
            steps,
            cfg,
            rng,
            clip_x0=clip,
            device=teacher.device,
        )
        out.append(to_images(teacher, x))
    return torch.cat(out)


def side_by_side(
    prompt: str, n: int = 8, seed: int = 0, weights: dict | None = None, ddim_steps: int = 50
) -> dict[str, tuple[torch.Tensor, float]]:
    """The app's Images tab: ``n`` samples of a prompt from each shipped one-step generator
    (``weights``: guidance -> file, default SHIPPED) and from the teacher's DDIM, the same z
    for all; name -> (images (n, 3, H, W) in [-1, 1], seconds it took)."""
    weights = weights or SHIPPED
    out, teacher = {}, None
    for guidance, path in weights.items():
        start = time.perf_counter()
        images, wanted = sample(prompt, n, path, seed)
        out[f"one-step {guidance.upper()}"] = (images, time.perf_counter() - start)
        teacher = teacher or load_generator(path)[0].teacher
    start = time.perf_counter()
    images = ddim_images(teacher, wanted, ddim_steps, 3.0, seed, progress=False, batch=n)
    out[f"teacher DDIM {ddim_steps}"] = (images, time.perf_counter() - start)
    return out
