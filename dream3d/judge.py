"""A small image classifier with two heads (object, colour): the judge of teacher samples.

It knows label names, not the world: the caller trains it on labelled renders
(``batch_fn(n, generator) -> (images in [-1, 1], object labels, colour labels)``) and its
penultimate layer doubles as the feature extractor for FID-style scores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from dream3d.checkpoint import not_weights, read_weights, save_weights, state_mismatch

BatchFn = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class JudgeConfig:
    """Architecture and label names."""

    objects: list[str] = field(default_factory=list)  # object head classes
    colours: list[str] = field(default_factory=list)  # colour head classes
    width: int = 32  # channels of the first conv block (doubles per block)
    size: int = 32  # input resolution; other sizes are resized to it


class Judge(nn.Module):
    """Three conv blocks -> global average pool -> features -> two linear heads."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.config = config
        w = config.width
        blocks, c_in = [], 3
        for c_out in (w, 2 * w, 4 * w):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.GroupNorm(8, c_out),
                nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.SiLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.object_head = nn.Linear(4 * w, len(config.objects))
        self.colour_head = nn.Linear(4 * w, len(config.colours))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 4 * width) features of images (B, 3, H, W) in [-1, 1]."""
        if images.shape[-1] != self.config.size:
            size = (self.config.size, self.config.size)
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
        return self.body(images)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        return self.object_head(h), self.colour_head(h)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> tuple[list[str], list[str]]:
        """Object and colour names for each image."""
        self.eval()
        objs, cols = [], []
        for chunk in images.split(batch):
            o, c = self(chunk)
            objs += [self.config.objects[i] for i in o.argmax(1).tolist()]
            cols += [self.config.colours[i] for i in c.argmax(1).tolist()]
        return objs, cols

    def save(self, path: Path) -> None:
        """One safetensors file; the config travels in its metadata."""
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_weights(path, state, {"config": json.dumps(asdict(self.config))})

    @classmethod
    def load(cls, path: Path | str) -> Judge:
        """Read a file written by ``save``, in eval mode; a bad file is one ValueError line."""
        tensors, meta = read_weights(path, "judge")
        try:
            config = JudgeConfig(**json.loads(meta["config"]))
            judge = cls(config)  # GroupNorm refuses widths that are not multiples of 8
        except (TypeError, ValueError) as err:
            raise not_weights(path, "judge", f"bad metadata: {err}") from None
        mismatch = state_mismatch(judge, tensors)
        if mismatch:
            raise not_weights(path, "judge", mismatch)
        judge.load_state_dict(tensors)
        return judge.eval()


def train_judge(
    judge: Judge,
    batch_fn: BatchFn,
    steps: int = 1500,
    batch: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    noise: float = 0.1,
    progress: bool = True,
) -> list[dict]:
    """Cross-entropy on both heads, AdamW with cosine decay; inputs get Gaussian noise of std
    up to ``noise`` so the judge tolerates a sampler's grain. Returns the loss history.
    A run takes minutes on a CPU, so it keeps no checkpoint (dream3d.checkpoint is for longer)."""
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    history, start = [], time.perf_counter()
    judge.train()
    for step in tqdm(range(steps), desc="judge", disable=not progress, leave=False):
        images, obj, col = batch_fn(batch, rng)
        sigma = noise * torch.rand(len(images), 1, 1, 1, generator=rng)
        images = images + sigma * torch.randn(images.shape, generator=rng)
        o, c = judge(images)
        loss = F.cross_entropy(o, obj) + F.cross_entropy(c, col)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"step": step, "loss": loss.item(), "time": time.perf_counter() - start})
    judge.eval()
    return history


def accuracy(judge: Judge, images, objects: list[str], colours: list[str]) -> dict:
    """Overall and per-object accuracy of both heads on labelled images."""
    pred_o, pred_c = judge.predict(images)
    per_object: dict[str, dict] = {}
    for name in sorted(set(objects)):
        idx = [i for i, o in enumerate(objects) if o == name]
        per_object[name] = {
            "object": sum(pred_o[i] == objects[i] for i in idx) / len(idx),
            "colour": sum(pred_c[i] == colours[i] for i in idx) / len(idx),
            "n": len(idx),
        }
    n = len(objects)
    return {
        "object": sum(p == o for p, o in zip(pred_o, objects)) / n,
        "colour": sum(p == c for p, c in zip(pred_c, colours)) / n,
        "per_object": per_object,
    }
