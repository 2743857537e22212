"""SIGINT (Ctrl-C) and SIGTERM (cloud TPU preemption) as requests the loop honours.

While a train step or a save runs, a signal only records the request: the loop
finishes the step, saves a checkpoint at it and raises :class:`Interrupted`.
Elsewhere (set-up, evaluation after its checkpoint was saved) it raises at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(RuntimeError):
    """A run stopped by a signal; ``exit_code`` is the shell's 128 + signum."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class SignalGuard:
    """Context manager installing the handlers (main thread only; elsewhere the
    process keeps Python's defaults). ``on_signal(signum)`` builds the message
    of an immediate interruption."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = True
        self._previous: dict[int, object] = {}
        self.describe = lambda: "before training started; nothing new was saved"  # set-up phase

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        if self._immediate:
            raise self.interrupted(self.describe())

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within: a signal is only recorded (see :attr:`requested`)."""
        previous, self._immediate = self._immediate, False
        try:
            yield
        finally:
            self._immediate = previous

    @contextlib.contextmanager
    def immediate(self, describe: str) -> Iterator[None]:
        """Within: a signal (or one already recorded) interrupts at once, with
        ``describe`` saying what was saved."""
        previous, self._immediate = (self._immediate, self.describe), True
        self.describe = lambda: describe
        try:
            if self.requested:
                raise self.interrupted(describe)
            yield
        finally:
            self._immediate, self.describe = previous

    def interrupted(self, message: str) -> Interrupted:
        name = signal.Signals(self.signum).name
        return Interrupted(self.signum, f"interrupted by {name} {message}")
