"""`InterruptGuard`: how long work meets Ctrl-C (SIGINT) and SIGTERM, in one place.

Two ways, one guard. Batch and video runs stop at once (`Interrupted` raised from the signal), except
inside `critical()` (an output and its record being written), where the signal is held until the
section ends: an item is either complete and recorded or absent. Training (`hold=True`) never raises:
the signal is only recorded in `received`, and the loop stops after its step, writes a checkpoint and
agrees with the other processes on when to stop. Outside the main thread signals cannot be caught,
and the guard does nothing.
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: The signals a user or a scheduler sends to stop a run.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT/SIGTERM during a run (a BaseException, so that no per-item handler swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class InterruptGuard:
    """Catch SIGINT/SIGTERM for the `with` block; `hold=True` records them without raising."""

    def __init__(self, *, hold: bool = False):
        self.hold = hold
        self.pending: int | None = None
        self.depth = 0
        self._previous: dict[int, object] = {}

    @property
    def received(self) -> str | None:
        """The name of the signal received (`"SIGINT"`, `"SIGTERM"`), or None."""
        return signal.Signals(self.pending).name if self.pending is not None else None

    def _handle(self, signum, frame) -> None:
        self.pending = signum
        if not self.hold and self.depth == 0:
            raise Interrupted(signum)

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    @contextmanager
    def critical(self) -> Iterator[None]:
        """A section a signal must not cut: it is held, then raised when the section ends."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending is not None and not self.hold and self.depth == 0:
            raise Interrupted(self.pending)


__all__ = ["STOP_SIGNALS", "InterruptGuard", "Interrupted"]
