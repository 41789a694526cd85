"""Turntable videos: cameras going once around the object, frames written as .gif or .mp4."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image, ImageSequence

from dream3d.cameras import CameraConfig, Cameras

MIN_SIZE = 128  # turntables are at least this many pixels on each side


def turntable_cameras(
    n_frames: int,
    elevation: float = 15.0,
    radius: float | None = None,
    config: CameraConfig | None = None,  # the default camera distribution
) -> Cameras:
    """n_frames cameras at azimuths -180 + 360 k / n_frames, k = 0..n-1: once around, no repeat.

    radius defaults to the middle of ``config.radius``; the field of view is ``config.fov``.
    """
    config = CameraConfig() if config is None else config
    azimuth = torch.linspace(-180.0, 180.0, n_frames + 1)[:-1]
    radius = sum(config.radius) / 2 if radius is None else radius
    return Cameras(
        azimuth, torch.full_like(azimuth, elevation), torch.full_like(azimuth, radius), config.fov
    )


def to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 from (N, 3, H, W) floats in [0, 1] or (N, H, W, 3) uint8."""
    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            frames = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
            frames = frames.permute(0, 2, 3, 1)  # (N, H, W, 3)
        return frames.cpu().numpy()
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    return frames


def upscale(frames: np.ndarray, min_size: int = MIN_SIZE) -> np.ndarray:
    """Frames (N, H, W, 3) upscaled k x (nearest), k the least with k min(H, W) >= min_size."""
    k = -(-min_size // min(frames.shape[1:3]))  # ceil division
    return frames.repeat(k, 1).repeat(k, 2) if k > 1 else frames


def read_gif(path: Path | str) -> np.ndarray:
    """A gif's frames as (N, H, W, 3) uint8."""
    frames = ImageSequence.Iterator(Image.open(path))
    return np.stack([np.asarray(f.convert("RGB")) for f in frames])


def write_video(frames: torch.Tensor | np.ndarray, path: Path | str, fps: int = 24) -> Path:
    """Write frames as a looping .gif or an H.264 .mp4 (yuv420p, plays in browsers).

    frames: (N, 3, H, W) floats in [0, 1] or (N, H, W, 3) uint8; frames under 128 px are
    upscaled (nearest) to at least 128. Returns the path written.
    """
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise ValueError(f"unknown video suffix {path.suffix!r} in {path}; use .gif or .mp4")
    frames = upscale(to_uint8(frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        _write_gif(frames, path, fps)
    else:
        _write_mp4(frames, path, fps)
    return path


def _write_gif(frames: np.ndarray, path: Path, fps: int) -> None:
    """A GIF looping forever; Pillow merges identical consecutive frames into one longer frame."""
    images = [Image.fromarray(f) for f in frames]
    duration = round(1000 / fps)  # milliseconds per frame (GIF keeps 10 ms steps)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """H.264 in yuv420p, which needs even sizes: odd ones get one more row / column (edge)."""
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (frames.shape[2], frames.shape[1]),  # (width, height)
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        macro_block_size=1,  # sizes are already even; don't let it resize
        quality=None,  # set by the constant rate factor below instead
        output_params=["-crf", "18"],  # H.264 quality, 0 (lossless) to 51: near-lossless
    )
    writer.send(None)  # start the ffmpeg process
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
