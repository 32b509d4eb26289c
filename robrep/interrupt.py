"""SIGTERM handled like Ctrl-C, so ``finally`` blocks and context managers clean up before the process exits.

* :func:`sigterm_raises` — SIGTERM raises :class:`Terminated` (a ``SystemExit`` with code 143) wherever the main
  thread is, like SIGINT raises ``KeyboardInterrupt``: for commands that wait (a sweep waiting for its workers).
* :func:`deferred_sigterm` — SIGTERM is only recorded; the loop checks the yielded list between units of work
  (a demo, an episode) and stops cleanly: for code that must not be interrupted mid-write (HDF5).

Both apply in the main thread only, restore the previous handler on exit, and leave SIGTERM alone when someone else
already handles it.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread."""
    if not _ours():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def deferred_sigterm() -> Iterator[list[int]]:
    """Inside the block SIGTERM is appended to the yielded list instead of killing the process; the caller checks
    it between units of work and raises ``Terminated(list[0])``. One that arrives after the last check (while
    closing a file) is delivered when the block ends."""
    received: list[int] = []
    if not _ours():
        yield received
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if received:
        os.kill(os.getpid(), received[0])
