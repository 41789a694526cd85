"""`dream3d run`: a NeRF trained from a prompt by SDS or IKL, then views, video, mesh and scores.

Settings come from a preset (scenes/presets/<name>.yaml: cpu by default, cuda on a GPU),
then the command line; the result is written to OUT/config.yaml, so a run can be repeated.
Everything the run makes lands in OUT (default outputs/<prompt-slug>-<guidance>-<seed>/).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import yaml

import scenes
from dream3d.cameras import CameraConfig, Cameras, sample_cameras
from dream3d.guidance import make_guidance
from dream3d.train import TrainConfig, train

PRESETS = Path(scenes.__file__).resolve().parent / "presets"
DEFAULT_CFG = {"sds": 20.0, "ikl": 7.5}  # classifier-free guidance scale of each guidance


@dataclass
class RunConfig:
    """Everything a run depends on; written to OUT/config.yaml."""

    prompt: str
    guidance: str = "ikl"  # sds | ikl
    teacher: str = "tiny"  # tiny (shipped UNet) | oracle (exact denoiser of true renders) | sd
    weights: str | None = None  # tiny teacher file; None: the shipped one
    model: str | None = None  # sd: a Hub id (already in the local cache) or a diffusers folder
    seed: int = 0  # seeds the field, cameras, t, noise and shading
    device: str = "cpu"  # cpu | cuda
    steps: int = 600  # NeRF optimisation steps
    batch: int = 1  # views rendered per step
    size: int = 32  # render side (the teacher's resolution)
    samples: int = 48  # points per ray in training renders
    field: str = "cpu"  # hash-grid preset: cpu | cuda
    activation: str = "exp"  # density = exp(raw) (Instant-NGP, stable-dreamfusion) | softplus
    blob_density: float = 10.0  # initial density blob: pre-activation bias at the origin
    lr: float = 0.01  # Adam learning rate of the field
    cfg: float | None = None  # classifier-free guidance scale; None: DEFAULT_CFG[guidance]
    t_range: tuple[float, float] = (0.02, 0.98)  # fractions of T the timesteps are drawn from
    anneal: str = "none"  # how t_max moves over training: none | linear | sqrt
    t_max_end: float = 0.5  # t_max at the end of training when annealing
    weighting: str = "sds"  # w(t)
    fake_steps: int = 1  # IKL: fake-score steps per NeRF step
    fake_lr: float = 1e-4  # IKL: Adam learning rate of the fake score
    fake_warmup: int = 0  # IKL: extra fake-score steps before the first NeRF step
    shading_warmup: int = 150  # albedo-only steps before random lambertian / textureless
    sparsity: float = 1.0  # weight of the opacity penalty (DreamFusion)
    opaque: float = 0.0  # weight of the opacity binary entropy (pushes opacity to 0 or 1)
    orient: float = 10.0  # weight of the orientation loss (Ref-NeRF, DreamFusion)
    distortion: float = 0.0  # weight of Mip-NeRF 360's distortion loss (surfaces, not fog)
    save_every: int = 200  # checkpoint period, steps
    mesh_resolution: int = 96  # marching-cubes grid points per axis
    mesh_threshold: float = 5.0  # density of the surface (mesh, occupancy IoU): a slab 0.14
    # thick at this density is half opaque
    video_frames: int = 30  # turntable frames
    video_size: int = 128  # turntable side, pixels
    video_samples: int = 32  # points per ray in turntable renders


def load_config(prompt: str, preset: str | None, overrides: dict) -> RunConfig:
    """Preset yaml updated by non-None overrides. ``preset``: a name in scenes/presets or a
    .yaml path; default cuda with ``device="cuda"``, else cpu."""
    device = overrides.get("device") or "cpu"
    name = preset or ("cuda" if device == "cuda" else "cpu")
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ValueError(f"unknown preset {name!r}; choose from: {known}")
    values = yaml.safe_load(path.read_text()) or {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
    config = RunConfig(prompt=prompt, **values)
    if config.cfg is None:
        config.cfg = DEFAULT_CFG[config.guidance]
    config.t_range = tuple(config.t_range)
    return config


def slug(prompt: str) -> str:
    """ "A red chair!" -> "a-red-chair"."""
    return "-".join("".join(c if c.isalnum() else " " for c in prompt.lower()).split())


def default_out(config: RunConfig) -> Path:
    """outputs/<prompt-slug>-<guidance>-<seed>."""
    return Path("outputs") / f"{slug(config.prompt)}-{config.guidance}-{config.seed}"


def build(config: RunConfig):
    """(prompt spec, teacher, NeRF generator, guidance, cond_fn) for a run."""
    from dream3d.pipelines.world import check_device, load_tiny, oracle_teacher
    from generators.nerf.field import field_preset
    from generators.nerf.generator import NeRFConfig, NeRFGenerator
    from generators.nerf.render import RegulariserConfig, RenderConfig, ShadingConfig
    from scenes.prompts import parse_prompt

    spec = parse_prompt(config.prompt)
    check_device(config.device)
    torch.manual_seed(config.seed)
    if config.teacher == "oracle":
        teacher = oracle_teacher(spec, config.size, per_view=64, seed=config.seed)
        fake = "unet"
    elif config.teacher == "sd":
        from dream3d.teachers.stable_diffusion import DEFAULT_MODEL, StableDiffusionTeacher

        teacher = StableDiffusionTeacher.load(config.model or DEFAULT_MODEL, config.device)
        fake = "teacher"  # a copy of its UNet, on the VAE's latents
    else:
        teacher = load_tiny(config.weights, config.device)
        fake = "teacher"
        if teacher.config.size != config.size:
            raise ValueError(f"the tiny teacher is {teacher.config.size}px; use --size it has")
    render = RenderConfig(
        samples=config.samples, shading=ShadingConfig(warmup=config.shading_warmup)
    )
    reg = RegulariserConfig(config.sparsity, config.opaque, config.orient, config.distortion)
    field = dataclasses.replace(
        field_preset(config.field), activation=config.activation, blob_density=config.blob_density
    )
    nerf = NeRFConfig(config.size, field, render, reg=reg)
    generator = NeRFGenerator(nerf, config.seed, config.device)
    guidance = make_guidance(
        config.guidance,
        teacher,
        cfg_scale=config.cfg,
        t_range=config.t_range,
        anneal=config.anneal,
        t_max_end=config.t_max_end,
        weighting=config.weighting,
        fake=fake,
        fake_steps=config.fake_steps,
        fake_lr=config.fake_lr,
        fake_warmup=config.fake_warmup,
        fake_size=config.size,
    )

    if hasattr(guidance, "fake"):  # a fake score built on the CPU (the oracle's UNet) moves
        guidance.fake.to(config.device)  # in place, so its optimizer keeps the same parameters

    def cond_fn(sample):
        return teacher.encode_prompt([spec.caption(v) for v in sample.info["views"]])

    return spec, teacher, generator, guidance, cond_fn


def run(
    config: RunConfig, out: Path, resume: bool = False, progress: bool = True, watch=None
) -> dict:
    """Train, then write every output; returns metrics.json's content.

    ``watch(config, row, generator)``, if given, sees every history row as it is logged, in the
    training thread (the app draws live views with it); an exception it raises stops the run.
    """
    if resume and not (out / "checkpoint.pt").is_file():
        raise ValueError(f"--resume: no checkpoint at {out / 'checkpoint.pt'}")
    spec, teacher, generator, guidance, cond_fn = build(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    train_config = TrainConfig(
        steps=config.steps,
        batch=config.batch,
        lr=config.lr,
        seed=config.seed,
        log_every=5,
        save_every=config.save_every,
        progress=progress,
    )
    start = time.perf_counter()
    history = train(
        generator,
        guidance,
        train_config,
        cond_fn=cond_fn,
        on_log=None if watch is None else partial(_watched, watch, config, generator),
        desc=f"{config.guidance} {spec.text}",
        checkpoint=out / "checkpoint.pt",
        resume=resume,
    )
    train_seconds = history[-1]["time"] if history else time.perf_counter() - start
    from dream3d.pipelines.outputs import write_outputs

    metrics = write_outputs(generator, spec, config, history, out, progress)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["seconds_per_step"] = round(train_seconds / config.steps, 4)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _watched(watch, config: RunConfig, generator, step: int, row: dict) -> dict:
    watch(config, row, generator)
    return row


def held_out_cameras(n: int = 16, seed: int = 12345) -> Cameras:
    """Views no run trains on (a fixed seed), for silhouette scores."""
    return sample_cameras(n, torch.Generator().manual_seed(seed), CameraConfig())
