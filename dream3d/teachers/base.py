"""The teacher protocol: every pretrained (or exact) diffusion model looks like this to guidance."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Teacher(Protocol):
    """An eps-prediction model on a discrete VP schedule.

    ``cond`` is whatever ``encode_prompt`` returns: a tensor whose first dim is the batch.
    The empty prompt ``""`` encodes the unconditional branch used by classifier-free guidance.
    A camera-conditioned teacher (MVDream's kind) also has ``reads_camera = True`` and takes
    ``eps(x_t, t, cond, camera=pose)``: each sample's camera as ``dream3d.cameras.pose_features``
    (B, POSE_DIM). Call teachers through ``teacher_eps``, which hands the camera only to those.
    """

    alphas_cumprod: torch.Tensor  # (T,) float64

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor: ...

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """eps prediction for noisy x_t (B, ...) at integer t (B,)."""
        ...


def teacher_eps(teacher, x_t: torch.Tensor, t: torch.Tensor, cond, camera=None) -> torch.Tensor:
    """``teacher.eps(x_t, t, cond)``, with ``camera`` (B, POSE_DIM) for a teacher that reads it
    (``reads_camera``); a text-only teacher never sees the camera, so it runs as it always did."""
    if camera is not None and getattr(teacher, "reads_camera", False):
        return teacher.eps(x_t, t, cond, camera=camera)
    return teacher.eps(x_t, t, cond)
