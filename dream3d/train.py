"""The one training loop: sample -> k fake-score steps -> one generator step (Diff-Instruct Alg. 1).

It knows nothing of what the generator makes: points, images or NeRF renders all arrive as a
``Sample`` whose ``x`` is differentiable in the generator's parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from dream3d.diffusion import check_choice


@dataclass
class Sample:
    """A batch from a generator: ``x`` (B, ...) and what the guidance's conditioning needs."""

    x: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """How long and how fast the generator trains."""

    steps: int = 1000  # generator steps
    batch: int = 256  # samples per step
    lr: float = 1e-3  # Adam learning rate of the generator
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the end
    seed: int = 0  # seeds the draws of samples, t and noise
    log_every: int = 10  # record a history row every this many steps
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        check_choice("lr schedule", self.lr_schedule, ("constant", "cosine"))


def _lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the learning rate at ``step``: 1, or a cosine from 1 to 0."""
    if config.lr_schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * step / config.steps))


class NonFiniteError(RuntimeError):
    """The generator loss stopped being a finite number."""


def train(
    generator: torch.nn.Module,
    guidance,
    config: TrainConfig,
    cond_fn: Callable[[Sample], torch.Tensor | None] | None = None,
    on_log: Callable[[int, dict], dict] | None = None,
    desc: str = "train",
) -> list[dict]:
    """Train ``generator`` (with ``sample(n, generator) -> Sample``) under ``guidance``.

    ``cond_fn`` turns a sample into the teacher's conditioning; ``on_log(step, row)`` may add
    metrics to a history row. Returns the history: one dict every ``log_every`` steps.
    """
    rng = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(generator.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_lr_factor, config))
    history: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc=desc, disable=not config.progress, leave=False)
    for step in bar:
        progress = step / max(config.steps - 1, 1)
        sample = generator.sample(config.batch, rng)
        cond = cond_fn(sample) if cond_fn else None
        logs = guidance.update_fake(sample.x.detach(), cond, progress, rng)
        loss, g_logs = guidance.loss(sample.x, cond, progress, rng)
        if not math.isfinite(loss.item()):
            raise NonFiniteError(f"non-finite generator loss at step {step}; lower the lr or clip")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        logs.update(g_logs, step=step, loss=loss.item(), time=time.perf_counter() - start)
        if step % config.log_every == 0 or step == config.steps - 1:
            history.append(on_log(step, logs) if on_log else logs)
            bar.set_postfix(loss=f"{logs['loss']:.3g}", grad=f"{logs['grad_norm']:.3g}")
    return history
