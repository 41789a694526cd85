"""Training the tiny teacher by denoising score matching on images rendered on the fly.

MSE of the UNet's output against its target (v = a_t eps - s_t x0, or eps) at uniform t
(Ho et al. 2020, Algorithm 1; Salimans & Ho 2022), classifier-free dropout of the
caption (Ho & Salimans 2022), AdamW with linear warm-up, an EMA of the weights (what gets
saved), bf16 autocast on CUDA. ``batch_fn(n, generator) -> (images, captions)`` is the only
link to the data, so no dataset lives on disk. A run resumes from ``out/checkpoint.pt`` to
exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure  # no pyplot: no global backend state
from tqdm.auto import tqdm

from dream3d.checkpoint import load_checkpoint, save_checkpoint
from dream3d.diffusion import add_noise, check_choice, coefficients
from dream3d.interrupt import DeferredInterrupt
from dream3d.nn import ema_update, warm_decay
from dream3d.teachers.tiny import TinyTeacher

# (n, generator) -> (images, captions) or (images, captions, cameras (n, POSE_DIM))
BatchFn = Callable[[int, torch.Generator], tuple]


@dataclass
class TeacherTrainConfig:
    """How the tiny teacher trains."""

    steps: int = 20_000  # optimizer steps
    batch: int = 256  # images per step
    lr: float = 2e-4  # AdamW learning rate after warm-up
    warmup: int = 500  # steps of linear learning-rate warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    p_uncond: float = 0.1  # probability a caption is dropped to "" (classifier-free)
    p_no_camera: float = 0.1  # a camera teacher's: probability a camera is dropped (zero row)
    ema: float = 0.999  # EMA decay of the saved weights (0: save the raw weights)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    device: Literal["cpu", "cuda"] = "cpu"  # where the UNet trains (bf16 autocast on cuda)
    seed: int = 0  # seeds the batches, t, noise and caption dropout
    log_every: int = 50  # one history row (mean loss) every this many steps
    save_every: int = 1000  # checkpoint and outputs every this many steps, and at the end
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        check_choice("device", self.device, ("cpu", "cuda"))
        for name in ("steps", "batch", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not all(0.0 <= p < 1.0 for p in (self.p_uncond, self.p_no_camera, self.ema)):
            raise ValueError("p_uncond, p_no_camera and ema must lie in [0, 1)")


def learning_rate(config: TeacherTrainConfig, step: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then constant."""
    return config.lr * min(1.0, (step + 1) / max(config.warmup, 1))


def denoising_loss(teacher: TinyTeacher, x0, cond, generator, camera=None) -> torch.Tensor:
    """Mean ||out_theta(a_t x0 + s_t eps, t, y[, camera]) - target||^2 with t ~ U{0..T-1}.

    target is v = a_t eps - s_t x0 or eps, as the teacher's ``config.prediction``.
    """
    abar = teacher.alphas_cumprod
    t = torch.randint(0, len(abar), (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = add_noise(x0, t, eps, abar)
    with torch.autocast(x0.device.type, torch.bfloat16, enabled=x0.device.type == "cuda"):
        pred = teacher.predict(x_t, t, cond, camera)
    target = eps
    if teacher.config.prediction == "v":
        a, s = coefficients(abar, t, x0)
        target = a * eps - s * x0
    return F.mse_loss(pred.float(), target)


def drop_rows(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero each row of x (B, ...) with probability p: a caption row (B, 1, D) becomes the
    encoding of ``""``, a camera row (B, POSE_DIM) "no camera"."""
    keep = torch.rand(x.shape[0], generator=generator) >= p
    return x * keep.to(x.device, x.dtype).reshape(-1, *[1] * (x.ndim - 1))


def _step(teacher, opt, batch_fn, config, step: int, rng) -> float:
    """One optimizer step on a fresh batch; returns the loss."""
    images, captions, *cameras = batch_fn(config.batch, rng)
    x0 = images.to(teacher.device, torch.float32)
    cond = drop_rows(teacher.encode_prompt(list(captions)), config.p_uncond, rng)
    camera = None
    if teacher.reads_camera:  # dropped independently of the caption: CFG keeps the camera
        camera = drop_rows(cameras[0].to(x0.device), config.p_no_camera, rng)
    loss = denoising_loss(teacher, x0, cond, rng, camera)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(teacher.parameters(), config.grad_clip)
    for group in opt.param_groups:
        group["lr"] = learning_rate(config, step)
    opt.step()
    return loss.item()


@dataclass
class _Run:
    """Everything a checkpoint holds besides the model and optimizer."""

    rng: torch.Generator
    ema: dict[str, torch.Tensor]
    step: int = 0  # steps done
    history: list | None = None  # rows logged so far
    window: list | None = None  # losses since the last row


def _parts(teacher, opt, run: _Run) -> dict:
    """The stateful parts of a run, by their names in checkpoint.pt."""
    return {"model": teacher, "optimizer": opt, "rng": run.rng}


def _save(path: Path, teacher, opt, run: _Run, config) -> None:
    """checkpoint.pt: the parts, the EMA, the run's counters and the caption table."""
    names = sorted(teacher.embeddings)
    table = torch.stack([teacher.embeddings[c] for c in names]) if names else torch.zeros(0)
    save_checkpoint(
        path,
        **_parts(teacher, opt, run),
        ema=run.ema,
        step=run.step,
        history=run.history,
        window=run.window,
        captions=names,
        caption_embeddings=table,
        config=asdict(config),
        teacher_config=asdict(teacher.config),
    )


def _restore(path: Path, teacher, opt, run: _Run) -> None:
    """Load ``path`` into the teacher, optimizer and run state, in place."""
    keys = ("ema", "step", "history", "window", "captions", "caption_embeddings")
    plain = load_checkpoint(path, *keys, **_parts(teacher, opt, run))
    run.ema = {k: v.to(teacher.device) for k, v in plain["ema"].items()}
    run.step, run.history, run.window = plain["step"], plain["history"], plain["window"]
    teacher.embeddings.update(zip(plain["captions"], plain["caption_embeddings"]))


def _ema_teacher(teacher: TinyTeacher, ema: dict) -> TinyTeacher:
    """A copy of the teacher holding the EMA weights (the teacher itself if no EMA)."""
    if not ema:
        return teacher
    out = copy.deepcopy(teacher)
    out.load_state_dict(ema)
    return out


def plot_loss(history: list[dict], path: Path) -> None:
    """Loss against step, log scale."""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    ax.plot([r["step"] for r in history], [r["loss"] for r in history])
    ax.set(xlabel="step", ylabel="MSE", yscale="log", title="tiny teacher")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _write(out: Path, teacher, opt, run: _Run, config) -> None:
    """checkpoint.pt (atomically), history.json, loss.png and teacher.safetensors."""
    _save(out / "checkpoint.pt", teacher, opt, run, config)
    (out / "history.json").write_text(json.dumps(run.history, indent=1))
    if run.history:
        plot_loss(run.history, out / "loss.png")
    _ema_teacher(teacher, run.ema).save(out / "teacher.safetensors")


def _log(run: _Run, step: int, lr: float, images: int, seconds: float) -> dict:
    """Append a history row with the mean loss of the window and the images/s since the last."""
    row = {
        "step": step,
        "loss": sum(run.window) / len(run.window),
        "lr": lr,
        "images_per_s": images / max(seconds, 1e-9),
    }
    run.history.append(row)
    run.window = []
    return row


def train_teacher(
    teacher: TinyTeacher,
    batch_fn: BatchFn,
    config: TeacherTrainConfig,
    out: Path | str,
    resume: bool = False,
) -> list[dict]:
    """Train ``teacher`` in place and write its outputs to ``out``; returns the history.

    At the end the teacher holds the EMA weights (as teacher.safetensors does) and is in eval
    mode; checkpoint.pt keeps the raw weights too, for ``resume=True``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher.to(config.device).train()
    opt = torch.optim.AdamW(teacher.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = {k: v.detach().clone() for k, v in teacher.state_dict().items()} if config.ema else {}
    run = _Run(torch.Generator().manual_seed(config.seed), ema, history=[], window=[])
    if resume:
        _restore(out / "checkpoint.pt", teacher, opt, run)
    bar = tqdm(total=config.steps, initial=run.step, desc="teacher", disable=not config.progress)
    tick, seen = time.perf_counter(), 0
    with DeferredInterrupt() as stop:
        while run.step < config.steps:
            step = run.step
            run.window.append(_step(teacher, opt, batch_fn, config, step, run.rng))
            if run.ema:
                ema_update(run.ema, teacher, warm_decay(config.ema, step))
            run.step, seen = step + 1, seen + config.batch
            bar.update(1)
            if run.step % config.log_every == 0 or run.step == config.steps:
                lr, seconds = learning_rate(config, step), time.perf_counter() - tick
                row = _log(run, step, lr, seen, seconds)
                bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['images_per_s']:.0f}")
                tick, seen = time.perf_counter(), 0
            if stop.requested:  # Ctrl-C: keep every finished step, --resume goes on from here
                bar.close()
                _write(out, teacher, opt, run, config)
                raise KeyboardInterrupt
            if run.step % config.save_every == 0 and run.step < config.steps:
                _write(out, teacher, opt, run, config)
    bar.close()
    _write(out, teacher, opt, run, config)
    if run.ema:
        teacher.load_state_dict(run.ema)
    return run.history
