"""CPU thread limits for one command: torch intra-op threads and BLAS/LAPACK pools together."""

from __future__ import annotations

import contextlib

import torch


def thread_limit(n: int | None) -> contextlib.AbstractContextManager:
    """Limit torch and BLAS/LAPACK threads to ``n`` (None/0: leave them); use as a context manager.
    One thread per process is fastest on a shared 2-core machine (oversubscribed OpenBLAS LAPACK is ~10x slower)."""
    if n:
        torch.set_num_threads(int(n))
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(int(n)) if n else contextlib.nullcontext()
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
