"""The camera teachers' own check: samples drawn at exact cameras, scored against the truth there.

Every coloured catalogue prompt gets the same ``cameras`` exact cameras (the world's
distribution, one fixed seed) for every teacher, and every teacher starts from the same x_T, so
the teachers differ only in what they draw. A sample is scored against the true render at its
own camera: the IoU of its foreground with the true render's (best over the object's variants)
and the judge's colour. A text-only teacher hears only the camera's view caption, so it reaches
a high IoU only where the view fixes the silhouette; a camera teacher should reach it
everywhere (the camera oracle does, by construction).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dream3d.cameras import Cameras, sample_cameras
from dream3d.diffusion import check_choice
from dream3d.pipelines.teacher import EMBEDDED, SamplingConfig, sampler
from dream3d.pipelines.world import load_judge
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import parse_prompt

PICTURED = ("cube", "chair")  # the objects of the picture (two colours each, every camera)


@dataclass
class CameraCheckJob:
    """Teachers' samples at exact cameras against the true renders there (`check_cameras`)."""

    teachers: tuple[str, ...] = ("tiny", "tiny-camera")  # EMBEDDED names, on the same cameras
    cameras: int = 2  # exact cameras per prompt, from the world's distribution
    objects: tuple[str, ...] = tuple(OBJECTS)  # catalogue objects, each in every colour
    colours: tuple[str, ...] = tuple(COLOURS)  # catalogue colours
    weights: Path | None = None  # tiny teacher file (None: the shipped one)
    camera_weights: Path | None = None  # tiny-camera teacher file (None: the shipped one)
    out: Path = Path("outputs/teacher-check-cameras")  # metrics.json, check.md, samples.csv/png
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # DDIM (teacher: each one)
    progress: bool = True  # progress bar over prompts

    def __post_init__(self):
        self.out = Path(self.out)
        self.teachers, self.objects = tuple(self.teachers), tuple(self.objects)
        self.colours = tuple(self.colours)
        for kind, names, choices in [
            ("teacher", self.teachers, EMBEDDED),
            ("object", self.objects, tuple(OBJECTS)),
            ("colour", self.colours, tuple(COLOURS)),
        ]:
            if not names or len(set(names)) < len(names):
                raise ValueError(f"expected one or more different {kind}s, got {names}")
            for name in names:
                check_choice(kind, name, choices)
        if self.cameras < 1:
            raise ValueError(f"cameras must be positive, got {self.cameras}")

    def prompts(self) -> list[tuple[str, str]]:
        """(object, colour) of every prompt checked, objects outermost."""
        return [(obj, colour) for obj in self.objects for colour in self.colours]

    def config(self, teacher: str) -> SamplingConfig:
        """The sampling settings of ``teacher``: the job's, with that teacher's weights."""
        weights = {"tiny": self.weights, "tiny-camera": self.camera_weights}.get(teacher)
        return replace(self.sampling, teacher=teacher, weights=weights)


def check_cameras_of(job: CameraCheckJob) -> Cameras:
    """``job.cameras`` cameras per prompt (prompt i has rows i N .. i N + N - 1), from the
    world's distribution seeded by the sampling seed + 1 (x_T has the seed's own stream) and
    nothing else: every teacher gets the same."""
    rng = torch.Generator().manual_seed(job.sampling.seed + 1)
    return sample_cameras(len(job.prompts()) * job.cameras, rng)


def camera_iou(
    images: torch.Tensor, obj: str, colour: str, cameras: Cameras
) -> tuple[torch.Tensor, list[str]]:
    """(B,) IoU of each sample's foreground (images (B, 3, H, W) in [-1, 1]) with the true
    render's foreground at its own camera, best over the object's variants in ``colour``; and
    that variant. Both sides go through ``scenes.score.foreground``, so the true render scores
    exactly 1 (against the one-ray ``scenes.truth.silhouette`` it scores ~0.95 at 32 px: the
    foreground keeps the anti-aliased rim pixels a quarter covered, the silhouette half)."""
    from scenes.render import render
    from scenes.score import foreground, variants

    masks = foreground((images + 1) / 2).flatten(1)  # (B, H W)
    names, size, n = variants(obj), images.shape[-1], len(cameras)
    truth = torch.stack([foreground(render([v] * n, [colour] * n, cameras, size)) for v in names])
    truth = truth.flatten(2)  # (V, B, H W)
    scores = (truth & masks).sum(-1) / (truth | masks).sum(-1).clamp(min=1)  # (V, B)
    best, which = scores.max(0)
    return best, [names[i] for i in which.tolist()]


def check_cameras(job: CameraCheckJob) -> dict:
    """Each teacher's samples at the check's cameras, scored; metrics.json, check.md,
    samples.csv and samples.png (truth | each teacher) in ``job.out``."""
    cameras, judge = check_cameras_of(job), load_judge()
    draws = {name: sampler(job.config(name)) for name in job.teachers}  # bad weights fail now
    results = {}
    for name, draw in draws.items():
        t0 = time.perf_counter()
        images = _teacher_samples(job, name, draw, cameras)
        results[name] = _scores(job, images, cameras) | {
            "images": images,
            "colour": judge.predict(images)[1],
            "seconds": time.perf_counter() - t0,
        }
    metrics = _metrics(job, results)
    job.out.mkdir(parents=True, exist_ok=True)
    (job.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (job.out / "check.md").write_text(check_table(metrics))
    _write_samples(job, cameras, results, job.out / "samples.csv")
    _save_picture(job, cameras, results, job.out / "samples.png")
    return metrics


def _teacher_samples(job: CameraCheckJob, teacher: str, draw, cameras: Cameras) -> torch.Tensor:
    """(P N, 3, H, W) samples in [-1, 1] by ``draw`` (``teacher``'s sampler), prompt by prompt,
    each at its camera with its camera's view caption; x_T from the sampling seed (the same for
    every teacher)."""
    n = job.cameras
    rng = torch.Generator().manual_seed(job.sampling.seed)
    images = []
    prompts = tqdm(job.prompts(), desc=teacher, disable=not job.progress)
    for i, (obj, colour) in enumerate(prompts):
        spec, cams = parse_prompt(f"a {colour} {obj}"), cameras[i * n : i * n + n]
        images.append(draw(spec, [spec.caption(v) for v in cams.views()], rng, cams))
    return torch.cat(images).clamp(-1, 1)


def _scores(job: CameraCheckJob, images: torch.Tensor, cameras: Cameras) -> dict:
    """Each sample's silhouette IoU at its camera and the variant it fits best."""
    n, ious, found = job.cameras, [], []
    for i, (obj, colour) in enumerate(job.prompts()):
        at = slice(i * n, i * n + n)
        iou, variant = camera_iou(images[at], obj, colour, cameras[at])
        ious += iou.tolist()
        found += variant
    return {"iou": ious, "variant": found}


def _metrics(job: CameraCheckJob, results: dict) -> dict:
    """Per teacher: mean IoU overall and per object, the judge's colour accuracy, n, seconds."""
    objects = [obj for obj, _ in job.prompts() for _ in range(job.cameras)]
    colours = [colour for _, colour in job.prompts() for _ in range(job.cameras)]
    teachers = {}
    for name, r in results.items():
        per_object = {
            obj: _mean([s for s, o in zip(r["iou"], objects) if o == obj]) for obj in job.objects
        }
        right = [p == c for p, c in zip(r["colour"], colours)]
        weights = job.config(name).weights
        teachers[name] = {
            "iou": _mean(r["iou"]),
            "iou_per_object": per_object,
            "colour": _mean(right),
            "n": len(r["iou"]),
            "seconds": round(r["seconds"], 1),
            "weights": None if weights is None else str(weights),  # None: shipped or none
        }
    settings = {"cameras_per_prompt": job.cameras, "prompts": len(job.prompts())}
    sampling = {
        "ddim_steps": job.sampling.steps,
        "cfg": job.sampling.cfg,
        "seed": job.sampling.seed,
    }
    return {"teachers": teachers} | settings | sampling


def _mean(values: list) -> float:
    return round(sum(values) / len(values), 4)


def check_table(metrics: dict) -> str:
    """Markdown: one row per teacher (IoU at the camera, colour accuracy, n, seconds), then the
    mean IoU per object, one column per teacher."""
    teachers = metrics["teachers"]
    lines = [
        "| teacher | silhouette IoU at the camera | colour accuracy | n | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, m in teachers.items():
        lines.append(
            f"| {name} | {m['iou']:.3f} | {m['colour']:.3f} | {m['n']} | {m['seconds']:g} |"
        )
    lines += ["", "| object | " + " | ".join(teachers) + " |", "|---" * (len(teachers) + 1) + "|"]
    for obj in next(iter(teachers.values()))["iou_per_object"]:
        row = " | ".join(f"{m['iou_per_object'][obj]:.3f}" for m in teachers.values())
        lines.append(f"| {obj} | {row} |")
    return "\n".join(lines) + "\n"


def _write_samples(job: CameraCheckJob, cameras: Cameras, results: dict, path: Path) -> None:
    """One row per sample: prompt, camera, view, and each teacher's IoU, variant and colour."""
    prompts = [p for p in job.prompts() for _ in range(job.cameras)]
    poses = torch.stack([cameras.azimuth, cameras.elevation, cameras.radius], 1).tolist()
    keys = ("iou", "variant", "colour")
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        head = ["object", "colour", "azimuth", "elevation", "radius", "view"]
        out.writerow(head + [f"{k}_{t}" for t in results for k in keys])
        for i, (prompt, pose, view) in enumerate(zip(prompts, poses, cameras.views())):
            theirs = [r[k][i] for r in results.values() for k in keys]
            numbers = [round(v, 4) if isinstance(v, float) else v for v in pose + theirs]
            out.writerow([*prompt, *numbers[:3], view, *numbers[3:]])


def _save_picture(job: CameraCheckJob, cameras: Cameras, results: dict, path: Path) -> None:
    """Rows: the cube and chair prompts of the first two colours at each of their cameras;
    columns: the true render (of the variant the last teacher's sample fits best) | each
    teacher's sample."""
    from matplotlib.figure import Figure

    from scenes.render import render

    labels = [p for p in job.prompts() for _ in range(job.cameras)]
    picked = [i for i, (o, c) in enumerate(labels) if o in PICTURED and c in job.colours[:2]]
    if not picked:
        return
    cams = cameras[torch.tensor(picked)]
    size = max(r["images"].shape[-1] for r in results.values())
    variants = [results[job.teachers[-1]]["variant"][i] for i in picked]
    truth = render(variants, [labels[i][1] for i in picked], cams, size) * 2 - 1
    columns = {"truth": truth} | {name: r["images"][picked] for name, r in results.items()}
    fig = Figure(figsize=(1.3 * len(columns) + 1.2, 1.3 * len(picked)))
    axes = fig.subplots(len(picked), len(columns), squeeze=False)
    for col, (name, images) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=9)
        for row, image in enumerate(images):
            axes[row, col].imshow(image.add(1).div(2).clamp(0, 1).permute(1, 2, 0).numpy())
            axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
    for row, (i, az, el) in enumerate(zip(picked, cams.azimuth, cams.elevation)):
        obj, colour = labels[i]
        axes[row, 0].set_ylabel(f"{colour} {obj}\naz {az:.0f} el {el:.0f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
