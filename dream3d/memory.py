"""Will a run fit in memory? An estimate made before anything big is allocated.

A NeRF run holds, per NeRF (a particle), its weights, their gradients and Adam's two moments,
its buffers (occupancy grid, step count), and the autograd graph of its renders: each sample
point of each rendered ray keeps ~400 bytes for the backward pass (measured: a default run of
8 particles peaked 155 MB above one of 1 particle, 22 MB a particle with 3.2 MB of it state;
CPU, 32 px renders, 48 samples a ray, one view a step). Whatever else the process holds
(torch, the teacher, the fake score) is ``BASE``, measured the same way (0.8 GB peak for one
particle). The estimate is a lower bound of the peak, good to refuse what cannot fit.
"""

from __future__ import annotations

import os

import torch

BASE = 0.8 * 2**30  # bytes a default one-NeRF run peaks at on a CPU, all but the NeRF
BYTES_PER_SAMPLE = 400  # the autograd graph of one sample point of one rendered ray


def available(device: str) -> int:
    """Bytes free for a run now: the GPU's free memory, or the machine's available memory
    (Linux's MemAvailable; elsewhere the physical memory)."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def nerf_run_bytes(module: torch.nn.Module, nerfs: int, views: int, size: int, samples: int) -> int:
    """Bytes ``nerfs`` NeRFs like ``module`` (one NeRF) need while training with ``views``
    renders of size x size rays of ``samples`` points each a step, beyond ``BASE``."""
    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    graph = views * size * size * samples * BYTES_PER_SAMPLE
    return nerfs * (4 * weights + buffers + graph)  # weights, gradients, Adam's m and v


def check_fits(need: int, device: str, what: str) -> None:
    """ValueError (one line) when ``need`` bytes (beyond BASE on a CPU) exceed what is free."""
    have = available(device)
    total = need + (BASE if device != "cuda" else 0)
    if total > have:
        raise ValueError(
            f"{what} needs about {_size(total)} of {'GPU ' if device == 'cuda' else ''}memory "
            f"(an estimate, at least); {_size(have)} is free on this machine: ask for less"
        )


def _size(n: float) -> str:
    """Bytes in the largest unit that keeps the number at or above 1 (up to TB)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TB"
