"""The embedded teachers and their judge as a library: train, sample and evaluate them.

Each experiment takes one job dataclass (the one default of each of its settings), writes its
files under the job's ``out`` and returns what it found; it prints nothing but progress bars.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dream3d.cameras import VIEWS, CameraConfig, Cameras, pose_features, sample_cameras, view_of
from dream3d.checkpoint import read_checkpoint
from dream3d.diffusion import check_choice
from dream3d.judge import Judge, JudgeConfig, accuracy
from dream3d.judge import train_judge as fit_judge
from dream3d.pipelines.world import (
    TEACHERS,
    OracleSource,
    all_captions,
    camera_oracle,
    check_device,
    check_trained_cameras,
    judge_batch,
    load_camera_tiny,
    load_judge,
    load_tiny,
    oracle_teacher,
    save_grid,
    save_prompt_grid,
    teacher_batch,
)
from dream3d.sampling import ddim_sample
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import PromptSpec, parse_prompt

SIZES = (32, 64)  # image sides the embedded teachers come in
PREDICTIONS = ("v", "eps")  # what the tiny teacher's UNet may learn to output
DEVICES = ("cpu", "cuda")
# the teachers `sample`, `evaluate` and `check-cameras` draw from: the registry's embedded ones
EMBEDDED = tuple(name for name, (_, source) in TEACHERS.items() if source.embedded)
# the embedded ones told each camera
CAMERA_TEACHERS = tuple(n for n in EMBEDDED if getattr(TEACHERS[n][1], "reads_camera", False))
JUDGE_HELD_OUT = 2000  # fresh renders the trained judge is scored on


def check_channels(channels: tuple[int, ...]) -> tuple[int, ...]:
    """``channels`` if it is two or more multiples of 8 (UNet widths), else a ValueError."""
    if len(channels) < 2 or min(channels) < 8 or any(c % 8 for c in channels):
        raise ValueError("expected two or more multiples of 8 such as 32,64,64")
    return channels


def _check_positive(job, *names: str) -> None:
    """A ValueError naming the first of ``job``'s fields ``names`` that is not above zero."""
    for name in names:
        if not getattr(job, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(job, name)}")


def _check_size(size: int) -> None:
    """A ValueError unless ``size`` is one of SIZES."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))}, got {size}")


@dataclass
class TinyTrainJob:
    """Training of the tiny pixel-space teacher on rendered views (`train_tiny`)."""

    out: Path = Path("outputs/teacher")  # run folder: weights, checkpoint, history, loss plot
    size: int = 32  # image side (32 or 64)
    steps: int = 20_000  # optimizer steps
    batch: int = 64  # images per step
    lr: float = 3e-4  # AdamW learning rate after warm-up
    warmup: int = 500  # learning-rate warm-up steps
    channels: tuple[int, ...] = (32, 64, 64)  # UNet width per resolution (default: 2.0M parameters)
    save_every: int = 1000  # checkpoint period in steps
    device: str = "cpu"  # cpu | cuda
    seed: int = 0  # seeds the init, the batches and the noise
    resume: bool = False  # continue out/checkpoint.pt (its architecture wins)
    init: Path | None = None  # start from this teacher's UNet weights instead of random ones
    prediction: str = "v"  # v | eps: what the UNet learns to output
    camera: bool = False  # also read each render's camera (MVDream's embedding, zero-started)
    camera_harmonics: int = 1  # the camera MLP also reads cos(k az), sin(k az), k = 2..this
    ema: float = 0.999  # EMA decay of the saved weights (a short fine-tune wants a shorter one)
    progress: bool = True  # progress bar

    def __post_init__(self):
        self.out, self.channels = Path(self.out), tuple(int(c) for c in self.channels)
        self.init = None if self.init is None else Path(self.init)
        _check_positive(self, "steps", "batch", "lr", "save_every", "camera_harmonics")
        if self.warmup < 0:
            raise ValueError(f"warmup must be zero or positive, got {self.warmup}")
        try:
            check_channels(self.channels)
        except ValueError as err:
            raise ValueError(f"channels: {err}, got {self.channels}") from None
        _check_size(self.size)
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_choice("device", self.device, DEVICES)


@dataclass
class SamplingConfig:
    """Which teacher draws and how: DDIM with classifier-free guidance."""

    teacher: str = "tiny"  # tiny | tiny-camera | oracle | oracle-camera
    weights: Path | None = None  # tiny(-camera) teacher file (None: the shipped one)
    steps: int = 50  # DDIM steps
    cfg: float = 3.0  # classifier-free guidance scale
    seed: int = 0  # seeds x_T and the oracle's banks
    size: int = 32  # oracle bank size (the tiny teacher draws at its own size)

    def __post_init__(self):
        check_choice("teacher", self.teacher, EMBEDDED)
        _check_positive(self, "steps")
        _check_size(self.size)


@dataclass
class SampleJob:
    """A PNG grid of DDIM samples for one prompt and view, or one exact camera (`sample`)."""

    prompt: str  # e.g. "a red chair"
    view: str | None = None  # one of VIEWS (None: the camera's own view, else front)
    n: int = 16  # how many samples
    out: Path = Path("outputs/samples")  # folder of the grid
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # teacher and DDIM
    azimuth: float | None = None  # degrees: every sample at this camera (with elevation)
    elevation: float | None = None  # degrees above the horizon
    radius: float | None = None  # the camera's distance (None: the middle of the world's range)

    def __post_init__(self):
        self.out = Path(self.out)
        _check_positive(self, "n")
        if (self.azimuth is None) != (self.elevation is None):
            raise ValueError("azimuth and elevation go together: give both or neither")
        if self.radius is not None and self.azimuth is None:
            raise ValueError("a radius needs an azimuth and an elevation")
        if self.azimuth is not None:
            self.radius = sum(CameraConfig.radius) / 2 if self.radius is None else self.radius
            if self.sampling.teacher in CAMERA_TEACHERS:
                check_trained_cameras(
                    CameraConfig(radius=(self.radius,) * 2, elevation=(self.elevation,) * 2), ""
                )
            own = view_of(self.azimuth, self.elevation)
            if self.view not in (None, own):
                raise ValueError(
                    f"view {self.view} disagrees with the camera's own view, {own} (azimuth "
                    f"{self.azimuth:g}, elevation {self.elevation:g}); leave the view out"
                )
            self.view = own
        self.view = self.view or "front"
        check_choice("view", self.view, VIEWS)

    def cameras(self) -> Cameras | None:
        """``n`` copies of the asked camera, or None."""
        if self.azimuth is None:
            return None
        pose = torch.tensor([self.azimuth, self.elevation, self.radius]).repeat(self.n, 1)
        return Cameras(*pose.T, CameraConfig.fov)


@dataclass
class EvalJob:
    """The judge's verdict on samples of every coloured catalogue prompt and view (`evaluate`)."""

    n: int = 4  # samples per prompt and view
    out: Path = Path("outputs/teacher-eval")  # folder of metrics.json and samples.png
    silhouettes: bool = False  # also the best-pose silhouette IoU ceiling (~1 min more)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # teacher and DDIM
    progress: bool = True  # progress bar over prompts

    def __post_init__(self):
        self.out = Path(self.out)
        _check_positive(self, "n")


@dataclass
class JudgeTrainJob:
    """Training of the object/colour judge on ground-truth renders (`train_judge`)."""

    out: Path = Path("outputs/judge")  # run folder: judge-32.safetensors, metrics.json
    steps: int = 1500  # optimizer steps
    batch: int = 64  # renders per step
    seed: int = 0  # seeds the init and the batches (the held-out set: seed + 12345)
    held_out: int = JUDGE_HELD_OUT  # fresh renders the trained judge is scored on
    progress: bool = True  # progress bar

    def __post_init__(self):
        self.out = Path(self.out)
        _check_positive(self, "steps", "batch", "held_out")


def train_tiny(job: TinyTrainJob) -> dict:
    """Train the tiny teacher into ``job.out``; its parameter count and last history row."""
    from dream3d.teachers.tiny_train import TeacherTrainConfig, train_teacher  # matplotlib: lazy

    check_device(job.device)
    if job.resume and not (job.out / "checkpoint.pt").is_file():
        raise ValueError(f"--resume: no checkpoint at {job.out / 'checkpoint.pt'}")
    torch.manual_seed(job.seed)
    teacher = _tiny_to_train(job)
    teacher.add_captions(all_captions())  # shipped with the weights: no MiniLM at run time
    config = TeacherTrainConfig(
        steps=job.steps,
        batch=job.batch,
        lr=job.lr,
        device=job.device,
        seed=job.seed,
        save_every=job.save_every,
        warmup=job.warmup,
        ema=job.ema,
        progress=job.progress,
    )
    history = train_teacher(teacher, teacher_batch(job.size), config, job.out, job.resume)
    return {"params": teacher.n_params(), "final": history[-1] if history else {}}


def _tiny_to_train(job: TinyTrainJob) -> TinyTeacher:
    """A fresh, resumed (the checkpoint's architecture) or ``job.init``-started tiny teacher."""
    arch = TinyConfig(
        size=job.size,
        block_out_channels=job.channels,
        prediction=job.prediction,
        camera=job.camera,
        camera_harmonics=job.camera_harmonics,
    )
    if job.resume:  # the architecture is the checkpoint's, whatever the job says
        ckpt = read_checkpoint(job.out / "checkpoint.pt")
        arch = TinyConfig(**ckpt.get("teacher_config", asdict(arch)))
    teacher = TinyTeacher(arch).to(job.device)
    if job.init and not job.resume:
        source = TinyTeacher.load(job.init)
        theirs = (source.config.size, source.config.block_out_channels)
        if theirs != (arch.size, arch.block_out_channels):
            raise ValueError(
                f"--init {job.init}: its UNet (size, channels) is {theirs}; this run's is "
                f"{(arch.size, arch.block_out_channels)}"
            )
        teacher.unet.load_state_dict(source.unet.state_dict())
        if source.camera is not None and teacher.camera is not None:
            teacher.camera.extend_from(source.camera)
        teacher.embeddings.update(source.embeddings)  # its caption table: no MiniLM needed
    return teacher


Sampler = Callable[[PromptSpec, list[str], torch.Generator, Cameras | None], torch.Tensor]


def load_tiny_teacher(name: str, weights: Path | None = None) -> TinyTeacher:
    """The tiny teacher ``name`` (tiny | tiny-camera) from ``weights`` or its shipped file; a
    missing file or a text-only file for tiny-camera is a one-line ValueError."""
    return load_camera_tiny(weights) if name == "tiny-camera" else load_tiny(weights)


def sampler(config: SamplingConfig) -> Sampler:
    """``draw(spec, captions, rng, cameras=None)``: one DDIM sample (B, 3, H, W) in [-1, 1] per
    caption, from a tiny teacher (loaded once) or an oracle over the truth of ``spec``.
    ``cameras`` (one per caption) reach the camera teachers only; without them the tiny camera
    teacher draws text-only and the camera oracle draws cameras from each caption's view."""
    tiny = None
    if config.teacher in ("tiny", "tiny-camera"):
        tiny = load_tiny_teacher(config.teacher, config.weights)
    reads_camera = config.teacher in CAMERA_TEACHERS

    def draw(spec, captions, rng, cameras=None) -> torch.Tensor:
        if config.teacher == "oracle-camera" and cameras is None:
            cameras = _view_cameras(spec, captions, rng)
        teacher = tiny or _oracle(config, spec, cameras)
        size = config.size if tiny is None else tiny.config.size
        camera = pose_features(cameras) if reads_camera and cameras is not None else None
        cond = teacher.encode_prompt(captions)
        shape = (len(captions), 3, size, size)
        return ddim_sample(
            teacher, cond, shape, config.steps, config.cfg, rng, clip_x0=1.0, camera=camera
        )

    return draw


def _oracle(config: SamplingConfig, spec: PromptSpec, cameras: Cameras | None):
    """The text-only oracle's banks of ``spec``, or its camera oracle at ``cameras``' fov."""
    if config.teacher == "oracle-camera":
        return camera_oracle(spec, config.size, cameras.fov)
    return oracle_teacher(spec, config.size, OracleSource().per_view, config.seed)


def _view_cameras(spec: PromptSpec, captions: list[str], rng: torch.Generator) -> Cameras:
    """One camera per caption, from the part of the world's distribution of its view."""
    view = {spec.caption(v): v for v in VIEWS}  # another caption: the oracle's own error
    cams = [sample_cameras(1, rng, view=view.get(c)) for c in captions]
    poses = (torch.cat([getattr(c, k) for c in cams]) for k in ("azimuth", "elevation", "radius"))
    return Cameras(*poses, cams[0].fov)


def sample(job: SampleJob) -> dict:
    """A grid of ``job.n`` samples of one prompt and view (or camera) in ``job.out``; its
    caption and path."""
    spec, config = parse_prompt(job.prompt), job.sampling
    caption = spec.caption(job.view)
    rng = torch.Generator().manual_seed(config.seed)
    x = sampler(config)(spec, [caption] * job.n, rng, job.cameras())
    at = "" if job.azimuth is None else f"-az{job.azimuth:g}-el{job.elevation:g}-r{job.radius:g}"
    path = job.out / f"{spec.text.replace(' ', '-')}-{job.view}{at}-{config.teacher}.png"
    save_grid(x, path)
    return {"prompt": caption, "grid": str(path)}


def evaluate(job: EvalJob) -> dict:
    """Object and colour accuracy of the judge on samples of every coloured catalogue prompt."""
    judge, t0 = load_judge(), time.perf_counter()
    images, objects, colours = _catalogue_samples(job)
    metrics = accuracy(judge, torch.cat(images), objects, colours)
    if job.silhouettes:
        metrics |= silhouette_ceiling(torch.cat(images), objects, job.n)
    job.out.mkdir(parents=True, exist_ok=True)
    _save_one_prompt_per_object(images, job.n, job.out / "samples.png")
    metrics |= {
        "teacher": job.sampling.teacher,
        "n": len(objects),
        "cfg": job.sampling.cfg,
        "ddim_steps": job.sampling.steps,
    }
    metrics["seconds"] = time.perf_counter() - t0
    (job.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _catalogue_samples(job: EvalJob) -> tuple[list[torch.Tensor], list[str], list[str]]:
    """Per object x colour prompt, ``job.n`` samples per view (VIEWS order); their labels."""
    rng = torch.Generator().manual_seed(job.sampling.seed)
    draw = sampler(job.sampling)
    images, objects, colours = [], [], []
    prompts = [(obj, colour) for obj in OBJECTS for colour in COLOURS]
    for obj, colour in tqdm(prompts, desc="prompts", disable=not job.progress):
        spec = parse_prompt(f"a {colour} {obj}")
        captions = [spec.caption(v) for v in VIEWS for _ in range(job.n)]
        images.append(draw(spec, captions, rng))
        objects += [obj] * len(captions)
        colours += [colour] * len(captions)
    return images, objects, colours


def _save_one_prompt_per_object(images: list[torch.Tensor], n: int, path: Path) -> None:
    """One row per object (its colour cycling through COLOURS), the first sample of each view."""
    colours = list(COLOURS)
    shown = [images[i * len(colours) + i % len(colours)] for i in range(len(OBJECTS))]
    names = [parse_prompt(f"{colours[i % len(colours)]} {o}").text for i, o in enumerate(OBJECTS)]
    save_prompt_grid([x[::n] for x in shown], names, path)


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


def train_judge(job: JudgeTrainJob) -> dict:
    """Train the judge into ``job.out``; its accuracy on held-out renders and its weights."""
    torch.manual_seed(job.seed)
    judge = Judge(JudgeConfig(objects=list(OBJECTS), colours=list(COLOURS)))
    batch = judge_batch(32)
    history = fit_judge(judge, batch, job.steps, job.batch, seed=job.seed, progress=job.progress)
    rng = torch.Generator().manual_seed(job.seed + 12345)  # held-out renders of their own
    images, obj, col = batch(job.held_out, rng)
    names_o = [OBJECTS[i] for i in obj.tolist()]
    names_c = [list(COLOURS)[i] for i in col.tolist()]
    metrics = {"held_out": accuracy(judge, images, names_o, names_c), "history": history}
    weights = job.out / "judge-32.safetensors"
    judge.save(weights)
    (job.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {"held_out": metrics["held_out"], "weights": str(weights)}


def judged_choices(spec: PromptSpec, n: int, sampling: SamplingConfig | None = None) -> dict:
    """The teacher's own choices for a prompt: ``n`` DDIM samples per view caption, each
    judged for colour (the judge) and variant (the best-pose silhouette fit); what a 3D
    result's spread is compared with (``scenes.score.distribution_scores``)."""
    from scenes.score import foreground, nearest_variant, variants

    sampling = sampling or SamplingConfig()
    views = [v for v in VIEWS for _ in range(n)]
    rng = torch.Generator().manual_seed(sampling.seed)
    images = sampler(sampling)(spec, [spec.caption(v) for v in views], rng).clamp(-1, 1)
    _, colours = load_judge().predict(images)
    found = [spec.object] * len(views)
    if len(variants(spec.object)) > 1:
        found = nearest_variant(foreground((images + 1) / 2), spec.object, views)
    return {
        "variants": found,
        "colours": list(colours),
        "samples": len(views),
        "cfg": sampling.cfg,
        "ddim_steps": sampling.steps,
    }
