"""What SDS and IKL share: timestep draws, classifier-free guidance, weighting, injection.

A guidance turns generator samples x0 (B, ...) into a loss whose gradient on x0 is
``g / B`` with ``g = w(t) (eps_teacher_cfg(x_t) - eps_fake(x_t))`` (DESIGN.md section 1).
Subclasses say only what ``eps_fake`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from dream3d.diffusion import (
    WEIGHTINGS,
    TimeConfig,
    Weighting,
    add_noise,
    append_dims,
    check_choice,
    predict_x0,
    sample_t,
    weight,
)
from dream3d.teachers.base import Teacher, teacher_eps


@dataclass
class GuidanceConfig(TimeConfig):
    """Knobs every guidance shares (t range and annealing come from TimeConfig); SDS's config."""

    name: ClassVar[str] = "sds"  # the guidance this configures (its GUIDANCES entry)
    # classifier-free guidance eps_u + omega (eps_c - eps_u); DreamFusion and threestudio write
    # eps_c + w (eps_c - eps_u), so their w = omega - 1 (their w = 100 is omega = 101); 20 is
    # dream3d run's scale with the 32-pixel tiny teacher, as in the README's measured tables
    cfg_scale: float = 20.0
    weighting: Weighting = "sds"  # w(t): sds | uniform | snr | dmd
    grad_clip: float | None = None  # clamp g elementwise to [-c, c] (None: off)
    nan_guard: bool = True  # zero non-finite entries of g and count them

    def __post_init__(self):
        super().__post_init__()
        check_choice("weighting", self.weighting, WEIGHTINGS)
        if not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise ValueError(f"cfg scale must be a finite number >= 0, got {self.cfg_scale}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad clip must be positive, got {self.grad_clip}")


def inject(x0: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient on x0 is g / B, with no graph through g."""
    target = (x0 - g).detach()
    return 0.5 * (x0 - target).pow(2).sum() / x0.shape[0]


def eps_cfg(teacher: Teacher, x_t, t, cond, uncond, scale: float, camera=None) -> torch.Tensor:
    """eps_u + scale (eps_c - eps_u), in one batched teacher call; plain eps if no cond.
    ``camera`` (B, POSE_DIM) reaches a camera-conditioned teacher in both branches: guidance
    drops the text, never the camera (MVDream; threestudio's multiview guidance)."""
    if cond is None or uncond is None or scale == 1.0:
        return teacher_eps(teacher, x_t, t, cond, camera)
    cameras = None if camera is None else torch.cat([camera, camera])
    x2, t2, c2 = torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, uncond])
    both = teacher_eps(teacher, x2, t2, c2, cameras)
    e_c, e_u = both.chunk(2)
    return e_u + scale * (e_c - e_u)


class Guidance:
    """Base of SDS and IKL: ``loss(x0, cond, progress, generator) -> (loss, logs)``; logs
    are 0-dim tensors (``float`` them to read)."""

    def __init__(self, teacher: Teacher, config: GuidanceConfig):
        self.teacher = teacher
        self.config = config
        self.abar = teacher.alphas_cumprod
        self._null: torch.Tensor | None = None  # encoded "" prompt, made once

    def uncond(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The unconditional encoding, expanded to cond's batch."""
        if cond is None:
            return None
        if self._null is None:
            self._null = self.teacher.encode_prompt([""]).to(cond.device)
        return self._null.expand(cond.shape[0], *self._null.shape[1:])

    def draw(self, x0: torch.Tensor, progress: float, generator: torch.Generator | None):
        """Timesteps (B,) in the range in force at ``progress`` and noise like x0."""
        t = sample_t(x0.shape[0], len(self.abar), self.config.bounds(progress), generator)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        # drawn on the CPU (one generator on every device: the same seed, the same run); the
        # copies do not wait for the GPU's queued work
        return t.to(x0.device, non_blocking=True), eps.to(x0.device, non_blocking=True)

    def to_teacher(self, x0: torch.Tensor) -> torch.Tensor:
        """Samples in the teacher's space: a latent teacher's ``encode_images`` (differentiable),
        else as they are. ``loss`` and ``update_fake`` take samples already in that space (the
        training loop encodes once per step for both)."""
        encode = getattr(self.teacher, "encode_images", None)
        return x0 if encode is None else encode(x0)

    def eps_fake(self, x_t, t, cond, x0, eps, pose=None) -> torch.Tensor:
        """The fake score's eps at x_t; ``pose`` (B, P): the samples' cameras, if it reads them."""
        raise NotImplementedError

    @torch.no_grad()
    def grad(self, x0, t, eps, cond=None, e_fake=None, pose=None):
        """g = w(t) (eps_teacher_cfg - eps_fake) at x_t = a_t x0 + s_t eps; returns (g, logs).
        ``e_fake``: eps_fake at that x_t when the caller has it already; ``pose``: the samples'
        cameras, read by a camera-conditioned teacher and fake score."""
        x_t = add_noise(x0, t, eps, self.abar)
        scale = self.config.cfg_scale
        e_q = eps_cfg(self.teacher, x_t, t, cond, self.uncond(cond), scale, camera=pose)
        e_g = self.eps_fake(x_t, t, cond, x0, eps, pose=pose) if e_fake is None else e_fake
        abar_t = self.abar.to(x0.device)[t].to(x0.dtype)
        x0_hat = predict_x0(x_t, t, e_q, self.abar) if self.config.weighting == "dmd" else None
        w = weight(self.config.weighting, abar_t, x0, x0_hat)
        g = append_dims(w, x0.ndim) * (e_q - e_g)
        return self._guard(g)

    def _guard(self, g: torch.Tensor):
        """g with non-finite entries zeroed (nan_guard) and clipped; logs as 0-dim tensors,
        read by the training loop only at its log steps (no per-step wait for a GPU)."""
        bad = ~torch.isfinite(g)
        if self.config.nan_guard:
            g = g.masked_fill(bad, 0.0)
        if self.config.grad_clip is not None:
            g = g.clamp(-self.config.grad_clip, self.config.grad_clip)
        return g, {"grad_norm": g.flatten(1).norm(dim=1).mean(), "nonfinite": bad.sum()}

    def loss(self, x0, cond=None, progress: float = 0.0, generator=None, pose=None):
        """Draw t and eps, compute g and return the injected loss with its logs."""
        return self.loss_at(x0, *self.draw(x0, progress, generator), cond, pose=pose)

    def loss_at(self, x0, t, eps, cond=None, e_fake=None, pose=None):
        """The injected loss of g at these t and eps (``e_fake``, ``pose``: see grad), with logs."""
        g, logs = self.grad(x0.detach(), t, eps, cond, e_fake, pose=pose)
        logs["t"] = t.float().mean()
        return inject(x0, g), logs

    def update_fake(self, x0, cond=None, progress: float = 0.0, generator=None, pose=None) -> dict:
        """Fit the fake score to detached samples (``pose``: see eps_fake); SDS has none to fit."""
        return {}

    def state_dict(self) -> dict:
        """What a checkpoint needs to resume the guidance (the fitted fake score, if any)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``."""
