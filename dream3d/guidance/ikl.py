"""Integral KL divergence, Diff-Instruct (Luo et al. 2023, arXiv 2305.18455), Algorithm 1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from dream3d.config import AT_LEAST_1, check_ranges
from dream3d.diffusion import add_noise, check_choice
from dream3d.guidance.base import Guidance, GuidanceConfig
from dream3d.guidance.fake_scores import FAKE_SCORES

WARMUP_FROM_SCRATCH = 200  # fake-score steps on the first samples when the fake starts untrained


@dataclass
class IKLConfig(GuidanceConfig):
    """GuidanceConfig plus the fake score and how it is fitted."""

    name: ClassVar[str] = "ikl"
    cfg_scale: float = 7.5  # ProlificDreamer's scale for VSD/IKL
    # a FAKE_SCORES name, or auto: the teacher's own choice (its ``fake_score``: a LoRA of
    # Stable Diffusion's or IF's UNet, a copy of a smaller network teacher, a small UNet for the
    # oracle, an MLP for mixtures)
    fake: str = "auto"
    fake_steps: int = 1  # k fake-score steps per generator step (DMD2 uses 5)
    # extra fake-score steps before the first generator step; None: 0 for a fake that starts
    # as the teacher (or exact), WARMUP_FROM_SCRATCH for one fitted from scratch
    fake_warmup: int | None = None
    fake_lr: float = 1e-4  # Adam learning rate of the fake score (dream3d run's)
    fake_hidden: int = 128  # MLP fake score width
    fake_layers: int = 3  # MLP fake score depth
    fake_size: int = 32  # image side of the UNet fake score
    fake_camera: bool = False  # the UNet fake score also reads each sample's camera (VSD)
    # LoRA fake score's rank: 4, ProlificDreamer's (diffusers' LoRA attention processors'
    # default, which its code and threestudio's VSD kept); ~0.8M weights on SD 1.5's UNet
    fake_rank: int = 4
    fake_alpha: float | None = None  # LoRA scale alpha / rank; None: alpha = rank (scale 1)
    # the last fake-score step's draw (t, eps) and output, taken before that step, also make
    # the generator's g: one fake forward per step fewer (a NeRF step: -25 ms of ~200 on a
    # CPU). The fake then lags one update behind. Off by default, as Diff-Instruct and
    # threestudio's VSD draw afresh after the fake step: on and off moved NeRF scores beyond
    # their intervals (bench quality, 3 seeds; docs/losses.md), so the faithful one is default
    share_draw: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_choice("fake score", self.fake, ("auto", *FAKE_SCORES))
        if self.fake_steps < 1:
            raise ValueError(f"fake steps k must be >= 1, got {self.fake_steps}")
        if self.fake_warmup is not None and self.fake_warmup < 0:
            raise ValueError(f"fake warm-up must be >= 0, got {self.fake_warmup}")
        if not self.fake_lr > 0:
            raise ValueError(f"fake lr must be > 0, got {self.fake_lr}")
        if self.fake_rank < 1:
            raise ValueError(f"fake rank must be >= 1, got {self.fake_rank}")
        if self.fake_alpha is not None and not (
            math.isfinite(self.fake_alpha) and self.fake_alpha > 0
        ):
            raise ValueError(f"fake alpha must be a finite number > 0, got {self.fake_alpha}")
        check_ranges(self, dict.fromkeys(("fake_hidden", "fake_layers", "fake_size"), AT_LEAST_1))


def auto_fake(teacher) -> str:
    """The fake score a teacher asks for (``teacher.fake_score``), else a copy of a network
    teacher, else an MLP (low-dimensional exact teachers)."""
    return getattr(teacher, "fake_score", "teacher" if isinstance(teacher, nn.Module) else "mlp")


class IKL(Guidance):
    """g = w(t) (eps_teacher_cfg(x_t) - eps_fake(x_t)), eps_fake fitted online to the generator."""

    def __init__(self, teacher, config: IKLConfig | None = None, dim: int = 0, n_classes: int = 0):
        super().__init__(teacher, config or IKLConfig())
        c = self.config
        name = auto_fake(teacher) if c.fake == "auto" else c.fake
        if c.fake_camera and not getattr(FAKE_SCORES[name], "reads_camera", False):
            raise ValueError(
                f"fake_camera needs a UNet fake score (teacher, lora or unet), not {name!r}"
            )
        self.fake = FAKE_SCORES[name].build(teacher, c, dim, n_classes)
        self.opt = (
            # fused: one kernel for all 2M parameters of a teacher copy (10 -> 2 ms a step on a CPU)
            torch.optim.Adam(self.fake.parameters(), lr=c.fake_lr, fused=True)
            if self.fake.trainable
            else None
        )
        warmup = c.fake_warmup
        if warmup is None:
            warmup = WARMUP_FROM_SCRATCH if self.fake.from_scratch else 0
        self.warmup = warmup
        self._warm = warmup == 0
        self._shared = None  # (t, eps, eps_fake) of the last fake step, for the next ``loss``

    def eps_fake(self, x_t, t, cond, x0, eps, pose=None):
        return self.fake.eps(x_t, t, cond, x0, pose=pose)

    def loss(self, x0, cond=None, progress: float = 0.0, generator=None, pose=None):
        """As Guidance.loss; with ``share_draw``, at the t and eps of the fake-score step just
        taken on these samples, with its eps_fake."""
        shared, self._shared = self._shared, None
        if shared is None:
            return super().loss(x0, cond, progress, generator, pose=pose)
        t, eps, e_fake = shared
        return self.loss_at(x0, t, eps, cond, e_fake, pose=pose)

    def update_fake(self, x0, cond=None, progress: float = 0.0, generator=None, pose=None) -> dict:
        """k denoising-score-matching steps: min E || eps_phi(a_t x0 + s_t eps, t) - eps ||^2;
        ``pose`` (B, P): the samples' cameras, read by a ``fake_camera`` fake score."""
        if self.opt is None:
            return {}
        steps = self.config.fake_steps + (0 if self._warm else self.warmup)
        self._warm = True
        x0 = x0.detach()
        for _ in range(steps):
            t, eps = self.draw(x0, progress, generator)
            x_t = add_noise(x0, t, eps, self.abar)
            out = self.fake.eps(x_t, t, cond, x0, pose=pose)
            loss = (out - eps).pow(2).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        if self.config.share_draw:
            self._shared = (t, eps, out.detach())
        return {"fake_loss": loss.detach()}  # read at log steps only (no per-step GPU wait)

    def state_dict(self) -> dict:
        if self.opt is None:
            return {}
        return {"fake": self.fake.state_dict(), "opt": self.opt.state_dict(), "warm": self._warm}

    def load_state_dict(self, state: dict) -> None:
        if self.opt is not None:
            self.fake.load_state_dict(state["fake"])
            self.opt.load_state_dict(state["opt"])
            self._warm = state["warm"]
