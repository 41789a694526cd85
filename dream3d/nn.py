"""Small network pieces shared by teachers, fake scores and generators."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from dream3d.cameras import POSE_DIM


def mlp(d_in: int, d_out: int, hidden: int = 128, layers: int = 3) -> nn.Sequential:
    """``layers`` hidden SiLU layers of width ``hidden``; the last layer is linear."""
    dims = [d_in] + [hidden] * layers
    blocks: list[nn.Module] = []
    for i, o in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(i, o), nn.SiLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], d_out))


class FourierTime(nn.Module):
    """Fixed sin/cos features of t / T at ``n`` log-spaced frequencies (B,) -> (B, 2n)."""

    def __init__(self, steps: int, n: int = 6):
        super().__init__()
        self.steps = steps
        self.dim = 2 * n
        self.register_buffer("freqs", 2 * math.pi * 2.0 ** torch.arange(n, dtype=torch.float32))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        ang = (t.float() / self.steps)[:, None] * self.freqs
        return torch.cat([ang.sin(), ang.cos()], dim=1)


class CameraEmbedding(nn.Module):
    """An MLP from pose features (B, P) to a UNet's timestep embedding (B, width), added to it:
    MVDream's camera embedding (Shi et al. 2023) for a camera-conditioned teacher, and the
    camera-conditioned fake score of ProlificDreamer (Wang et al. 2023, VSD), whose LoRA also
    reads the camera through the timestep embedding. Its last layer starts at zero, so a
    network it is added to starts exactly as it was (for a teacher copy, p_g = q exactly).
    A pose row of zeros (no camera can give one: cos^2 + sin^2 = 1) adds nothing: "no camera",
    which classifier-free-style camera dropout trains."""

    def __init__(self, width: int, pose_dim: int = POSE_DIM):
        super().__init__()
        self.net = mlp(pose_dim, width, hidden=width, layers=1)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @classmethod
    def of(cls, unet) -> CameraEmbedding:
        """One sized for ``unet``'s timestep embedding (a diffusers UNet2DConditionModel)."""
        return cls(_time_embedding(unet).linear_2.out_features)

    @contextmanager
    def added(self, unet, pose: torch.Tensor | None, batch: int):
        """While open, ``unet``'s timestep embedding comes out plus this embedding of ``pose``."""
        p = self.net[0].in_features
        if pose is None:
            raise ValueError("fake_camera needs each sample's camera: the samples have no pose")
        if pose.shape != (batch, p):
            raise ValueError(f"pose must be ({batch}, {p}) for this batch, got {tuple(pose.shape)}")
        pose = pose.to(self.net[0].weight)
        emb = self.net(pose) * pose.ne(0).any(-1, keepdim=True)  # (B, width); 0 for no camera
        handle = _time_embedding(unet).register_forward_hook(lambda m, a, out: out + emb.to(out))
        try:
            yield
        finally:
            handle.remove()


def _time_embedding(unet) -> nn.Module:
    embedding = getattr(unet, "time_embedding", None)
    if embedding is None:
        raise ValueError("fake_camera needs a fake score with a diffusers UNet (time_embedding)")
    return embedding
