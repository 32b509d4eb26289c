"""``<sweep_dir>/runs.csv``: one row per ``robrep sweep`` invocation, so a sweep resumed across sessions reports its
whole wall time (the sum of its rows) — including invocations that were killed.

The row is written when the invocation starts (``status`` ``running``) and rewritten by a heartbeat thread every
:data:`HEARTBEAT_S` seconds (wall minutes so far, cells finished so far), then once more at the end: ``finished``,
``failed`` or ``interrupted`` (Ctrl-C, SIGTERM). A SIGKILL runs no code, so its row stays ``running``; the next
invocation on the sweep directory (which holds the directory's lock, so the writer is gone) marks it ``killed``.
A killed row's wall time and cell count are those of its last heartbeat: at most :data:`HEARTBEAT_S` short.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from robrep import results

log = logging.getLogger(__name__)

#: Seconds between heartbeat rewrites of the running invocation's row.
HEARTBEAT_S = 30.0

COMMENT = ("one row per `robrep sweep` invocation on this sweep_dir (resumes add rows); status running = the "
           "invocation is alive or was killed before the next one started, killed = SIGKILLed (wall and cells from "
           "its last heartbeat)")


class RunLog:
    """This invocation's row of ``<sweep_dir>/runs.csv``: started (UTC), wall minutes, cells, cells done before it
    started, cells its workers finished, status, jobs, command. The caller holds the sweep directory's lock.
    ``finished_here`` counts the cells given to :meth:`set_cells` whose record now exists (``CellSpec.done``)."""

    def __init__(self, sweep_dir: str | Path, cells: int, jobs: int) -> None:
        self.path = Path(sweep_dir) / "runs.csv"
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._pending: list = []
        self.row: dict[str, object] = {
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_min": 0.0, "cells": cells,
            "done_before": 0, "finished_here": 0, "status": "running", "jobs": int(jobs),
            "command": results.command_line()}
        rows = results.read_csv(self.path) if self.path.exists() else []
        for r in rows:  # a row still "running" belongs to a dead invocation (we hold the lock)
            if r.get("status") == "running":
                r["status"] = "killed"
        self._before = rows
        self._write()

    def set_cells(self, cells: int, pending: Sequence) -> None:
        """The invocation's cell count and the cells it set out to run (``CellSpec``s; those done count as its)."""
        with self._lock:
            self._pending = list(pending)
            self.row.update(cells=int(cells), done_before=int(cells) - len(self._pending))

    def _write(self) -> float:
        rows = [*self._before, dict(self.row)]
        results.write_csv(rows, self.path, comments=[COMMENT])
        return sum(float(r["wall_min"]) for r in rows)

    def update(self, status: str = "running") -> float:
        """Rewrite this invocation's row with the wall time so far, the cells finished so far and ``status``;
        returns the sweep's total wall minutes over all rows."""
        with self._lock:
            self.row.update(wall_min=round((time.perf_counter() - self._t0) / 60.0, 2), status=status,
                            finished_here=sum(bool(c.done) for c in self._pending))
            return self._write()

    @contextlib.contextmanager
    def heartbeat(self, every_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Inside the block a daemon thread calls :meth:`update` every ``every_s`` seconds (a failed write is logged
        and retried at the next beat); it is stopped and joined when the block ends, before the final status."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                try:
                    self.update()
                except OSError as exc:
                    log.warning(f"could not update {self.path}: {exc}")

        thread = threading.Thread(target=beat, name="runs.csv heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
