"""Small network pieces shared by teachers, fake scores and generators."""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import torch
from torch import nn

from dream3d.cameras import POSE_DIM

_SEEDING = threading.RLock()  # one seeded block at a time in the process (re-entrant)


@contextmanager
def seeded(seed: int):
    """Inside: torch's global RNG (what modules' default inits draw from) seeded with
    ``seed``; after: the global RNG as it was. One thread at a time, so runs built at once in
    one process (the app's concurrent runs) each draw what they draw alone: training itself
    draws only from its own ``torch.Generator``s, never from the global RNG."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with _SEEDING, torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


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
    which classifier-free-style camera dropout trains.

    ``harmonics`` K > 1 also feeds cos(k az), sin(k az) for k = 2..K (from the pose's cos and
    sin of azimuth): a cube looks the same every 90 degrees of azimuth, so what it looks like is
    a function of 4 az, which an MLP on cos az, sin az alone learnt too slowly to tell apart
    (docs/camera.md)."""

    def __init__(self, width: int, pose_dim: int = POSE_DIM, harmonics: int = 1):
        super().__init__()
        if harmonics < 1:
            raise ValueError(f"camera harmonics must be >= 1, got {harmonics}")
        self.pose_dim, self.harmonics = pose_dim, harmonics
        self.net = mlp(pose_dim + 2 * (harmonics - 1), width, hidden=width, layers=1)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    @classmethod
    def of(cls, unet, harmonics: int = 1) -> CameraEmbedding:
        """One sized for ``unet``'s timestep embedding (a diffusers UNet2DConditionModel)."""
        return cls(_time_embedding(unet).linear_2.out_features, harmonics=harmonics)

    def features(self, pose: torch.Tensor) -> torch.Tensor:
        """(B, P + 2(K - 1)): the pose, then cos(k az), sin(k az) for k = 2..K, as the powers
        (cos az + i sin az)^k (a zero row stays zero)."""
        if self.harmonics == 1:
            return pose
        first = torch.complex(pose[:, 0], pose[:, 1])
        powers = [first**k for k in range(2, self.harmonics + 1)]
        return torch.cat([pose, *(torch.stack([z.real, z.imag], 1) for z in powers)], 1)

    def extend_from(self, other: CameraEmbedding) -> None:
        """Take ``other``'s weights (fewer harmonics, or as many): the new harmonics' input
        weights start at zero, so this embedding starts equal to ``other``."""
        if other.harmonics > self.harmonics or other.pose_dim != self.pose_dim:
            raise ValueError("a camera embedding can only take one with no more harmonics")
        theirs = other.state_dict()
        first = torch.zeros_like(self.net[0].weight)
        first[:, : theirs["net.0.weight"].shape[1]] = theirs["net.0.weight"]
        self.load_state_dict({**theirs, "net.0.weight": first})

    @contextmanager
    def added(self, unet, pose: torch.Tensor | None, batch: int):
        """While open, ``unet``'s timestep embedding comes out plus this embedding of ``pose``."""
        if pose is None:
            raise ValueError("fake_camera needs each sample's camera: the samples have no pose")
        if pose.shape != (batch, self.pose_dim):
            raise ValueError(
                f"pose must be ({batch}, {self.pose_dim}) for this batch, got {tuple(pose.shape)}"
            )
        pose = pose.to(self.net[0].weight)
        emb = self.net(self.features(pose)) * pose.ne(0).any(-1, keepdim=True)  # 0: no camera
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


def warm_decay(decay: float, step: int) -> float:
    """The EMA decay used at ``step`` (0-based): ``decay``, capped early by (1 + step) / (10 + step)
    so the average forgets its starting weights in the first tens of steps."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, for every float tensor of the state."""
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            ema[name].lerp_(value, 1.0 - decay)
        else:
            ema[name].copy_(value)


class EMA:
    """An exponential moving average of ``module``'s state with a half-life in steps: after
    ``halflife`` steps an update's weight has halved (decay 0.5 ** (1 / halflife)), as SiD's
    and Diff-Instruct's generators are evaluated and shipped. A checkpoint part
    (``state_dict``/``load_state_dict``)."""

    def __init__(self, module: nn.Module, halflife: float):
        self.module = module
        self.decay = 0.5 ** (1.0 / halflife)
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, step: int) -> None:
        """Fold the module's weights after generator step ``step`` (0-based) into the average."""
        ema_update(self.shadow, self.module, warm_decay(self.decay, step))

    @contextmanager
    def swapped(self):
        """The module holds the average inside the block, its own weights again after it."""
        own = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield self.module
        finally:
            self.module.load_state_dict(own)

    def state_dict(self) -> dict:
        return {"shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
