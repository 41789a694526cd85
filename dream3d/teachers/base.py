"""The teacher protocol: every pretrained (or exact) diffusion model looks like this to guidance."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Teacher(Protocol):
    """An eps-prediction model on a discrete VP schedule.

    ``cond`` is whatever ``encode_prompt`` returns: a tensor whose first dim is the batch.
    The empty prompt ``""`` encodes the unconditional branch used by classifier-free guidance.
    """

    alphas_cumprod: torch.Tensor  # (T,) float64

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor: ...

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """eps prediction for noisy x_t (B, ...) at integer t (B,)."""
        ...
