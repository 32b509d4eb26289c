"""TensorBoard scalars of the training loops (policy training, encoder pretraining), off by default.

``with scalar_writer(log_dir) as tb: tb.add_scalar("train/loss", value, step)``: with ``log_dir=None`` the writer
is a no-op and ``torch.utils.tensorboard`` is not imported. Commands turn it on with ``tensorboard=true`` and write
under :data:`TB_ROOT` (``tensorboard --logdir runs/tb``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Protocol

#: Where the commands write TensorBoard runs: ``runs/tb/<command or sweep>/<run name>``.
TB_ROOT = Path("runs/tb")


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None: ...


class NullWriter:
    """Drops every scalar (TensorBoard off)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        return None


def tb_dir(enabled: bool, *names: str) -> Path | None:
    """``runs/tb/<names...>`` when ``enabled``, else ``None`` (off)."""
    return TB_ROOT.joinpath(*names) if enabled else None


@contextlib.contextmanager
def scalar_writer(log_dir: str | os.PathLike | None) -> Iterator[ScalarWriter]:
    """A ``SummaryWriter`` on ``log_dir`` (closed, so flushed, on exit), or a :class:`NullWriter` when ``None``."""
    if log_dir is None:
        yield NullWriter()
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        yield writer
    finally:
        writer.close()
