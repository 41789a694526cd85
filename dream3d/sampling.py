"""Samplers for any teacher: draw x0 from the teacher's own distribution.

They need only the Teacher protocol (``alphas_cumprod``, ``encode_prompt``, ``eps``), so the
exact GMM, the oracle, the tiny UNet and Stable Diffusion are all sampled the same way.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from dream3d.guidance.base import eps_cfg
from dream3d.teachers.base import Teacher


def ddim_timesteps(n_train: int, steps: int) -> torch.Tensor:
    """``steps`` integer timesteps evenly spaced over 0..n_train-1, descending (long)."""
    if not 1 <= steps <= n_train:
        raise ValueError(f"sampling steps must be in 1..{n_train}, got {steps}")
    return torch.linspace(n_train - 1, 0, steps, dtype=torch.float64).round().long()


def ddim_step(x_t, eps, abar_t: float, abar_prev: float, eta: float, noise, clip_x0=None):
    """One step of DDIM (Song et al. 2021, eq. 12) from abar_t to abar_prev.

    ``x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)``
    (eq. 16); eta = 0 is deterministic DDIM, eta = 1 is DDPM's ancestral step. With
    ``clip_x0 = c``, x0_hat is clamped to [-c, c] and eps re-derived from it (as DDPM's
    sampler and diffusers' ``clip_sample`` do for images): at large t, x0_hat divides the
    eps error by sqrt(abar_t) ~ 0.006, and the clamp keeps that from saturating the image.
    """
    x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t**0.5
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - abar_t**0.5 * x0) / (1 - abar_t) ** 0.5
    sigma = eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) ** 0.5
    x_prev = abar_prev**0.5 * x0 + max(1 - abar_prev - sigma**2, 0.0) ** 0.5 * eps
    return x_prev + sigma * noise if sigma > 0 else x_prev


def _batched(cond: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """cond expanded to a batch of n (it may hold 1 or n rows)."""
    if cond is None or cond.shape[0] == n:
        return cond
    if cond.shape[0] != 1:
        raise ValueError(f"cond has {cond.shape[0]} rows for a batch of {n}; pass 1 or {n}")
    return cond.expand(n, *cond.shape[1:])


@torch.no_grad()
def ddim_sample(
    teacher: Teacher,
    cond: torch.Tensor | None,  # teacher.encode_prompt(...) with 1 or shape[0] rows; None: uncond
    shape: tuple[int, ...],  # (B, ...) of the samples
    steps: int = 50,  # DDIM steps, evenly spaced over the teacher's schedule
    cfg_scale: float = 3.0,  # classifier-free guidance scale (1: plain conditional)
    generator: torch.Generator | None = None,  # seeds x_T and the eta > 0 noise
    eta: float = 0.0,  # 0: deterministic DDIM; 1: DDPM-like ancestral noise
    progress: bool = False,  # show a progress bar
    device: torch.device | str | None = None,  # where x lives; cond's device if None
    clip_x0: float | None = None,  # clamp x0 estimates to [-c, c]; 1.0 for images in [-1, 1]
    camera: torch.Tensor | None = None,  # (B, POSE_DIM) cameras, for a camera-conditioned teacher
) -> torch.Tensor:
    """x0 (B, ...) float32 by DDIM from x_T ~ N(0, I), with CFG eps_u + w (eps_c - eps_u).

    The last step goes to abar = 1, so the result is the final x0 estimate.
    """
    abar = teacher.alphas_cumprod.double().cpu()
    device = device or (cond.device if cond is not None else "cpu")
    cond = _batched(cond, shape[0])
    uncond = None
    if cond is not None and cfg_scale != 1.0:
        uncond = _batched(teacher.encode_prompt([""]).to(cond.device), shape[0])
    ts = ddim_timesteps(len(abar), steps)
    x = torch.randn(shape, generator=generator).to(device)
    for i in tqdm(range(steps), desc="ddim", disable=not progress, leave=False):
        t = ts[i].expand(shape[0]).to(device)
        eps = eps_cfg(teacher, x, t, cond, uncond, cfg_scale, camera).float()
        abar_prev = float(abar[ts[i + 1]]) if i + 1 < steps else 1.0
        noise = torch.randn(shape, generator=generator).to(device) if eta > 0 else None
        x = ddim_step(x, eps, float(abar[ts[i]]), abar_prev, eta, noise, clip_x0)
    return x
