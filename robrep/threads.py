"""CPU thread limits for one command: torch intra-op threads and BLAS/LAPACK pools together."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def thread_limit(n: int | None, load_torch: bool = True) -> Iterator[None]:
    """Within the block, limit torch's intra-op threads and the BLAS/LAPACK/OpenMP pools
    (threadpoolctl) to ``n``; on exit, also on an exception, restore the previous counts.
    ``None`` / 0 leaves them unchanged. ``load_torch=False`` limits torch only if it is already
    imported (for processes that never use torch: importing it costs seconds).

    One thread per process is fastest on a shared 2-core machine (oversubscribed OpenBLAS LAPACK
    is ~10x slower). Pools of libraries first loaded inside the block are not limited.
    """
    if not n:
        yield
        return
    n = int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1 (or None/0 to leave it), got {n}")
    with contextlib.ExitStack() as restore:  # unwinds last-in first-out, also on an exception
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
        else:
            restore.enter_context(threadpool_limits(n))  # limits now, restores the previous limits on exit
        if load_torch or "torch" in sys.modules:
            import torch

            restore.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(n)
        yield
