"""Compute precision: ``float32`` (exact) or mixed ``bfloat16``/``float16`` through :func:`torch.autocast`.

On CPUs with native bf16 dot products (AVX512-BF16 or AMX; this machine's EPYC has AVX512-BF16) bf16
autocast cuts the cost of matmuls and convolutions by about 1.6x (one thread: the in-domain encoders
and a ResNet-18 train step; ``python benchmarks/precision_speed.py`` → results/precision_speed.csv) while
the frozen features move by < 1 % (relative error; cosine ≥ 0.998 per token). Without native support it is
slower than float32, so float32 stays the default everywhere and configs opt in. Parameters and outputs stay float32; only the
autocast-eligible ops (matmul, conv, linear) run in the lower precision.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_precision(precision: str | None) -> str:
    """The canonical name (``None`` → ``"float32"``); ``ValueError`` for an unknown one."""
    name = "float32" if precision in (None, "fp32", "float32") else {"bf16": "bfloat16", "fp16": "float16"}.get(
        str(precision), str(precision))
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    return name


def autocast(device: torch.device | str, precision: str | None) -> ContextManager:
    """``torch.autocast`` on ``device``'s type at ``precision``; a no-op context for float32."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def resolve_precision(precision: str | None, device: torch.device | str = "cpu") -> str:
    """Placeholder until ``auto`` lands: the canonical name of an explicit precision."""
    return check_precision(precision)
