"""Text to 3D: a NeRF trained from a prompt by SDS or IKL, then views, video, mesh and scores.

The experiment's config nests its components' own configs (guidance, teacher, NeRF with its
field, renderer and regularisers, training, outputs), each holding the one default of each
setting. ``resolve`` lays a preset (scenes/presets/<name>.yaml: the settings a use needs
different from the defaults; cpu by default, cuda on a GPU) or a run's config.yaml, then
overrides, on those defaults and checks the whole tree once. ``text_to_3d`` writes it to
OUT/config.yaml, so a run can be repeated exactly.

    from dream3d.pipelines.text_to_3d import resolve, text_to_3d
    metrics = text_to_3d(resolve("a chair", overrides={"guidance": {"name": "ikl"}}), "out")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

import scenes
from dream3d.checkpoint import resume_point
from dream3d.clock import NO_CLOCK
from dream3d.config import (
    AT_LEAST_1,
    check_ranges,
    from_dict,
    load_yaml,
    merge,
    variants,
    write_config,
)
from dream3d.guidance import GUIDANCES, GuidanceConfig, IKLConfig, build_guidance
from dream3d.memory import check_fits, nerf_run_bytes
from dream3d.nn import seeded
from dream3d.pipelines.world import TEACHERS, TinyCameraSource, build_teacher, check_device
from dream3d.train import TrainConfig, train
from generators import GENERATORS
from generators.nerf.export import MeshConfig
from generators.nerf.generator import NeRFConfig
from generators.nerf.particles import NeRFParticles
from scenes.prompts import PromptSpec, parse_prompt

PRESETS = Path(scenes.__file__).resolve().parent / "presets"


@dataclass
class OutputsConfig:
    """What a finished run writes besides its scores."""

    views_size: int = 64  # side of each view in views.png
    views_samples: int = 64  # points per ray in views.png
    video_frames: int = 30  # turntable frames
    video_size: int = 128  # turntable side, pixels
    video_samples: int = 32  # points per ray in turntable renders
    mesh: MeshConfig = field(default_factory=MeshConfig)  # marching cubes; also the 3D score's

    def __post_init__(self):
        sizes = ("views_size", "views_samples", "video_frames", "video_size", "video_samples")
        check_ranges(self, dict.fromkeys(sizes, AT_LEAST_1))


@dataclass
class TextTo3DConfig:
    """Everything a run depends on; written to OUT/config.yaml."""

    prompt: str  # a catalogue prompt, e.g. "a chair" or "a red chair"
    device: Literal["cpu", "cuda"] = "cpu"
    # NeRFs trained together (ProlificDreamer's particles): IKL fits one fake score on all
    # their renders; SDS trains each alone. Each particle's outputs go to OUT/particle-<k>/
    particles: int = 1
    guidance: GuidanceConfig = field(default_factory=IKLConfig, metadata=variants(GUIDANCES))
    # the shipped tiny teacher told each view's camera (docs/camera.md: better 3D scores than
    # the text-only one at the same cost); --teacher tiny is the text-only one
    teacher: TinyCameraSource = field(default_factory=TinyCameraSource, metadata=variants(TEACHERS))
    nerf: NeRFConfig = field(default_factory=NeRFConfig)  # size, field, render, cameras, reg
    train: TrainConfig = field(default_factory=TrainConfig)  # steps, views per step, lr, seed
    outputs: OutputsConfig = field(default_factory=OutputsConfig)

    def __post_init__(self):
        if not self.prompt or not self.prompt.strip():
            raise ValueError("the prompt is empty; try e.g. 'a red chair'")
        if self.particles < 1:
            raise ValueError(f"particles must be >= 1, got {self.particles}")


def preset_path(name: str) -> Path:
    """A preset's file: a name in scenes/presets or a .yaml path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ValueError(f"unknown preset {name!r}; choose from: {known} or a .yaml file")
    return path


def resolve(
    prompt: str | None = None,
    preset: str | None = None,
    overrides: dict | None = None,
    config_file: Path | None = None,
) -> TextTo3DConfig:
    """The run's config: defaults <- preset (or a run's config.yaml) <- overrides <- prompt.

    ``overrides`` is a nested dict of the tree ({"train": {"steps": 50}}); the preset defaults
    to cuda when ``overrides`` ask for device cuda, else cpu. Bad keys, types and values are
    a ValueError naming the setting (and the file it came from).
    """
    overrides = overrides or {}
    if config_file is not None:
        path, base = Path(config_file), load_yaml(config_file)
    else:
        device = overrides.get("device") or "cpu"
        path = preset_path(preset or ("cuda" if device == "cuda" else "cpu"))
        base = load_yaml(path)
    try:
        from_dict(TextTo3DConfig, merge({"prompt": "a chair"}, base))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    tree = merge(base, overrides)
    if prompt is not None:
        tree["prompt"] = prompt
    return from_dict(TextTo3DConfig, tree)


def slug(prompt: str) -> str:
    """ "A red chair!" -> "a-red-chair"."""
    return "-".join("".join(c if c.isalnum() else " " for c in prompt.lower()).split())


def particles_suffix(config: TextTo3DConfig) -> str:
    """ "-<K>particles" for K > 1 particles, else "": folders of particle runs never replace a
    single NeRF's."""
    return f"-{config.particles}particles" if config.particles > 1 else ""


def default_out(config: TextTo3DConfig) -> Path:
    """outputs/<prompt-slug>-<guidance>-<seed>, with ``particles_suffix``."""
    name = f"{slug(config.prompt)}-{config.guidance.name}-{config.train.seed}"
    return Path("outputs") / (name + particles_suffix(config))


def build(config: TextTo3DConfig):
    """(prompt spec, teacher, NeRF generator, guidance, cond_fn) for a run; what it draws
    (initial weights) depends on the run's seed alone, whatever runs beside it (``seeded``)."""
    spec = parse_prompt(config.prompt)
    check_device(config.device)
    with seeded(config.train.seed):
        teacher, generator, guidance = _parts(config, spec)
    if hasattr(guidance, "fake"):  # a fake score built on the CPU (the oracle's UNet) moves
        guidance.fake.to(config.device)  # in place, so its optimizer keeps the same parameters

    def cond_fn(sample):
        return teacher.encode_prompt([spec.caption(v) for v in sample.info["views"]])

    return spec, teacher, generator, guidance, cond_fn


def _parts(config: TextTo3DConfig, spec: PromptSpec):
    """Teacher, generator and guidance, built in this order from the global RNG as seeded."""
    seed, nerf = config.train.seed, config.nerf
    teacher = build_teacher(config.teacher, spec, nerf.size, config.device, seed, nerf.cameras)
    generator_cls, _ = GENERATORS["nerf"]
    generator = generator_cls(config.nerf, seed, config.device)  # particle 0 is this NeRF
    views, samples = config.train.batch, nerf.render.samples
    need = nerf_run_bytes(generator, config.particles, views, nerf.size, samples)
    what = f"a run of {config.particles} NeRF{'s' if config.particles > 1 else ''} ({views} "
    what += f"view{'s' if views > 1 else ''} of {nerf.size} px a step, {samples} samples a ray)"
    check_fits(need, config.device, what)
    if config.particles > 1:  # each particle seeds its own field, as particle 0 did
        generator = NeRFParticles(config.nerf, config.particles, seed, config.device)
    return teacher, generator, build_guidance(config.guidance, teacher)


def text_to_3d(
    config: TextTo3DConfig,
    out: Path | str,
    resume: bool = False,
    progress: bool = True,
    watch=None,
    clock=NO_CLOCK,
) -> dict:
    """Train, then write every output into ``out``; returns metrics.json's content.

    ``watch(config, row, generator)``, if given, sees every history row as it is logged, in the
    training thread (the app draws live views with it); an exception it raises stops the run.
    ``clock`` (dream3d.clock.Clock) times the phases of training and outputs (bench speed).
    """
    out = Path(out)
    if resume:  # a missing or spoilt checkpoint fails before config.yaml is written
        resume = resume_point(out, config)
    spec, teacher, generator, guidance, cond_fn = build(config)
    out.mkdir(parents=True, exist_ok=True)
    train_config = config.train if progress else replace(config.train, progress=False)
    history = train(
        generator,
        guidance,
        train_config,
        cond_fn=cond_fn,
        on_log=None if watch is None else partial(_watched, watch, config, generator),
        desc=f"{config.guidance.name} {spec.text}",
        checkpoint=out / "checkpoint.pt",
        resume=resume,
        clock=clock,
        ready=partial(write_config, config, out),
    )
    train_seconds = history[-1]["time"] if history else 0.0
    from dream3d.pipelines.outputs import write_outputs, write_particle_outputs

    write = write_outputs if config.particles == 1 else write_particle_outputs
    metrics = write(generator, spec, config, history, out, progress, clock)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["seconds_per_step"] = round(train_seconds / config.train.steps, 4)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def _watched(watch, config: TextTo3DConfig, generator, step: int, row: dict) -> dict:
    watch(config, row, generator)
    return row


def read_prompt(prompt: str) -> PromptSpec:
    """The prompt as the toy world reads it (a ValueError for one outside its vocabulary)."""
    return parse_prompt(prompt)
