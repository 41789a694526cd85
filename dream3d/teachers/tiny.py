"""The embedded neural teacher: a small text-conditioned pixel-space UNet (DESIGN.md section 3).

A diffusers ``UNet2DConditionModel`` denoises 3-channel images in [-1, 1] on DDPM's linear
schedule (Ho et al. 2020). It predicts v = a_t eps - s_t x0 (Salimans & Ho 2022, as SD 2.x
does) by default, and ``eps`` converts: eps = a_t v + s_t x_t. Trained to predict eps, a
pixel-space net must get eps right to ~1e-3 at large t, where x0 = (x_t - s_t eps) / a_t
multiplies its error by 1 / a_t ~ 150; its samples then have the right shapes but random
colours. v-prediction asks for x0 itself there, and the colours come out right.

The caption enters as a one-token sequence (B, 1, 384) of
its MiniLM embedding, read by cross-attention and (by default) also added to the timestep
embedding, as Imagen adds pooled text (Saharia et al. 2022). The empty prompt is the zero
vector, which is also what classifier-free dropout feeds in training (Ho & Salimans 2022).

Caption embeddings are cached and saved with the weights, so a shipped teacher answers its
catalogue captions without loading MiniLM; other prompts are encoded on first use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dream3d.checkpoint import not_weights, read_weights, save_weights, state_mismatch
from dream3d.diffusion import (
    SCHEDULES,
    ScheduleKind,
    alphas_cumprod,
    check_choice,
    eps_from_prediction,
)
from dream3d.nn import CameraEmbedding

Encoder = Callable[[list[str]], torch.Tensor]  # prompts -> (B, cross_attention_dim)
TABLE = "caption_embeddings"  # safetensors key of the caption-embedding table


@dataclass
class TinyConfig:
    """Architecture and schedule of the tiny teacher (defaults: ~2.0M parameters at 32x32)."""

    size: int = 32  # image side in pixels (32 or 64 in practice)
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # UNet width at each resolution
    layers_per_block: int = 1  # ResNet layers per down block (up blocks get one more)
    cross_attention_dim: int = 384  # caption embedding width (MiniLM-L6)
    head_dim: int = 32  # channels per attention head
    text_in_time: bool = True  # also add the caption embedding to the timestep embedding
    schedule: ScheduleKind = "linear"  # DDPM's linear betas suit pixel space
    steps: int = 1000  # T, the number of training timesteps
    prediction: Literal["v", "eps"] = "v"  # what the UNet outputs; eps() converts
    # also read each sample's camera (pose features) through an MLP added to the timestep
    # embedding, as MVDream (Shi et al. 2023); its last layer starts at zero
    camera: bool = False
    # the camera MLP also reads cos(k az), sin(k az) for k = 2..camera_harmonics (1: the pose;
    # CameraEmbedding checks it)
    camera_harmonics: int = 1

    def __post_init__(self):
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("prediction", self.prediction, ("v", "eps"))
        factor = 2 ** (len(self.block_out_channels) - 1)
        if self.size % factor:
            raise ValueError(f"size {self.size} must be a multiple of {factor} for these blocks")


def build_unet(config: TinyConfig):
    """The diffusers UNet: no attention at full resolution, cross-attention below it."""
    from diffusers import UNet2DConditionModel

    ch = config.block_out_channels
    extra = {}
    if config.text_in_time:
        extra = {
            "class_embed_type": "projection",
            "projection_class_embeddings_input_dim": config.cross_attention_dim,
        }
    return UNet2DConditionModel(
        sample_size=config.size,
        in_channels=3,
        out_channels=3,
        block_out_channels=ch,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(ch) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(ch) - 1) + ("UpBlock2D",),
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=tuple(max(1, c // config.head_dim) for c in ch),  # diffusers: heads
        norm_num_groups=min(32, math.gcd(*ch)),
        **extra,
    )


class TinyTeacher(nn.Module):
    """Teacher protocol around the UNet; ``encoder`` defaults to dream3d.text.encode_text."""

    def __init__(self, config: TinyConfig | None = None, encoder: Encoder | None = None):
        super().__init__()
        self.config = config or TinyConfig()
        self.unet = build_unet(self.config)
        self.alphas_cumprod = alphas_cumprod(self.config.schedule, self.config.steps)  # (T,)
        self.encoder = encoder
        self.embeddings: dict[str, torch.Tensor] = {}  # caption -> (D,) float32, saved
        self.camera = (
            CameraEmbedding.of(self.unet, self.config.camera_harmonics)
            if self.config.camera
            else None
        )

    @property
    def reads_camera(self) -> bool:
        """Whether ``eps`` takes each sample's camera (a camera-conditioned teacher)."""
        return self.camera is not None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def image_size(self) -> int:
        """Side of the images it denoises."""
        return self.config.size

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def add_captions(self, captions: list[str]) -> None:
        """Encode the captions not cached yet (one encoder call) and cache them."""
        new = sorted({c for c in captions if c and c not in self.embeddings})
        if not new:
            return
        if self.encoder is None:
            from dream3d.text import encode_text as encoder
        else:
            encoder = self.encoder
        emb = encoder(new).detach().float().cpu()
        if emb.shape != (len(new), self.config.cross_attention_dim):
            raise ValueError(f"encoder gave {tuple(emb.shape)} for {len(new)} captions")
        self.embeddings.update(zip(new, emb))

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B, 1, D) caption embeddings on the teacher's device; ``""`` is the zero vector."""
        self.add_captions(prompts)
        zero = torch.zeros(self.config.cross_attention_dim)
        rows = [self.embeddings[p] if p else zero for p in prompts]
        return torch.stack(rows)[:, None].to(self.device, non_blocking=True)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, camera=None):
        """The UNet's output (B, 3, H, W), float32: v or eps as ``config.prediction``; cond
        None: ``""``; ``camera`` (B, POSE_DIM) pose features, read by a camera teacher (None or
        a zero row: no camera). On CUDA the UNet runs under bf16 autocast (weights float32)."""
        if cond is None:
            cond = self.encode_prompt([""]).expand(x_t.shape[0], -1, -1)
        cond = cond.to(x_t.device, x_t.dtype)
        extra = {"class_labels": cond[:, 0]} if self.config.text_in_time else {}
        t = t.to(x_t.device).expand(x_t.shape[0])
        reading = nullcontext()
        if self.camera is not None and camera is not None:
            reading = self.camera.added(self.unet, camera.to(x_t.device), x_t.shape[0])
        with reading, torch.autocast("cuda", torch.bfloat16, enabled=x_t.is_cuda):
            out = self.unet(x_t, t, encoder_hidden_states=cond, **extra).sample
        return out.float()

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, camera=None):
        """eps prediction (B, 3, H, W) for x_t in the [-1, 1] image scale; cond None: ``""``;
        ``camera``: see ``predict``."""
        out = self.predict(x_t, t, cond, camera)
        return eps_from_prediction(out, x_t, t, self.alphas_cumprod, self.config.prediction)

    def save(self, path: Path | str) -> None:
        """One safetensors file: weights + caption table; config and captions in metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(self.embeddings)
        dim = self.config.cross_attention_dim
        table = torch.stack([self.embeddings[c] for c in names]) if names else torch.zeros(0, dim)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tensors[TABLE] = table.contiguous()
        meta = {"config": json.dumps(asdict(self.config)), "captions": json.dumps(names)}
        save_weights(path, tensors, meta)

    @classmethod
    def load(cls, path: Path | str, device="cpu", encoder: Encoder | None = None) -> TinyTeacher:
        """Read a file written by ``save``; the teacher comes back in eval mode on ``device``.

        A missing or unreadable file, or one without the tiny teacher's tensors, is one
        ValueError line naming ``path``.
        """
        tensors, meta = read_weights(path, "tiny-teacher", ("config", "captions"))
        if TABLE not in tensors:
            raise not_weights(path, "tiny-teacher", f"no {TABLE} tensor")
        table = tensors.pop(TABLE)
        try:
            config, captions = (
                TinyConfig(**json.loads(meta["config"])),
                json.loads(meta["captions"]),
            )
        except (TypeError, ValueError) as err:  # not JSON, or not a TinyConfig
            raise not_weights(path, "tiny-teacher", f"bad metadata: {err}") from None
        teacher = cls(config, encoder)
        mismatch = state_mismatch(teacher, tensors)
        if mismatch or len(captions) != len(table):
            raise not_weights(path, "tiny-teacher", mismatch or "captions do not match the table")
        teacher.load_state_dict(tensors)
        teacher.embeddings = dict(zip(captions, table))
        return teacher.to(device).eval()
