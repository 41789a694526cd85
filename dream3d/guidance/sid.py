"""Score identity Distillation (Zhou et al. 2024, arXiv 2404.04057, eq. 24 as its code writes it).

With x0 predictions f_q (the CFG teacher) and f_p (the fake score) at x_t = a_t x + s_t eps,
the generator minimises, per sample,

    L = sum over pixels of (f_q - f_p) . ((f_q - x) - alpha (f_q - f_p)) / sg(mean|x - f_q|)

with alpha = 1.2 by default. Unlike SDS, IKL and DMD, the gradient is not a weighted
difference of the two networks' outputs alone: it flows through x_t into both networks, which
are frozen for this step (only the generator moves). Here that gradient g = dL/dx is taken by
autograd on a detached copy of the samples and injected like the other guidances' g, so SiD
trains any generator they train (images, NeRF renders, points), with the same NaN guard and
clipping. The fake score is fitted as IKL's (denoising score matching, in eps), one step per
generator step as SiD does. Conventions carried over from the official code: the normaliser
is clamped at 1e-5; x0 predictions are not clamped. Not carried over: its noise levels (EDM
sigmas from a Karras ramp cut at 800 of 1000 steps): t is drawn from the guidance's own
``t_range`` like every guidance here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from dream3d.diffusion import add_noise, predict_x0
from dream3d.guidance.base import Guidance, eps_cfg
from dream3d.guidance.ikl import IKL, IKLConfig

NORM_FLOOR = 1e-5  # the official code's clamp of the per-sample normaliser


@dataclass
class SiDConfig(IKLConfig):
    """IKLConfig plus SiD's alpha; ``weighting`` and ``share_draw`` are not read (SiD's loss
    normalises itself, and its gradient needs the fake's output with its graph)."""

    name: ClassVar[str] = "sid"
    own: ClassVar[tuple[str, ...]] = ("fake_steps",)  # what the labs keep as is
    alpha: float = 1.2  # SiD's default; its loss is (f_q-f_p).(f_q-x) - alpha |f_q-f_p|^2
    fake_steps: int = 1  # SiD's: one fake-score update per generator update

    def __post_init__(self):
        super().__post_init__()
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"SiD alpha must be a finite number >= 0, got {self.alpha}")


def sid_loss(x, f_q, f_p, alpha: float) -> torch.Tensor:
    """SiD's loss per sample (B,) from the samples x and the two x0 predictions at x_t."""
    diff = f_q - f_p
    norm = (x - f_q).detach().abs().flatten(1).mean(1).clamp_min(NORM_FLOOR)
    per = (diff * ((f_q - x) - alpha * diff)).flatten(1).sum(1)
    return per / norm


class SiD(IKL):
    """g = d/dx of SiD's loss, through x_t into the frozen teacher and fake score."""

    def loss(self, x0, cond=None, progress: float = 0.0, generator=None, pose=None):
        """A fresh draw every step (never the fake step's detached output)."""
        self._shared = None
        return Guidance.loss(self, x0, cond, progress, generator, pose=pose)

    def grad(self, x0, t, eps, cond=None, e_fake=None, pose=None):
        """g (B, ...) with the NaN guard and clip of every guidance, and logs (``sid_loss``:
        the batch mean of L). ``e_fake`` is not used: it carries no graph."""
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            x_t = add_noise(x, t, eps, self.abar)
            e_q = eps_cfg(
                self.teacher, x_t, t, cond, self.uncond(cond), self.config.cfg_scale, pose
            )
            e_p = self.eps_fake(x_t, t, cond, x, eps, pose=pose)
            f_q, f_p = predict_x0(x_t, t, e_q, self.abar), predict_x0(x_t, t, e_p, self.abar)
            per = sid_loss(x, f_q, f_p, self.config.alpha)
            (g,) = torch.autograd.grad(per.sum(), x)
        g, logs = self._guard(g)
        logs["sid_loss"] = per.detach().mean()
        return g, logs
