"""Variance-preserving diffusion: schedules, noising, timestep sampling and weightings w(t).

Notation follows DESIGN.md: ``x_t = a_t x0 + s_t eps`` with ``a_t = sqrt(abar_t)`` and
``s_t = sqrt(1 - abar_t)``; timesteps are integer indices into a discrete schedule of T steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from dream3d.config import Range, check_ranges

ScheduleKind = Literal["scaled_linear", "linear"]
Anneal = Literal["none", "linear", "sqrt"]
Weighting = Literal["sds", "uniform", "snr", "dmd"]
Prediction = Literal["eps", "v", "sample"]

SCHEDULES = ("scaled_linear", "linear")
ANNEALS = ("none", "linear", "sqrt")
WEIGHTINGS = ("sds", "uniform", "snr", "dmd")
PREDICTIONS = ("eps", "v", "sample")


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to ``x`` until it has ``ndim`` dims (k-diffusion)."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def alphas_cumprod(kind: ScheduleKind = "scaled_linear", steps: int = 1000) -> torch.Tensor:
    """abar_t for t = 0..steps-1, float64.

    ``scaled_linear`` is Stable Diffusion's (betas linear in sqrt from 0.00085 to 0.012);
    ``linear`` is DDPM's (betas from 1e-4 to 0.02).
    """
    check_choice("schedule", kind, SCHEDULES)
    if kind == "scaled_linear":
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    else:
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def coefficients(abar: torch.Tensor, t: torch.Tensor, like: torch.Tensor):
    """(a_t, s_t) for integer timesteps ``t`` (B,), shaped to broadcast against ``like``."""
    ab = abar.to(like.device)[t].to(like.dtype)
    return append_dims(ab.sqrt(), like.ndim), append_dims((1 - ab).sqrt(), like.ndim)


def add_noise(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor):
    """x_t = a_t x0 + s_t eps."""
    a, s = coefficients(abar, t, x0)
    return a * x0 + s * eps


def check_t_range(t_range: tuple[float, float]) -> tuple[float, float]:
    """Validate a (t_min, t_max) pair of fractions of T: 0 < t_min <= t_max <= 1."""
    lo, hi = t_range
    if not (0.0 < lo <= hi <= 1.0):
        raise ValueError(f"t range must satisfy 0 < t_min <= t_max <= 1, got ({lo}, {hi})")
    return float(lo), float(hi)


def t_bounds(
    t_range: tuple[float, float], anneal: Anneal, progress: float, t_max_end: float
) -> tuple[float, float]:
    """The (t_min, t_max) fractions in force at ``progress`` in [0, 1] of training.

    With annealing, t_max moves from ``t_range[1]`` to ``t_max_end`` (never below t_min):
    linearly, or as sqrt(progress) (faster early). ProlificDreamer and DreamTime both lower
    the largest t as the object settles.
    """
    lo, hi = t_range
    check_choice("t anneal", anneal, ANNEALS)
    if anneal == "none":
        return lo, hi
    f = progress if anneal == "linear" else math.sqrt(max(progress, 0.0))
    return lo, max(lo, hi + (t_max_end - hi) * min(max(f, 0.0), 1.0))


def sample_t(
    n: int, steps: int, bounds: tuple[float, float], generator: torch.Generator | None = None
) -> torch.Tensor:
    """n integer timesteps uniform in [int(t_min * T), int(t_max * T)] (clamped to T - 1)."""
    lo = min(int(bounds[0] * steps), steps - 1)
    hi = min(int(bounds[1] * steps), steps - 1)
    return torch.randint(lo, hi + 1, (n,), generator=generator)


def weight(
    kind: Weighting,
    abar_t: torch.Tensor,
    x0: torch.Tensor | None = None,
    x0_hat: torch.Tensor | None = None,
) -> torch.Tensor:
    """w(t) per sample (B,) for the eps-form gradient ``g = w(t) (eps_teacher - eps_fake)``.

    - ``sds``: s_t^2 = 1 - abar_t, DreamFusion's choice.
    - ``uniform``: 1.
    - ``snr``: a_t / s_t = sqrt(SNR); the unit weight of Diff-Instruct's score form,
      since a_t (score_fake - score_teacher) = (a_t / s_t)(eps_teacher - eps_fake).
    - ``dmd``: (s_t / a_t) / mean|x0 - x0_hat|, DMD's normalisation (Yin et al. 2024) with
      x0_hat the teacher's denoised estimate; needs ``x0`` and ``x0_hat``.
    """
    check_choice("weighting", kind, WEIGHTINGS)
    if kind == "sds":
        return 1.0 - abar_t
    if kind == "uniform":
        return torch.ones_like(abar_t)
    if kind == "snr":
        return (abar_t / (1.0 - abar_t)).sqrt()
    if x0 is None or x0_hat is None:
        raise ValueError("the dmd weighting needs x0 and the teacher's x0_hat")
    scale = (x0 - x0_hat).abs().flatten(1).mean(1).clamp_min(1e-8)
    return ((1.0 - abar_t) / abar_t).sqrt() / scale


def predict_x0(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor):
    """x0_hat = (x_t - s_t eps) / a_t."""
    a, s = coefficients(abar, t, x_t)
    return (x_t - s * eps) / a


def eps_from_prediction(
    pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, abar: torch.Tensor, prediction: str
) -> torch.Tensor:
    """eps from a network's output, in ``pred``'s dtype: the output itself (``eps``),
    a_t v + s_t x_t (``v`` = a_t eps - s_t x0, Salimans & Ho 2022), or (x_t - a_t x0) / s_t
    (``sample``, an x0-prediction)."""
    check_choice("prediction", prediction, PREDICTIONS)
    if prediction == "eps":
        return pred
    x_t = x_t.to(pred.device, pred.dtype)
    a, s = coefficients(abar, t.to(pred.device).expand(pred.shape[0]), pred)
    if prediction == "v":
        return a * pred + s * x_t
    return (x_t - a * pred) / s


@dataclass
class TimeConfig:
    """Which timesteps a guidance draws, and how that range moves during training."""

    t_range: tuple[float, float] = (0.02, 0.98)  # (t_min, t_max) as fractions of T
    anneal: Anneal = "none"  # how t_max moves over training
    t_max_end: float = 0.5  # t_max at the end of training when annealing

    def __post_init__(self):
        self.t_range = check_t_range(tuple(self.t_range))
        check_choice("t anneal", self.anneal, ANNEALS)
        check_ranges(self, {"t_max_end": Range(0, 1, low_open=True)})

    def bounds(self, progress: float) -> tuple[float, float]:
        return t_bounds(self.t_range, self.anneal, progress, self.t_max_end)
