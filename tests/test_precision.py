"""robrep.precision: names, "auto" resolved from what the device computes natively, autocast contexts."""

import contextlib

import pytest
import torch

from robrep import precision
from robrep.precision import autocast, check_precision, describe_precision, native_bf16, resolve_precision


@pytest.fixture(autouse=True)
def _no_isa_cap(monkeypatch):
    """The machine's own answer: no ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA cap from the caller's environment (the
    costs benchmark runs the suite with them set to emulate an AVX2-only CPU)."""
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Set what the CPU probes report: ``cpu_bf16(torch_says, flags)`` (``None``: that probe is unavailable)."""

    def set_probes(torch_says, flags):
        monkeypatch.setattr(precision, "_torch_cpu_bf16", lambda: torch_says)
        monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: flags)

    return set_probes


def test_check_precision_canonical_names_and_errors():
    assert check_precision(None) == check_precision("fp32") == check_precision("float32") == "float32"
    assert check_precision("bf16") == check_precision("bfloat16") == "bfloat16"
    assert check_precision("fp16") == "float16"
    with pytest.raises(ValueError, match="unknown precision"):
        check_precision("float8")
    with pytest.raises(ValueError, match="resolve_precision"):  # "auto" is never a stored value
        check_precision("auto")


@pytest.mark.parametrize("torch_says, flags, expected", [
    (True, None, True),                                      # torch's own check wins ...
    (False, {"avx2", "avx512_bf16"}, False),                 # ... even over the flags
    (None, {"fpu", "avx2", "avx512f", "avx512_bf16"}, True),  # fallback: /proc/cpuinfo
    (None, {"fpu", "avx2", "amx_tile", "amx_bf16"}, True),
    (None, {"fpu", "avx2", "fma"}, False),                   # AVX2 only: bf16 would be emulated
    (None, {"avx512f", "avx512bw"}, False),                  # AVX512 without BF16
    (None, set(), False),                                    # no flags line (e.g. ARM)
    (None, None, False),                                     # nothing to ask: the safe answer
])
def test_native_bf16_on_cpu(cpu_bf16, torch_says, flags, expected):
    cpu_bf16(torch_says, flags)
    assert native_bf16("cpu") is expected
    assert native_bf16(torch.device("cpu")) is expected
    assert resolve_precision("auto", "cpu") == ("bfloat16" if expected else "float32")


def test_native_bf16_on_cuda_and_other_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert native_bf16("cuda") and native_bf16("cuda:1")
    assert resolve_precision("auto", "cuda:0") == "bfloat16"
    assert describe_precision("cuda").startswith("bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert not native_bf16("cuda") and resolve_precision("auto", "cuda") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not native_bf16("cuda")
    assert not native_bf16("meta") and resolve_precision("auto", "meta") == "float32"
    assert describe_precision("meta").startswith("float32")


def test_resolve_passes_explicit_values_through(cpu_bf16):
    for native in (True, False):
        cpu_bf16(native, None)
        assert resolve_precision("float32") == resolve_precision(None) == "float32"
        assert resolve_precision("bf16", "cpu") == "bfloat16"  # an explicit choice is kept, native or not
        assert resolve_precision("fp16", "cpu") == "float16"
        with pytest.raises(ValueError, match="unknown precision"):
            resolve_precision("float8", "cpu")


def test_describe_precision_names_the_choice_and_the_reason(cpu_bf16):
    cpu_bf16(None, {"avx512_bf16"})
    assert describe_precision("cpu") == "bfloat16 (native AVX512-BF16/AMX on this CPU)"
    cpu_bf16(None, {"avx2"})
    assert describe_precision() == "float32 (this CPU has no native bf16: bf16 autocast would be slower)"


def test_real_probes_agree_with_proc_cpuinfo():
    """On this machine (or any): torch's check, when present, agrees with the flags; the flags parse."""
    flags = precision._cpuinfo_flags()
    from_flags = bool(flags) and any(f in flags for f in precision.CPU_BF16_FLAGS)
    from_torch = precision._torch_cpu_bf16()
    assert native_bf16("cpu") == (from_flags if from_torch is None else from_torch)
    if flags is not None and from_torch is not None:
        assert from_torch == from_flags


def test_cpuinfo_flags_parse(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision._cpuinfo_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert precision._cpuinfo_flags(str(info)) == set()
    assert precision._cpuinfo_flags(str(tmp_path / "missing")) is None


def test_autocast_contexts():
    assert isinstance(autocast("cpu", "float32"), contextlib.nullcontext)
    with autocast("cpu", "bfloat16"):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="resolve_precision"):
        autocast("cpu", "auto")


def test_an_isa_cap_below_bf16_means_float32(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 / ONEDNN_MAX_CPU_ISA=AVX2 make torch emulate bf16 even on a bf16 CPU: auto is float32."""
    from robrep import precision

    monkeypatch.setattr(precision, "_torch_cpu_bf16", lambda: True)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert precision.resolve_precision("auto") == "bfloat16"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert precision.resolve_precision("auto") == "float32"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision.resolve_precision("auto") == "float32"
