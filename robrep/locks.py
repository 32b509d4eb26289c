"""One writer per output: :func:`exclusive_lock` (an ``flock`` on a lock file) around a sweep directory or a demo file.

The lock belongs to the open file, so the kernel releases it when its process exits in any way (also SIGKILL):
a lock file left behind never blocks anyone. The file holds who took it (pid, host, start time, command), which
the refusal message quotes. Lock files are hidden (``.<name>.lock``) and kept (deleting them would race).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator


class LockedError(RuntimeError):
    """Another process holds the lock of the output this one was about to write."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``<dir>/.lock`` inside a directory target (a sweep directory),
    ``.<name>.lock`` beside a file target (a demo file)."""
    target = Path(target)
    return target / ".lock" if target.is_dir() else target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, what: str, directory: bool = False) -> Iterator[Path]:
    """Hold the lock of ``target`` inside the block, or raise :class:`LockedError` at once (no waiting) naming the
    holder. ``what`` says what this process is doing (``"robrep sweep"``); ``directory=True`` creates ``target`` as
    a directory first (so a sweep directory is locked from inside). Yields the lock file's path."""
    from robrep.results import command_line

    target = Path(target)
    if directory:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (O_CLOEXEC by default)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"{target} is being written by another process ({_holder(path)}); {what} would write "
                              f"the same place. Wait for it to finish, stop it, or choose another output.") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command_line()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, from what it wrote there."""
    try:
        h = json.loads(path.read_text())
        return f"pid {h['pid']} on {h['host']}, since {h['started_utc']}: {h['command']}; lock file {path}"
    except (OSError, ValueError, KeyError):
        return f"lock file {path}"
