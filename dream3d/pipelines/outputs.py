"""What a NeRF run leaves behind: views.png, progress.png, turntable.mp4/.gif, mesh.* and scores.

Scores compare the NeRF with the exact ground truth of the prompt's catalogue object
(DESIGN.md section 6): silhouette IoU on held-out views, 3D occupancy IoU, Chamfer distance
of the exported mesh, and its mean colour against the asked one; how square it is across
(corner ratio) and whether views all around agree on one yaw (Janus): scenes/shape_scores.py.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from dream3d.cameras import CameraConfig, Cameras, sample_cameras
from dream3d.clock import NO_CLOCK
from dream3d.video import read_gif, turntable_cameras, write_video
from scenes.shape_scores import orbit_cameras  # 15 degrees up, radius 2.8: a result's views

_MATPLOTLIB = threading.Lock()  # its text layout is not thread-safe: the app draws as runs save
VIEW_AZIMUTHS = (0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0)  # views.png columns


def render_views(generator, cameras: Cameras, size: int, samples: int, shading="albedo"):
    """rgb (B, 3, size, size) in [0, 1] and opacity (B, 1, size, size), no grad, midpoints."""
    outs = render_each(generator, cameras, size, samples, shading)
    return torch.cat([o["rgb"] for o in outs]), torch.cat([o["opacity"] for o in outs])


def render_each(generator, cameras: Cameras, size: int, samples: int, shading="albedo"):
    """``render_image``'s outputs for each camera in turn (batches of one) on the CPU: a list
    of dicts of rgb (1, 3, size, size), opacity and depth (1, 1, size, size); no grad."""
    config = replace(generator.config.render, samples=samples, jitter=False, chunk=4096)
    from generators.nerf.render import render_image

    outs = []
    for i in range(len(cameras)):
        one = cameras[i : i + 1]
        with torch.no_grad():  # the field's normals take their own gradient inside
            out = render_image(
                generator.field, one, size, config, shading, occupancy=generator.occupancy
            )
        outs.append({k: out[k].detach().cpu() for k in ("rgb", "opacity", "depth")})
    return outs


def nerf_depth_fn(generator, size: int = 32, samples: int = 64, min_opacity: float = 0.5):
    """A ``scenes.shape_scores.janus_score`` depth_fn of a NeRF: cameras -> (B, size, size)
    expected depth sum_i w_i t_i / opacity where the opacity exceeds ``min_opacity``, inf
    (background) elsewhere."""

    def depth_fn(cameras: Cameras) -> torch.Tensor:
        outs = render_each(generator, cameras, size, samples)
        opacity = torch.cat([o["opacity"] for o in outs])[:, 0]  # (B, size, size)
        depth = torch.cat([o["depth"] for o in outs])[:, 0]
        covered = opacity > min_opacity
        return torch.where(covered, depth / opacity.clamp(min=1e-6), torch.inf)

    return depth_fn


def held_out_cameras(n: int = 16, seed: int = 12345) -> Cameras:
    """Views no run trains on (a fixed seed), for silhouette scores."""
    return sample_cameras(n, torch.Generator().manual_seed(seed), CameraConfig())


def save_views(generator, path: Path, size: int = 64, samples: int = 64) -> None:
    """Two rows of 8 views around the object: albedo, then lambertian shading."""
    from dream3d.pipelines.world import save_grid

    cams = orbit_cameras(VIEW_AZIMUTHS)
    albedo, _ = render_views(generator, cams, size, samples)
    shaded, _ = render_views(generator, cams, size, samples, "lambertian")
    save_grid(torch.cat([albedo, shaded]) * 2 - 1, path, cols=len(VIEW_AZIMUTHS), scale=2)


def save_progress(history: list[dict], path: Path, keys=("loss", "grad_norm")) -> None:
    """progress.png: ``progress_figure``."""
    with _MATPLOTLIB:
        progress_figure(history, (4 * len(keys), 3), keys).savefig(path, dpi=100)


def progress_image(history: list[dict], size=(6, 2.4)) -> np.ndarray:
    """``progress_figure`` drawn: (H, W, 3) uint8 (the app's live curves)."""
    with _MATPLOTLIB:
        canvas = FigureCanvasAgg(progress_figure(history, size))
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def progress_figure(history: list[dict], size=(8, 3), keys=("loss", "grad_norm")) -> Figure:
    """Each key of the history rows (loss and |g| by default) against step, log scale; a key
    only some rows hold (fd, scored every few hundred steps) is drawn with markers."""
    fig = Figure(figsize=size)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        rows = [r for r in history if r.get(key) is not None]
        style = {"marker": "o", "ms": 3} if len(rows) < len(history) / 2 else {}
        ax.plot([r["step"] for r in rows], [max(r[key], 1e-12) for r in rows], lw=0.8, **style)
        ax.set(xlabel="step", ylabel=key, yscale="log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def save_turntable(generator, out: Path, config, progress: bool) -> None:
    """turntable.mp4 and .gif (``config``: an OutputsConfig): one orbit at 15 degrees, albedo."""
    cams = turntable_cameras(config.video_frames)
    frames = []
    for i in tqdm(range(len(cams)), desc="turntable", disable=not progress, leave=False):
        one = cams[i : i + 1]
        frames.append(render_views(generator, one, config.video_size, config.video_samples)[0])
    frames = torch.cat(frames)
    write_video(frames, out / "turntable.mp4", fps=12)
    write_video(frames, out / "turntable.gif", fps=12)


def scores(generator, spec, mesh, threshold: float) -> dict:
    """Ground-truth scores of the field and its mesh against the prompt's catalogue object."""
    import trimesh

    from generators.nerf.export import (
        area_ratio,
        chamfer_distance,
        mean_vertex_colour,
        normal_consistency,
    )
    from scenes import truth
    from scenes.score import (
        best_variant,
        colour_error,
        grid_points,
        nearest_colour,
        occupied,
        silhouette_iou,
    )

    points = grid_points(64)
    device = next(generator.field.parameters()).device
    inside = occupied(generator.field.density, points.to(device), threshold)  # (N,) on the CPU
    variant, occ = best_variant(inside, points, spec.object)
    cams = held_out_cameras()
    _, opacity = render_views(generator, cams, 32, 64)
    ref = trimesh.Trimesh(*truth.mesh(variant, 96), process=False)
    colour = mean_vertex_colour(mesh).tolist()
    result = {
        "object": spec.object,
        "closest_variant": variant,
        "occupancy_iou": round(occ, 4),
        "silhouette_iou": round(silhouette_iou(opacity, variant, cams), 4),
        "chamfer": round(chamfer_distance(mesh, ref), 4),
        "area_ratio": round(area_ratio(mesh, ref), 4),
        "normal_consistency": round(normal_consistency(mesh, ref), 4),
        "mean_colour": [round(c, 4) for c in colour],
        "nearest_colour": nearest_colour(colour),
        **shape_scores(generator, mesh, variant),
    }
    if spec.colour:
        result["asked_colour"] = spec.colour
        result["colour_error"] = round(colour_error(colour, spec.colour), 4)
    return result


def shape_scores(generator, mesh, variant: str) -> dict:
    """corner_ratio of the mesh (world frame, z up: as extracted, before save_mesh's y-up
    files) and of the truth ``variant``; the Janus score of 32-pixel depth views (off
    fraction, janus as 0/1, median yaw; None for a round variant): scenes.shape_scores."""
    from scenes.shape_scores import corner_ratio, janus_score, true_corner_ratio

    ratio, truth = corner_ratio(np.asarray(mesh.vertices)), true_corner_ratio(variant)
    janus = janus_score(nerf_depth_fn(generator, 32, 64), variant, 32)
    return {
        "corner_ratio": None if ratio is None else round(ratio, 4),
        "corner_ratio_truth": None if truth is None else round(truth, 4),
        "janus_off_fraction": None if janus is None else round(janus["off_fraction"], 4),
        "janus": None if janus is None else int(janus["janus"]),
        "janus_yaw": None if janus is None else janus["yaw"],
    }


def write_outputs(
    generator, spec, config, history, out: Path, progress: bool = True, clock=NO_CLOCK
) -> dict:
    """Every file of a finished run in ``out``; returns the metrics. ``clock`` times the
    parts: "progress.png", "views.png", "turntable", "mesh" (extraction and files), "scores"."""
    with clock("progress.png"):
        save_progress(history, out / "progress.png")
    written = write_object(generator, spec, config.outputs, out, progress, clock)
    last = history[-1] if history else {}
    return {
        "prompt": config.prompt,
        "caption": spec.text,
        "guidance": config.guidance.name,
        "teacher": config.teacher.name,
        "seed": config.train.seed,
        "steps": config.train.steps,
        "final_loss": last.get("loss"),
        **written,
        "files": sorted(p.name for p in out.iterdir() if p.is_file()),
    }


def write_object(generator, spec, o, out: Path, progress: bool = True, clock=NO_CLOCK) -> dict:
    """views.png, the turntable, the mesh files of one NeRF (``o``: an OutputsConfig) in
    ``out``, and its scores against the prompt's truth: {"mesh": ..., "truth": ...}."""
    from generators.nerf.export import extract_mesh, mesh_metrics, save_mesh

    generator.eval()
    generator.refresh_occupancy()  # the last refresh is up to grid.every steps old
    with clock("views.png"):
        save_views(generator, out / "views.png", o.views_size, o.views_samples)
    with clock("turntable"):
        save_turntable(generator, out, o, progress)
    field = generator.field
    with clock("mesh"):
        device = next(field.parameters()).device
        mesh = extract_mesh(field.density, field.albedo, o.mesh, device)
        save_mesh(mesh, out)
    with clock("scores"):
        truth = scores(generator, spec, mesh, o.mesh.threshold)
    return {"mesh": mesh_metrics(mesh), "truth": truth}


def write_particle_outputs(
    particles, spec, config, history, out: Path, progress: bool = True, clock=NO_CLOCK
) -> dict:
    """``write_outputs`` for each particle into OUT/particle-<k>/, then ``combine`` them:
    OUT/views.png, the tiled turntable, the mean scores and their spread over the prompt's
    choices; and OUT/progress.png."""
    folders = [out / f"particle-{k}" for k in range(len(particles.nerfs))]
    runs = []
    for nerf, folder in zip(tqdm(particles.nerfs, desc="particles", disable=not progress), folders):
        folder.mkdir(exist_ok=True)
        runs.append(write_outputs(nerf, spec, config, history, folder, False, clock))
        (folder / "metrics.json").write_text(json.dumps(runs[-1], indent=1))
    save_progress(history, out / "progress.png")
    return {
        **{k: v for k, v in runs[0].items() if k not in ("final_loss", "mesh", "truth", "files")},
        "particles": len(runs),
        "final_loss": runs[0]["final_loss"],
        **combine(folders, [r["truth"] for r in runs], spec, out, "particle"),
        "files": sorted(p.name for p in out.iterdir() if p.is_file()),
    }


def combine(folders: list[Path], truths: list[dict], spec, out: Path, label: str) -> dict:
    """Several objects of one prompt (particles, or a generator's z's), each written in its
    folder: OUT/views.png (their albedo rows), OUT/turntable.mp4/.gif (tiled), and
    {"truth": the mean scores, "<label>_truth": each one's, "distribution": how they spread
    over the prompt's choices (``scenes.score.distribution_scores``)}."""
    from dream3d.pipelines.stats import choices_of
    from scenes.score import distribution_scores

    particle_grid(folders, out / "views.png")
    tiled_turntable(folders, out)
    return {
        "truth": mean_truth(truths),
        f"{label}_truth": truths,
        "distribution": distribution_scores(*choices_of({"particle_truth": truths}), spec),
    }


def mean_truth(truths: list[dict]) -> dict:
    """The mean of each numeric score over particles (over those that have it: None is not
    scored); labels as counts ("red 3, blue 1"); janus_yaw, an angle, left out (each
    particle's is in its own truth)."""
    from collections import Counter

    mean = {}
    for key, value in truths[0].items():
        values = [t.get(key) for t in truths]
        numbers = [v for v in values if v is not None]
        if key == "janus_yaw":
            continue
        if numbers and all(isinstance(v, (int, float)) for v in numbers):
            mean[key] = round(sum(numbers) / len(numbers), 4)
        elif isinstance(value, str) and key not in ("object", "asked_colour"):
            mean[key] = ", ".join(f"{v} {n}" for v, n in Counter(values).most_common())
        elif not isinstance(value, list):
            mean[key] = value
    return mean


def particle_grid(folders: list[Path], path: Path) -> None:
    """views.png: the albedo row of each particle's views.png, labelled, one row each."""
    from PIL import Image, ImageDraw

    rows = []
    for k, folder in enumerate(folders):
        views = Image.open(folder / "views.png").convert("RGB")
        row = views.crop((0, 0, views.width, views.height // 2))
        canvas = Image.new("RGB", (row.width + 24, row.height), "white")
        canvas.paste(row, (24, 0))
        ImageDraw.Draw(canvas).text((4, row.height // 2 - 6), str(k), fill="black")
        rows.append(canvas)
    grid = Image.new("RGB", (rows[0].width, rows[0].height * len(rows)), "white")
    for i, row in enumerate(rows):
        grid.paste(row, (0, i * row.height))
    grid.save(path)


def tiled_turntable(folders: list[Path], out: Path, cols: int = 4) -> None:
    """turntable.mp4 and .gif: the particles' turntables in a grid, ``cols`` to a row."""
    clips = [read_gif(folder / "turntable.gif") for folder in folders]  # each (N, H, W, 3)
    cols = min(cols, len(clips))
    clips += [np.full_like(clips[0], 255)] * (-len(clips) % cols)
    rows = [np.concatenate(clips[i : i + cols], axis=2) for i in range(0, len(clips), cols)]
    video = np.concatenate(rows, axis=1)
    write_video(video, out / "turntable.mp4", fps=12)
    write_video(video, out / "turntable.gif", fps=12)
