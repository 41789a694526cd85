"""Wiring of the toy world to the core: data for teachers and the judge, oracle banks, grids.

Only entry points import this (it joins dream3d/, scenes/ and the weights that ship).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from dream3d.cameras import VIEWS, CameraConfig, cameras_from_pose, pose_features
from dream3d.judge import Judge
from dream3d.teachers.deepfloyd import DEFAULT_MODEL as IF_MODEL
from dream3d.teachers.deepfloyd import PIPELINE as IF_PIPELINE
from dream3d.teachers.deepfloyd import cached_if_models, locate_if
from dream3d.teachers.oracle import CameraOracle, OracleTeacher
from dream3d.teachers.stable_diffusion import DEFAULT_MODEL, cached_models, locate, pipeline_class
from dream3d.teachers.tiny import TinyTeacher
from scenes.catalogue import COLOURS, OBJECTS, SHAPES
from scenes.prompts import PromptSpec, canonical, catalogue_prompts
from scenes.render import render
from scenes.world import sample_views

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
TINY_WEIGHTS = WEIGHTS / "tiny-32.safetensors"
TINY_CAMERA_WEIGHTS = WEIGHTS / "tiny-camera-32.safetensors"
JUDGE_WEIGHTS = WEIGHTS / "judge-32.safetensors"
P_NO_COLOUR = 0.25  # training captions that leave the colour out ("a chair, side view")


def all_captions() -> list[str]:
    """Every caption the embedded teachers are trained on: prompt x view."""
    return [f"{p}, {v} view" for p in catalogue_prompts() for v in VIEWS]


def teacher_batch(size: int):
    """batch_fn for teacher training: renders in [-1, 1], captions (some without colour) and
    each render's exact camera as pose features (read by a camera-conditioned teacher)."""

    def batch(n: int, rng: torch.Generator):
        views = sample_views(n, rng, size=size)
        drop = torch.rand(n, generator=rng) < P_NO_COLOUR
        captions = [
            f"{canonical(SHAPES[s].object, None)}, {v} view" if d else c
            for s, v, c, d in zip(views["shape"], views["view"], views["captions"], drop)
        ]
        return views["images"] * 2 - 1, captions, pose_features(views["cameras"])

    return batch


def judge_batch(size: int):
    """batch_fn for the judge: renders in [-1, 1], object and colour indices."""
    colours = list(COLOURS)

    def batch(n: int, rng: torch.Generator):
        views = sample_views(n, rng, size=size)
        obj = torch.tensor([OBJECTS.index(SHAPES[s].object) for s in views["shape"]])
        col = torch.tensor([colours.index(c) for c in views["colour"]])
        return views["images"] * 2 - 1, obj, col

    return batch


def oracle_teacher(spec: PromptSpec, size: int, per_view: int, seed: int = 0) -> OracleTeacher:
    """Banks of ``per_view`` ground-truth renders for each view caption of the prompt."""
    rng = torch.Generator().manual_seed(seed)
    banks = {}
    for view in VIEWS:
        views = sample_views(per_view, rng, spec.shapes, spec.colours, view, size)
        banks[spec.caption(view)] = views["images"] * 2 - 1
    return OracleTeacher(banks)


@dataclass
class TinySource:
    """the shipped tiny UNet (pixel space, MiniLM captions)."""

    name: ClassVar[str] = "tiny"
    embedded: ClassVar[bool] = True  # needs no model files beyond the package's
    weights: str | None = None  # a tiny teacher file; None: the shipped one


@dataclass
class OracleSource:
    """the exact optimal denoiser of banks of ground-truth renders of the prompt."""

    name: ClassVar[str] = "oracle"
    embedded: ClassVar[bool] = True
    per_view: int = 64  # ground-truth renders in the bank of each view caption

    def __post_init__(self):
        if self.per_view < 1:
            raise ValueError(f"per_view must be >= 1, got {self.per_view}")


@dataclass
class TinyCameraSource:
    """the shipped tiny UNet told each view's camera (MVDream's embedding), fine-tuned."""

    name: ClassVar[str] = "tiny-camera"
    embedded: ClassVar[bool] = True
    reads_camera: ClassVar[bool] = True  # told each render's camera
    weights: str | None = None  # a camera tiny teacher file; None: the shipped one


@dataclass
class OracleCameraSource:
    """the exact optimal denoiser of the prompt's true renders from each view's own camera."""

    name: ClassVar[str] = "oracle-camera"
    embedded: ClassVar[bool] = True
    reads_camera: ClassVar[bool] = True
    supersample: int = 2  # rays per pixel side in the bank's renders (the world's default)

    def __post_init__(self):
        if self.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.supersample}")


@dataclass
class SDSource:
    """Stable Diffusion (--model) from a diffusers folder or the HF cache, not fetched"""

    name: ClassVar[str] = "sd"
    embedded: ClassVar[bool] = False
    model: str = DEFAULT_MODEL  # a Hub id (already in the local cache) or a diffusers folder

    @staticmethod
    def locate(model: str) -> Path:
        """The model's folder on this machine, else a ValueError saying how to get it."""
        path = locate(model)
        if pipeline_class(path / "model_index.json") == IF_PIPELINE:
            raise ValueError(f"{model} is a DeepFloyd IF pipeline: use --teacher if")
        return path

    @staticmethod
    def cached() -> list[str]:
        """The Stable Diffusion pipelines in the local Hugging Face cache."""
        return cached_models()


@dataclass
class IFSource:
    """DeepFloyd IF stage I (--model) from a diffusers folder or the HF cache, not fetched"""

    name: ClassVar[str] = "if"
    embedded: ClassVar[bool] = False
    model: str = IF_MODEL  # a Hub id (already in the local cache) or a diffusers folder
    text_device: str | None = None  # where T5 runs (cpu spares the GPU ~9.5 GB); None: device

    def __post_init__(self):
        if self.text_device not in (None, "cpu", "cuda"):
            raise ValueError(f"text_device must be cpu or cuda, got {self.text_device!r}")

    @staticmethod
    def locate(model: str) -> Path:
        """The model's folder on this machine, else a ValueError saying how to get it."""
        return locate_if(model)

    @staticmethod
    def cached() -> list[str]:
        """The IF stage I pipelines in the local Hugging Face cache."""
        return cached_if_models()


def _tiny(source: TinySource, spec, size: int, device: str, seed: int, cameras: CameraConfig):
    return _sized(load_tiny(source.weights, device), size)


def _sized(teacher: TinyTeacher, size: int) -> TinyTeacher:
    if teacher.config.size != size:
        raise ValueError(f"the tiny teacher is {teacher.config.size}px; renders are {size}px")
    return teacher


def _tiny_camera(source: TinyCameraSource, spec, size, device, seed, cameras: CameraConfig):
    check_trained_cameras(cameras)
    return _sized(load_camera_tiny(source.weights, device), size)


def check_trained_cameras(cameras: CameraConfig, label: str = "nerf.cameras.") -> None:
    """A ValueError unless ``cameras`` lie inside the distribution the camera teacher was
    trained on (``CameraConfig()``: `dream3d teacher train` renders from it alone); ``label``
    prefixes the setting's name in the message."""
    trained = CameraConfig()
    for name in ("radius", "elevation"):
        (lo, hi), (t_lo, t_hi) = getattr(cameras, name), getattr(trained, name)
        if lo < t_lo or hi > t_hi:
            asked = f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
            raise ValueError(
                f"{label}{name} {asked} lies outside the camera teacher's trained range "
                f"{t_lo:g}..{t_hi:g}"
            )
    if cameras.fov != trained.fov:
        known = f"the camera teacher knows {trained.fov:g} only"
        raise ValueError(f"{label}fov {cameras.fov:g}: {known}")


def _oracle(source: OracleSource, spec, size: int, device: str, seed: int, cameras: CameraConfig):
    return oracle_teacher(spec, size, source.per_view, seed)


def _oracle_camera(source: OracleCameraSource, spec, size, device, seed, cameras: CameraConfig):
    return camera_oracle(spec, size, cameras.fov, source.supersample)


def camera_oracle(spec: PromptSpec, size: int, fov: float = 40.0, supersample: int = 2):
    """The CameraOracle of ``spec``: at each camera, a bank of every (shape, colour) the prompt
    allows, rendered from that camera in the canonical pose."""
    pairs = [(s, c) for s in spec.shapes for c in spec.colours]

    def bank(pose: torch.Tensor) -> torch.Tensor:
        cams = cameras_from_pose(pose, fov)
        n = len(pairs)
        each = cams[torch.arange(len(cams)).repeat_interleave(n)]  # each camera n times
        shapes, colours = zip(*pairs * len(cams))
        images = render(list(shapes), list(colours), each, size, supersample) * 2 - 1
        return images.reshape(len(cams), n, *images.shape[1:])  # (C, N, 3, size, size)

    return CameraOracle([spec.caption(v) for v in VIEWS], bank)


def _sd(source: SDSource, spec, size: int, device: str, seed: int, cameras: CameraConfig):
    from dream3d.teachers.stable_diffusion import StableDiffusionTeacher

    return StableDiffusionTeacher.load(str(source.locate(source.model)), device)


def _if(source: IFSource, spec, size: int, device: str, seed: int, cameras: CameraConfig):
    from dream3d.teachers.deepfloyd import IFTeacher

    check_device(source.text_device or device)
    return IFTeacher.load(str(source.locate(source.model)), device, text_device=source.text_device)


# Teachers of the toy world by name: (build(source, prompt spec, size, device, seed, the run's
# CameraConfig), source config). Adding one is a module in dream3d/teachers/ plus an entry here;
# the CLI's --teacher choices, the app's menu and the error messages read this dict. A teacher
# with ``reads_camera`` gets each render's camera; the others hear only the view caption.
TEACHERS = {
    "tiny": (_tiny, TinySource),
    "tiny-camera": (_tiny_camera, TinyCameraSource),
    "oracle": (_oracle, OracleSource),
    "oracle-camera": (_oracle_camera, OracleCameraSource),
    "sd": (_sd, SDSource),
    "if": (_if, IFSource),
}


def teacher_help(names=None) -> str:
    """One line per teacher (``names``: these only): its name and what it is (for --help and
    the app's menu)."""
    return "; ".join(
        f"{n}: {c.__doc__.splitlines()[0].rstrip('.')}"
        for n, (_, c) in TEACHERS.items()
        if names is None or n in names
    )


def build_teacher(
    source, spec: PromptSpec, size: int, device: str = "cpu", seed: int = 0, cameras=None
):
    """The teacher ``source`` (a TEACHERS config) describes, for prompt ``spec`` and renders
    from ``cameras`` (a CameraConfig; the world's default if None)."""
    cameras = CameraConfig() if cameras is None else cameras
    return TEACHERS[source.name][0](source, spec, size, device, seed, cameras)


def check_device(device: str, what: str = "--device cuda") -> None:
    """A ValueError when ``device`` is cuda on a machine without CUDA (``what`` asked for it)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} asked for, but this machine has no CUDA device")


def load_tiny(path: Path | None = None, device: str = "cpu", camera: bool = False) -> TinyTeacher:
    """A tiny teacher file (default: the shipped text-only one, or with ``camera`` the shipped
    camera one); a missing file is one ValueError line saying how to make it."""
    path = Path(path) if path else (TINY_CAMERA_WEIGHTS if camera else TINY_WEIGHTS)
    if not path.is_file():
        how = f" --camera --init {TINY_WEIGHTS} (then copy OUT/teacher.safetensors)" * camera
        raise ValueError(
            f"no tiny teacher weights at {path}; train them: dream3d teacher train{how}"
        )
    return TinyTeacher.load(path, device)


def load_camera_tiny(path: Path | None = None, device: str = "cpu") -> TinyTeacher:
    """``load_tiny(path, device, camera=True)``; a text-only file is one ValueError line."""
    teacher = load_tiny(path, device, camera=True)
    if not teacher.reads_camera:
        raise ValueError(f"{path} is a text-only tiny teacher: use --teacher tiny")
    return teacher


def load_judge(path: Path | None = None) -> Judge:
    path = Path(path) if path else JUDGE_WEIGHTS
    if not path.is_file():
        raise ValueError(f"no judge weights at {path}; train them: dream3d judge train")
    return Judge.load(path)


def grid_array(images: torch.Tensor, cols: int = 8, scale: int = 2) -> np.ndarray:
    """Images (B, 3, H, W) in [-1, 1] as one grid (rows (H + 2) scale, cols (W + 2) scale, 3)
    uint8: each image in a 1 px white border, ``cols`` a row, upscaled ``scale`` x (nearest)."""
    b, _, h, w = images.shape
    cols = min(cols, b)
    rows = -(-b // cols)
    grid = torch.ones(3, rows * (h + 2), cols * (w + 2))
    for i, img in enumerate(images.detach().float().cpu().clamp(-1, 1).add(1).div(2)):
        r, c = divmod(i, cols)
        grid[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = img
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def save_grid(images: torch.Tensor, path: Path, cols: int = 8, scale: int = 2) -> None:
    """Images (B, 3, H, W) in [-1, 1] as one PNG grid (``grid_array``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid_array(images, cols, scale)).save(path)


def save_prompt_grid(images: list[torch.Tensor], prompts: list[str], path: Path) -> None:
    """One row per prompt, one column per view: ``images[i]`` is (len(VIEWS), 3, H, W)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.3 * len(VIEWS) + 1.6, 1.3 * len(prompts)))
    axes = fig.subplots(len(prompts), len(VIEWS), squeeze=False)
    for row, (views, prompt) in enumerate(zip(images, prompts)):
        for col, img in enumerate(views):
            ax = axes[row, col]
            ax.imshow(img.clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(VIEWS[col], fontsize=9)
        axes[row, 0].set_ylabel(prompt, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
