"""Where library messages go: every module logs through ``logging.getLogger(__name__)``; the entry point decides
where the records end up.

Under ``robrep <command>`` Hydra configures logging from ``configs/common.yaml`` (``hydra.job_logging``): INFO and
above to the terminal as plain lines (:class:`StdoutHandler`, ``%(message)s``) and, with timestamps and logger
names, to ``<run dir>/<command>.log``. A process that runs library code without Hydra (a launcher's worker, a
script) calls :func:`console_logging` once to print the same plain lines.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

PLAIN = "%(message)s"


class StdoutHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stdout`` is when a record is emitted (not when the handler was
    made), so redirected or captured output (``contextlib.redirect_stdout``, pytest's ``capsys``) gets the lines.
    ``stream`` (from a logging config) is ignored."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO | None) -> None:  # StreamHandler.__init__ / setStream assign it: ignored
        pass


def console_logging(level: int = logging.INFO) -> None:
    """Print INFO (``level``) and above as plain lines on stdout, unless the root logger already has a handler
    (Hydra's, or an earlier call's): idempotent."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = StdoutHandler()
    handler.setFormatter(logging.Formatter(PLAIN))
    root.addHandler(handler)
    root.setLevel(level)
