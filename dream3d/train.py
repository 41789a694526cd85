"""The one training loop: sample -> k fake-score steps -> one generator step (Diff-Instruct Alg. 1).

It knows nothing of what the generator makes: points, images or NeRF renders all arrive as a
``Sample`` whose ``x`` is differentiable in the generator's parameters. Given a checkpoint
path it saves every ``save_every`` steps and on Ctrl-C, and resumes to the same numbers an
uninterrupted run reaches; a non-finite loss stops it and leaves the last good checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from dream3d.checkpoint import load_checkpoint, save_checkpoint
from dream3d.clock import NO_CLOCK
from dream3d.config import AT_LEAST_1, check_ranges
from dream3d.diffusion import check_choice
from dream3d.interrupt import DeferredInterrupt
from dream3d.nn import EMA


@dataclass
class Sample:
    """A batch from a generator: ``x`` (B, ...) and what the guidance's conditioning needs.

    ``aux_loss`` is the generator's own term (a NeRF's regularisers), added to the guidance
    loss; ``aux_logs`` go into the history row. ``members``: how many generators the batch
    stacks (K NeRF particles, n views each); the guidance loss, a mean over the batch, is
    multiplied by it, so each member's gradient is the one it would get from its n views alone.
    """

    x: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)
    aux_loss: torch.Tensor | None = None
    aux_logs: dict[str, float] = field(default_factory=dict)
    members: int = 1


@dataclass
class TrainConfig:
    """How long and how fast the generator trains; the defaults are `dream3d run`'s on a CPU
    (a NeRF: one view per step); the labs set theirs (batches of 256 points, lr 1e-3)."""

    steps: int = 400  # generator steps (bench quality: 400 score as 600 did, in 2/3 the time)
    batch: int = 1  # samples per step (a NeRF's: views rendered per step)
    lr: float = 1e-2  # Adam learning rate of the generator
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the end
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's (beta1, beta2); SiD and DMD2 use beta1 0
    # half-life in steps of an EMA of the generator's weights, which is then what the history's
    # evaluations (on_log) see and what the generator holds at the end (SiD's and
    # Diff-Instruct's generators are EMAs); None: the raw weights
    ema_halflife: float | None = None
    seed: int = 0  # seeds the generator's init (NeRF runs) and the draws of samples, t, noise
    log_every: int = 5  # record a history row every this many steps
    save_every: int = 200  # checkpoint every this many steps (0: only on Ctrl-C), given a path
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.save_every < 0:
            raise ValueError(f"save_every must be >= 0, got {self.save_every}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        check_choice("lr schedule", self.lr_schedule, ("constant", "cosine"))
        self.betas = tuple(self.betas)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"Adam betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.ema_halflife is not None and not (
            math.isfinite(self.ema_halflife) and self.ema_halflife > 0
        ):
            raise ValueError(f"EMA half-life must be > 0 steps, got {self.ema_halflife}")
        check_ranges(self, {"log_every": AT_LEAST_1})


def _lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the learning rate at ``step``: 1, or a cosine from 1 to 0."""
    if config.lr_schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * step / config.steps))


class NonFiniteError(RuntimeError):
    """The generator loss stopped being a finite number."""


@dataclass
class _State:
    """What a checkpoint holds besides the generator, optimizer and guidance."""

    rng: torch.Generator
    step: int = 0  # steps done
    history: list = field(default_factory=list)
    elapsed: float = 0.0  # seconds of training before this process


def train(
    generator: torch.nn.Module,
    guidance,
    config: TrainConfig,
    cond_fn: Callable[[Sample], torch.Tensor | None] | None = None,
    on_log: Callable[[int, dict], dict] | None = None,
    desc: str = "train",
    checkpoint: Path | str | None = None,
    resume: bool = False,
    clock=NO_CLOCK,
    ready: Callable[[], None] | None = None,
) -> list[dict]:
    """Train ``generator`` (with ``sample(n, generator) -> Sample``) under ``guidance``.

    ``cond_fn`` turns a sample into the teacher's conditioning; ``on_log(step, row)`` may add
    metrics to a history row. With ``checkpoint`` (a file path), state is saved there every
    ``config.save_every`` steps, at the end and on Ctrl-C; ``resume`` starts from it.
    ``clock`` (a dream3d.clock.Clock) times each step's phases and the checkpoints.
    ``ready()`` is called once the state is in place (a resumed checkpoint has loaded and
    fits), before the first step: a run writes its config.yaml there, so a checkpoint that
    does not fit leaves the folder as it was. With ``config.ema_halflife``, ``on_log`` sees
    the EMA weights and the generator ends holding them (the checkpoint keeps both). Returns
    the history: one dict every ``log_every`` steps.
    """
    opt = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(_lr_factor, config))
    state = _State(torch.Generator().manual_seed(config.seed))
    path = Path(checkpoint) if checkpoint is not None else None
    parts = dict(
        generator=generator, optimizer=opt, scheduler=sched, guidance=guidance, rng=state.rng
    )
    ema = None if config.ema_halflife is None else EMA(generator, config.ema_halflife)
    if ema is not None:
        parts["ema"] = ema
    if resume:
        if path is None:
            raise ValueError("resume needs a checkpoint path")
        plain = load_checkpoint(path, "step", "history", "elapsed", **parts)
        state.step, state.history, state.elapsed = plain["step"], plain["history"], plain["elapsed"]
    if ready is not None:
        ready()

    def save():
        if path is not None:
            plain = {"step": state.step, "history": state.history, "elapsed": state.elapsed}
            with clock("checkpoint"):
                save_checkpoint(path, **parts, **plain)

    start = time.perf_counter() - state.elapsed
    bar = tqdm(
        total=config.steps, initial=state.step, desc=desc, disable=not config.progress, leave=False
    )
    finite = _Finite()
    with DeferredInterrupt() as stop:
        while state.step < config.steps:
            logs = _step(generator, guidance, config, opt, sched, cond_fn, state, clock)
            finite.add(state.step, logs["loss"])
            logs["time"] = state.elapsed = time.perf_counter() - start
            step, state.step = state.step, state.step + 1
            if ema is not None:
                ema.update(step)
            bar.update(1)
            if step % config.log_every == 0 or state.step == config.steps:
                finite.check()
                logs = {k: float(v) if torch.is_tensor(v) else v for k, v in logs.items()}
                if on_log is not None:
                    with nullcontext() if ema is None else ema.swapped():
                        logs = on_log(step, logs)
                state.history.append(logs)
                bar.set_postfix(loss=f"{logs['loss']:.3g}", grad=f"{logs['grad_norm']:.3g}")
            if stop.requested:
                bar.close()
                finite.check()
                save()
                raise KeyboardInterrupt
            if config.save_every and state.step % config.save_every == 0:
                finite.check()
                save()
    bar.close()
    finite.check()
    save()
    if ema is not None:
        generator.load_state_dict(ema.shadow)
    return state.history


class _Finite:
    """Watches the generator loss without reading it every step (a read waits for a GPU):
    ``add`` keeps the first step whose loss is not finite, on the loss's device; ``check``,
    at log steps and before every checkpoint, raises NonFiniteError naming that step, so the
    last checkpoint is the last good one."""

    def __init__(self):
        self.first = None  # 0-dim: the first bad step so far, or -1

    def add(self, step: int, loss: torch.Tensor) -> None:
        if self.first is None:
            self.first = torch.full((), -1, dtype=torch.long, device=loss.device)
        new = (self.first < 0) & ~torch.isfinite(loss)
        self.first = torch.where(new, step, self.first)

    def check(self) -> None:
        if self.first is not None and int(self.first) >= 0:
            raise NonFiniteError(
                f"non-finite generator loss at step {int(self.first)}; lower the lr or clip "
                "(the last checkpoint, if any, is kept)"
            )


def _step(generator, guidance, config, opt, sched, cond_fn, state: _State, clock) -> dict:
    """One Diff-Instruct step: sample, k fake-score steps, one generator step; its logs.

    Its phases on ``clock``: "render forward" (the samples and their conditioning),
    "fake-score update", "teacher" (the guidance's eps calls: CFG teacher and IKL's fake eval),
    "render backward" (the loss's backward into the generator) and "optimizer".
    """
    step = state.step
    progress = step / max(config.steps - 1, 1)
    with clock("render forward"):
        sample = generator.sample(config.batch, state.rng)
        cond = cond_fn(sample) if cond_fn else None
        x = sample.x  # a latent teacher's encoding (once for both uses) unless already latent
        if not getattr(generator, "in_teacher_space", False):
            x = guidance.to_teacher(x)
    pose = sample.info.get("pose")  # (B, P) cameras, for a camera-conditioned fake score
    with clock("fake-score update"):
        logs = guidance.update_fake(x.detach(), cond, progress, state.rng, pose=pose)
    with clock("teacher"):
        loss, g_logs = guidance.loss(x, cond, progress, state.rng, pose=pose)
    if sample.members != 1:
        loss = loss * sample.members
    if sample.aux_loss is not None:
        loss = loss + sample.aux_loss
    with clock("render backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with clock("optimizer"):
        opt.step()
        sched.step()
    logs.update(g_logs, **sample.aux_logs, step=step, loss=loss.detach())
    return logs
