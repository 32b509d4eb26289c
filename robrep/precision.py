"""Compute precision: ``float32`` (exact) or mixed ``bfloat16``/``float16`` through :func:`torch.autocast`.

Whether bf16 autocast pays depends on the machine. On a CPU with native bf16 dot products (AVX512-BF16 or
AMX) it runs the frozen encoders 1.3–1.7x faster than float32 (one thread; a ResNet-18 train step gains
about as much) while the features move by < 1 % (relative error; cosine ≥ 0.998 per token). On a CPU with
only AVX2 it is 5–7x *slower* (MAE, batch 64, one thread: 35–46 images/s in float32, 6.6–7.0 in bf16):
``python -m benchmarks.precision_speed`` measures both on the machine it runs on.

So a precision is chosen per machine: ``"auto"`` means bfloat16 where :func:`native_bf16` says the device
computes it natively and float32 elsewhere. ``"auto"`` is a request, never a stored value: resolve it with
:func:`resolve_precision` (once, on the device that computes) before it goes into anything that records a
precision — an encoder (:meth:`Encoder.set_precision`), a feature-cache key, a policy checkpoint, a cell
record. :func:`check_precision` and :func:`autocast` refuse it so an unresolved ``"auto"`` fails loudly
instead of being saved. Library defaults (``EncoderSpec``, ``TrainConfig``) stay float32; configs choose
(``configs/common.yaml`` asks for ``auto``; ``encoder_precision=float32`` overrides it).
:func:`describe_precision` is the one-line explanation commands print.

Parameters and outputs stay float32; only the autocast-eligible ops (matmul, conv, linear) run in the
lower precision.
"""

from __future__ import annotations

import contextlib
import os
from typing import ContextManager

import torch

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: The value that asks :func:`resolve_precision` to pick for the device.
AUTO = "auto"
#: Everything a config may name: a precision of :data:`PRECISIONS` or ``"auto"``.
CHOICES = (*PRECISIONS, AUTO)
#: ``/proc/cpuinfo`` flags of native bf16 dot products on x86: AVX512-BF16 (``vdpbf16ps``) and AMX-BF16 tiles.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def check_precision(precision: str | None) -> str:
    """The canonical name (``None`` → ``"float32"``); ``ValueError`` for an unknown one and for ``"auto"``,
    which must be resolved for a device first (:func:`resolve_precision`)."""
    if precision == AUTO:
        raise ValueError("precision 'auto' must be resolved for a device before use: "
                         "robrep.precision.resolve_precision('auto', device)")
    name = "float32" if precision in (None, "fp32", "float32") else {"bf16": "bfloat16", "fp16": "float16"}.get(
        str(precision), str(precision))
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)} or 'auto'")
    return name


def _torch_cpu_bf16() -> bool | None:
    """torch's own CPU check (``torch._C._cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``);
    ``None`` when this torch build has neither. (``torch.backends.cpu.get_cpu_capability()`` only names the
    vector ISA, ``"AVX512"`` with or without BF16, so it cannot answer this.)"""
    cpu = getattr(torch._C, "_cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if callable(check)]
    if not checks:
        return None
    return any(bool(check()) for check in checks)


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The x86 feature flags of the first processor in ``/proc/cpuinfo`` (empty: no ``flags`` line, e.g. on
    ARM); ``None`` when unreadable (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return set(value.split())
    except OSError:
        return None
    return set()


#: Values of torch's / oneDNN's ISA caps that leave no native bf16 dot products (the kernels stop at AVX2 or below).
_CAPPED_ISAS = ("default", "sse4_1", "sse4_2", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512")


def _isa_capped_below_bf16() -> bool:
    """Whether this process was told to use kernels without bf16 (``ATEN_CPU_CAPABILITY=avx2``,
    ``ONEDNN_MAX_CPU_ISA=AVX2`` ...): then bf16 is emulated even on a CPU that has it."""
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()
    return aten in _CAPPED_ISAS or onednn in _CAPPED_ISAS


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Does ``device`` compute bf16 natively, so that bf16 autocast is faster than float32?

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: native bf16 dot products (AVX512-BF16 or AMX), by torch's
    own check when this build has one, else by the ``/proc/cpuinfo`` flags; ``False`` when neither can tell
    (float32 is the safe answer: emulated bf16 is several times slower). Other device types: ``False``."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        if _isa_capped_below_bf16():
            return False
        answer = _torch_cpu_bf16()
        if answer is None:
            flags = _cpuinfo_flags()
            answer = bool(flags) and any(flag in flags for flag in CPU_BF16_FLAGS)
        return answer
    return False


def resolve_precision(precision: str | None, device: torch.device | str = "cpu") -> str:
    """``"auto"`` → ``"bfloat16"`` if :func:`native_bf16` (``device``) else ``"float32"``; any other value →
    :func:`check_precision` (its canonical name). The result is what to store and pass on."""
    if precision == AUTO:
        return "bfloat16" if native_bf16(device) else "float32"
    return check_precision(precision)


def describe_precision(device: torch.device | str = "cpu") -> str:
    """One line for commands to print: the precision ``"auto"`` picks on ``device`` and why."""
    kind = torch.device(device).type
    native = native_bf16(device)
    if kind == "cpu":
        return ("bfloat16 (native AVX512-BF16/AMX on this CPU)" if native else
                "float32 (this CPU has no native bf16: bf16 autocast would be slower)")
    if kind == "cuda":
        return "bfloat16 (this GPU supports bf16)" if native else "float32 (this GPU has no bf16 support)"
    return f"float32 (no bf16 check for device type {kind!r})"


def autocast(device: torch.device | str, precision: str | None) -> ContextManager:
    """``torch.autocast`` on ``device``'s type at ``precision``; a no-op context for float32. ``"auto"`` is
    refused (resolve it first, :func:`resolve_precision`)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
