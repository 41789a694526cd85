"""Ctrl-C that lands between steps: long loops finish the step, checkpoint, then stop.

The first SIGINT only sets ``requested``; the loop checks it after each step, saves, and
raises ``KeyboardInterrupt`` itself, so a checkpoint never holds a half-made optimizer step.
A second Ctrl-C interrupts at once. Outside the main thread (where signals cannot be
handled) it does nothing and Ctrl-C behaves as usual.
"""

from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    """``with DeferredInterrupt() as stop: ... if stop.requested: save(); raise ...``."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
