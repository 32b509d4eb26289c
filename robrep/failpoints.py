"""Named fail points for fault-injection tests: ``failpoint("train.eval")`` does nothing unless the environment
variable ``ROBREP_FAILPOINTS`` names that point (the pattern of fail-rs / FreeBSD fail points).

``ROBREP_FAILPOINTS="train.eval=pause,sweep.table=kill"``; actions:

* ``pause`` — touch ``$ROBREP_FAILPOINT_DIR/<point>.<pid>`` (default: the temp dir) and sleep until killed, so a
  test can kill the process (or its parent) at exactly that point;
* ``kill`` — SIGKILL this process;
* ``raise`` — raise :class:`FailpointError`.

The variable is read at each call (nothing happens at import). Points: ``train.eval`` (a policy's validation
step), ``eval.step`` (an evaluation step), ``sweep.table`` (between a sweep's table.csv and summary.csv),
``collect.demo`` (after a demo is written).
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

VARIABLE = "ROBREP_FAILPOINTS"


class FailpointError(RuntimeError):
    """Raised by a fail point set to ``raise``."""


def failpoint(name: str) -> None:
    """Act as ``ROBREP_FAILPOINTS`` says for ``name`` (usually: nothing)."""
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    actions = dict(entry.split("=", 1) for entry in spec.split(",") if "=" in entry)
    action = actions.get(name)
    if action is None:
        return
    if action == "pause":
        marker = Path(os.environ.get("ROBREP_FAILPOINT_DIR") or tempfile.gettempdir()) / f"{name}.{os.getpid()}"
        marker.touch()
        while True:
            time.sleep(3600)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "raise":
        raise FailpointError(f"fail point {name}")
    raise ValueError(f"{VARIABLE}: unknown action {action!r} for {name} (pause | kill | raise)")
