"""Seconds spent in named phases of a run, for `dream3d bench speed`.

    clock = Clock()
    with clock("teacher"):
        ...
    clock.seconds  # {"teacher": 1.23}

A run that is not being profiled gets ``NO_CLOCK``, whose phases cost nothing. On CUDA the
clock synchronises the device at each phase's edges, so queued kernels count where they run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch


class Clock:
    """Wall seconds per phase name, summed over every entry."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.seconds: dict[str, float] = defaultdict(float)

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def __call__(self, name: str):
        start = self._now()
        try:
            yield
        finally:
            self.seconds[name] += self._now() - start


class _NoClock:
    def __call__(self, name: str):
        return nullcontext()


NO_CLOCK = _NoClock()
