"""`dream3d lab`: the Diff-Instruct claims, measured on exact Gaussian-mixture teachers.

- dirac: IKL with the analytic point-mass fake score is SDS (Corollary 3.4), to round-off;
  with a learned fake score it ends where SDS ends.
- modes: a one-step generator under IKL covers the modes of an 8-mode mixture; under SDS
  every sample is pulled onto a point.
- misaligned: a thin ring far from the generator; w(t) concentrated at t ~ 0 (plain KL,
  Corollary 3.5) against the full IKL integral.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure  # no pyplot: no global backend state

from dream3d.guidance import GUIDANCES, make_guidance
from dream3d.metrics import mmd2, mode_mass
from dream3d.teachers.gmm import gmm_preset
from dream3d.train import TrainConfig, train
from generators.onestep import MLPGenerator
from generators.particles import Particles

KL_T_RANGE = (0.001, 0.005)  # "w(t) concentrated near t = 0": the five smallest timesteps
CURVE_SAMPLES = 1000  # samples per MMD^2 point of the training curves (the final MMD^2 uses more)


@dataclass
class LabOptions:
    """What a user may change from the command line; None keeps each lab's own default."""

    out: Path = Path("outputs/lab")  # where metrics.json and the plots go
    steps: int | None = None  # generator steps per run
    seed: int = 0  # seeds the generator init and every draw
    teacher: str | None = None  # GMM preset (modes: ring8 | grid25)
    guidance: list[str] = field(default_factory=lambda: ["sds", "ikl"])  # which to run (modes)
    weighting: str | None = None  # w(t) for every run
    fake_steps: int | None = None  # k fake-score steps per generator step (IKL)
    t_range: tuple[float, float] | None = None  # (t_min, t_max) of the IKL runs
    lr: float | None = None  # generator learning rate
    progress: bool = True  # progress bars


def _one_thread(lab):
    """Run ``lab`` with one intra-op thread, restoring the caller's count after.

    The labs' tensors are small (batch 256, width 256), too small to share out: on the 2-core
    CPU, busy with other jobs (load average 6), a step of ``lab modes`` took 70 ms with two
    threads against 9 ms with one (SDS), 145 ms against 10 ms (IKL).
    """

    @functools.wraps(lab)
    def run(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return lab(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def _write(out: Path, metrics: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _save(fig, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def own_defaults(name: str) -> dict:
    """The settings that make guidance ``name`` itself (its config's ``own``: DMD's weighting
    and 5 fake steps, SiD's one fake step): the labs' IKL settings never override them."""
    cls = GUIDANCES[name][1]
    return {key: getattr(cls(), key) for key in getattr(cls, "own", ())}


def _guidance_options(o: LabOptions, name: str = "ikl", **defaults) -> dict:
    """Lab defaults (the MLP fake score's lr 1e-3, IKL's fake evaluated after its update, then
    each lab's, then what makes guidance ``name`` itself) overridden by the user's."""
    user = {"weighting": o.weighting, "fake_steps": o.fake_steps, "t_range": o.t_range}
    return (
        {"fake_lr": 1e-3, "share_draw": False}
        | defaults
        | own_defaults(name)
        | {k: v for k, v in user.items() if v is not None}
    )


def _train_config(o: LabOptions, steps: int, lr: float, seed: int) -> TrainConfig:
    """Batches of 256 points, a cosine lr schedule, a history row every 10 steps."""
    return TrainConfig(
        steps=steps,
        batch=256,
        lr=lr,
        lr_schedule="cosine",
        seed=seed,
        log_every=10,
        progress=o.progress,
    )


def _scatter(ax, ref: torch.Tensor, x: torch.Tensor, title: str, lim: float):
    ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.6", label="teacher")
    ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:red", label="generator")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)


@torch.no_grad()
def _draw(generator, n: int, seed: int) -> torch.Tensor:
    return generator.sample(n, torch.Generator().manual_seed(seed + 1)).x.float()


def dirac_identity(seed: int = 0, n: int = 512) -> float:
    """max |g_SDS - g_IKL(dirac)| over random points, t, eps, classes and every weighting."""
    teacher = gmm_preset("ring8")
    rng = torch.Generator().manual_seed(seed)
    x0 = 3 * torch.randn(n, 2, generator=rng, dtype=torch.float64)
    cond = torch.randint(-1, 8, (n,), generator=rng)
    worst = 0.0
    for w in ("sds", "uniform", "snr", "dmd"):
        sds = make_guidance("sds", teacher, weighting=w, cfg_scale=7.5)
        ikl = make_guidance("ikl", teacher, fake="dirac", weighting=w, cfg_scale=7.5)
        t, eps = sds.draw(x0, 0.0, rng)
        diff = (sds.grad(x0, t, eps, cond)[0] - ikl.grad(x0, t, eps, cond)[0]).abs().max()
        worst = max(worst, float(diff))
    return worst


@_one_thread
def lab_dirac(o: LabOptions) -> dict:
    """Corollary 3.4, exactly and in training."""
    t0 = time.perf_counter()
    identity = dirac_identity(o.seed)
    teacher = gmm_preset("ring8")
    steps = o.steps or 600
    starts = 3 * torch.randn(4, 2, generator=torch.Generator().manual_seed(o.seed))
    paths: dict[str, list[torch.Tensor]] = {"sds": [], "ikl": []}
    for i, start in enumerate(starts):
        for name in ("sds", "ikl"):
            particle = Particles(start[None])
            opts = _guidance_options(o, weighting="sds", fake="mlp", fake_warmup=200)
            guidance = make_guidance(name, teacher, dim=2, cfg_scale=1.0, **opts)
            track = []
            cfg = _train_config(o, steps, o.lr or 1e-2, o.seed + i)
            train(
                particle,
                guidance,
                cfg,
                on_log=lambda s, row, p=particle, tr=track: (
                    tr.append(p.x[0].detach().clone()) or row
                ),
                desc=f"dirac {name} start {i}",
            )
            paths[name].append(torch.stack(track))
    ends = {k: torch.stack([p[-1] for p in v]) for k, v in paths.items()}
    gap = (ends["sds"] - ends["ikl"]).norm(dim=1)
    metrics = {
        "identity_max_abs_diff_float64": identity,
        "starts": starts.tolist(),
        "end_sds": ends["sds"].tolist(),
        "end_ikl_learned": ends["ikl"].tolist(),
        "end_gap": gap.tolist(),
        "end_gap_max": float(gap.max()),
        "travel_mean": float((ends["sds"] - starts).norm(dim=1).mean()),
        "seconds": time.perf_counter() - t0,
    }
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ref = teacher.sample(2000, torch.Generator().manual_seed(o.seed))
    ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.7")
    for name, style in (("sds", "-"), ("ikl", "--")):
        for p in paths[name]:
            ax.plot(p[:, 0], p[:, 1], style, c="tab:blue" if name == "sds" else "tab:red")
    ax.scatter(starts[:, 0], starts[:, 1], marker="o", c="k", zorder=3)
    ax.set(
        aspect="equal",
        title="a point mass from each dot: SDS (blue)\nvs IKL with a learned fake score (red)",
    )
    _save(fig, o.out / "dirac_paths.png")
    return _write(o.out, metrics)


def _curve(history: list[dict]) -> tuple[list[int], list[float]]:
    rows = [r for r in history if "mmd2" in r]
    return [r["step"] for r in rows], [r["mmd2"] for r in rows]


def _fit(o: LabOptions, name, teacher, generator, opts, steps, lr, ref, every) -> list[dict]:
    """Train one generator and record MMD^2 to the teacher's samples every ``every`` steps."""

    every = max(round(every / 10), 1) * 10  # history rows come every 10 steps
    ref = ref[:CURVE_SAMPLES]

    def on_log(step, row):
        if step % every == 0 or step == steps - 1:
            row["mmd2"] = mmd2(_draw(generator, len(ref), o.seed), ref)
        return row

    guidance = make_guidance(name, teacher, dim=2, **opts)
    cfg = _train_config(o, steps, lr, o.seed)
    return train(generator, guidance, cfg, on_log=on_log, desc=f"{name}")


@_one_thread
def lab_modes(o: LabOptions) -> dict:
    """IKL covers the modes of a mixture; SDS pulls every sample onto a point."""
    teacher = gmm_preset(o.teacher or "ring8")
    k = len(teacher.means)
    radius, min_frac = 3 * float(teacher.stds.max()), 0.4 / k  # 5% for 8 modes
    steps = o.steps or 6000
    ref = teacher.sample(2000, torch.Generator().manual_seed(o.seed + 100))
    metrics: dict = {
        "teacher": o.teacher or "ring8",
        "modes": k,
        "radius": radius,
        "min_frac": min_frac,
    }
    samples, curves = {}, {}
    for name in o.guidance:
        t0 = time.perf_counter()
        torch.manual_seed(o.seed)
        gen = MLPGenerator(2, z_dim=16, hidden=256)
        opts = _guidance_options(
            o, name, weighting="uniform", cfg_scale=1.0, fake_steps=2, fake_warmup=200
        )
        history = _fit(o, name, teacher, gen, opts, steps, o.lr or 1e-3, ref, max(steps // 20, 1))
        x = _draw(gen, 10_000, o.seed)
        mass = mode_mass(x, teacher.means, radius)
        samples[name], curves[name] = x, _curve(history)
        metrics[name] = {
            "modes_covered": int((mass >= min_frac).sum()),
            "mode_mass": [round(float(m), 4) for m in mass],
            "mmd2": mmd2(x[:2000], ref),
            "seconds": time.perf_counter() - t0,
        }
    if {"sds", "ikl"} <= set(o.guidance):
        metrics["mmd2_ratio_sds_over_ikl"] = metrics["sds"]["mmd2"] / max(
            metrics["ikl"]["mmd2"], 1e-12
        )
    _plots(o.out / "modes.png", ref, samples, curves, lim=3.2)
    return _write(o.out, metrics)


@_one_thread
def lab_misaligned(o: LabOptions) -> dict:
    """A thin ring far from the generator: plain KL (t ~ 0) against the full IKL integral, and
    the other fake-score losses of ``o.guidance`` (SiD, DMD) over the same full range."""
    teacher = gmm_preset("thin-ring")
    steps = o.steps or 4000
    ref = teacher.sample(1000, torch.Generator().manual_seed(o.seed + 100))
    full = o.t_range or (0.02, 0.98)
    arms = {"kl": ("ikl", KL_T_RANGE), "ikl": ("ikl", full)}
    arms |= {g: (g, full) for g in o.guidance if g not in ("sds", "ikl")}
    metrics: dict = {"t_range": {arm: t_range for arm, (_, t_range) in arms.items()}}
    samples, curves = {}, {}
    for arm, (name, t_range) in arms.items():
        t0 = time.perf_counter()
        torch.manual_seed(o.seed)
        gen = MLPGenerator(2, z_dim=16, hidden=256, offset=(4.0, 4.0), init_scale=0.1)
        opts = _guidance_options(o, name, weighting="sds", cfg_scale=1.0, fake_warmup=200) | {
            "t_range": t_range
        }
        history = _fit(o, name, teacher, gen, opts, steps, o.lr or 1e-3, ref, max(steps // 30, 1))
        x = _draw(gen, 2000, o.seed)
        radius = x.double().norm(dim=1)
        samples[arm], curves[arm] = x, _curve(history)
        metrics[arm] = {
            "mmd2": mmd2(x[:1000], ref),
            "mmd2_curve": dict(zip(*curves[arm])),
            "radius_mean": float(radius.mean()),
            "angle_spread": _angle_spread(x),
            "seconds": time.perf_counter() - t0,
        }
    _plots(o.out / "misaligned.png", ref, samples, curves, lim=5.0)
    return _write(o.out, metrics)


def _angle_spread(x: torch.Tensor) -> float:
    """1 - |mean unit vector|: 0 when every sample sits at one angle, ~1 around a full ring."""
    unit = x.double() / x.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float(1 - unit.mean(0).norm())


def _plots(path: Path, ref, samples: dict, curves: dict, lim: float):
    """One scatter per run, then the MMD^2 curves of all runs."""
    fig = Figure(figsize=(4.2 * (len(samples) + 1), 4))
    axes = fig.subplots(1, len(samples) + 1)
    for ax, (name, x) in zip(axes, samples.items()):
        _scatter(ax, ref, x[:2000], name.upper(), lim)
    for name, (steps, values) in curves.items():
        axes[-1].plot(steps, values, label=name.upper())
    axes[-1].set(yscale="log", xlabel="step", ylabel="MMD$^2$ to teacher", title="over training")
    axes[-1].legend()
    _save(fig, path)


LABS = {"dirac": lab_dirac, "modes": lab_modes, "misaligned": lab_misaligned}
