"""SIGTERM handled like Ctrl-C, so ``finally`` blocks and context managers clean up before the process exits.

* :func:`sigterm_raises` — SIGTERM raises :class:`Terminated` (a ``SystemExit`` with code 143) wherever the main
  thread is, like SIGINT raises ``KeyboardInterrupt``: for commands that wait (a sweep waiting for its workers).
  A ``Terminated`` / ``KeyboardInterrupt`` Python drops inside a weakref callback or ``__del__`` is delivered again
  (:func:`redeliver_dropped`).
* :func:`deferred_interrupts` — SIGTERM and Ctrl-C are only recorded; the loop calls ``check()`` between units of
  work (a demo, an episode) and stops cleanly: for code that must not be interrupted mid-write (HDF5). Deferring
  Ctrl-C also keeps it from being lost: a ``KeyboardInterrupt`` raised inside a weakref / ``__del__`` callback is
  printed as "Exception ignored" and the loop runs on.

Both apply in the main thread only, restore the previous handlers on exit, and leave a signal alone when someone else
already handles it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator


class Terminated(SystemExit):
    """The process received SIGTERM; exits with code 128 + 15 unless caught. Not an ``Exception``: ``except
    Exception`` clauses (a cell's error capture) do not swallow it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


def _ours() -> bool:
    return threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread, and a :class:`Terminated` or
    ``KeyboardInterrupt`` that Python drops is delivered again (:func:`redeliver_dropped`)."""
    if not _ours():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        with redeliver_dropped():
            yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def redeliver_dropped(delay_s: float = 0.05) -> Iterator[None]:
    """Inside the block, a :class:`Terminated` or ``KeyboardInterrupt`` raised where Python cannot propagate it — a
    weakref callback or ``__del__`` ran when the signal arrived, and Python reports it to :data:`sys.unraisablehook`
    ("Exception ignored") and carries on — is not lost: the same signal is sent to this process again ``delay_s``
    later, so its handler raises at another point. Other unraisable exceptions go to the previous hook."""
    previous = sys.unraisablehook

    def hook(unraisable: object) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if isinstance(exc, Terminated):
            signum = exc.signum
        elif isinstance(exc, KeyboardInterrupt):
            signum = int(signal.SIGINT)
        else:
            previous(unraisable)
            return
        timer = threading.Timer(delay_s, os.kill, (os.getpid(), signum))
        timer.daemon = True
        timer.start()

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


class Pending:
    """Signals received inside :func:`deferred_interrupts`, in arrival order. ``check()`` raises for the first:
    ``KeyboardInterrupt`` for SIGINT, :class:`Terminated` for SIGTERM."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.signals)

    def record(self, signum: int, frame: object = None) -> None:
        self.signals.append(int(signum))

    def check(self) -> None:
        if self.signals:
            raise KeyboardInterrupt if self.signals[0] == signal.SIGINT else Terminated(self.signals[0])


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Pending]:
    """Inside the block SIGTERM and SIGINT are recorded in the yielded :class:`Pending` instead of interrupting;
    the caller calls ``pending.check()`` between units of work. One that arrives after the last check (while closing
    a file) is raised when the block ends. SIGINT is deferred only while Python's own handler
    (``signal.default_int_handler``) has it, SIGTERM only while it has the default action."""
    pending = Pending()
    ours: dict[int, object] = {}
    if _ours():
        ours[signal.SIGTERM] = signal.SIG_DFL
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        ours[signal.SIGINT] = signal.default_int_handler
    for signum in ours:
        signal.signal(signum, pending.record)
    try:
        yield pending
    finally:
        for signum, previous in ours.items():
            signal.signal(signum, previous)
    pending.check()
