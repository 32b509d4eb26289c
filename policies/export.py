"""Policies and encoders as one deployable file: TorchScript or ONNX, checked against PyTorch.

An exported policy holds everything between the camera and the actuators: uint8 images ``(B, H, W, 3)`` at the
training image size (+ proprio ``(B, P)``) in, the predicted action chunk ``(B, k, A)`` in [-1, 1] out — the
encoder's resize and normalisation, its forward pass, the feature rounding the policy was trained with (features
cached as float16), the readout, the proprio normaliser and the head. It runs without robrep (``torch.jit.load``
or ``onnxruntime``); executing the chunk (open loop or temporal ensembling) is the caller's choice. Exported
graphs compute in float32 whatever precision the policy was trained at.

An exported encoder maps uint8 images to tokens ``(B, N, D)`` (and the global token where the family has one).

Speed (``benchmarks/policy_latency.py``): the default ONNX file is float32 from the TorchScript-based exporter,
run with onnxruntime's default (full) graph optimisation — lossless. On this project's small ViTs the matrix
multiplies are most of the time, so neither the dynamo-based exporter nor onnxruntime's transformer fusions
(``onnxruntime.transformers.optimizer``) made it faster. ``quantize="int8"`` (opt-in, ONNX only) quantizes the
MatMul / Gemm weights to int8 per tensor with activations quantized on the fly (``quantize_dynamic``): faster on
CPUs with int8 dot-product instructions, but lossy — the report gives its action difference on the check frames.
The same float32 file also runs in OpenVINO (:class:`Runner` ``runtime="openvino"``), which computes in bfloat16 on
CPUs with native bfloat16 (AMX / AVX512-BF16) — the precision eager PyTorch uses there — and in float32 elsewhere;
``benchmarks/export_fidelity.py`` checks each runtime closed-loop against the PyTorch policy.

Language-conditioned policies (a language-conditioned encoder, or ``instruction_input``) are exported with their
instruction fixed at export time (the text embedding is a constant of the file): an instruction per episode needs the PyTorch policy.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from policies.policy import Policy
from robrep.encoders.base import Encoder

FORMATS = ("torchscript", "onnx")
QUANTIZE = ("int8",)  # opt-in, lossy: ONNX weight quantization (never the default)


class ExportablePolicy(nn.Module):
    """``(image uint8 (B, H, W, 3), proprio (B, P)) → actions (B, k, A)``: a :class:`Policy`'s network as one module
    of tensors only (frame stack 1)."""

    def __init__(self, policy: Policy, instruction: str | None = None) -> None:
        super().__init__()
        model = policy.model
        if model.frame_stack != 1:
            raise ValueError(f"export needs frame_stack 1 (a stateless graph); this policy stacks {model.frame_stack} "
                             "frames: keep the frame history outside and use the PyTorch policy")
        self.model, self.encoder = model, policy.encoder
        self.language = None
        if self.encoder is not None and policy.uses_language:
            if not instruction:
                raise ValueError("this policy's encoder reads the instruction: pass instruction=<text> to bake it in")
            with torch.no_grad():  # the instruction's language tokens (1, L, D) and mask (1, L): graph constants
                self.language = tuple(t.detach() for t in self.encoder.language_tokens([instruction]))
        self.has_global = bool(policy.meta["shape_meta"].get("has_global_token", True))
        self.register_buffer("instruction", None)  # instruction_input: the baked-in sentence embedding (1, 384)
        if model.instruction_dim:
            instruction = instruction or policy.meta.get("instruction")
            if not instruction:
                raise ValueError("this policy reads the instruction's embedding: pass instruction=<text> to bake it in")
            from robrep.encoders.language import embed_sentences

            self.instruction = embed_sentences([instruction]).float()  # a graph constant

    def features(self, x: torch.Tensor):
        """Preprocessed ``(B, 3, S, S)`` → the encoder's features (with the baked-in instruction, if any)."""
        if self.language is None:
            return self.encoder.encode(x)
        lang, mask = (t.expand(x.shape[0], *t.shape[1:]) for t in self.language)
        enc = self.encoder
        return enc.split(enc.joint(enc.embed(x), (lang, mask), enc.feature_layer))

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            frames = {"image": image}
        else:
            feats = self.features(self.encoder.preprocess(image))
            frames = {"tokens": feats.tokens.half().float()}  # as cached in training
            if feats.global_token is not None and self.has_global:
                frames["global_token"] = feats.global_token.half().float()
        if self.instruction is not None:
            frames["instruction"] = self.instruction.expand(image.shape[0], -1)
        vec = self.model.frame_vectors(frames, proprio.float())
        return self.model.predict(vec[:, None]).clamp(-1.0, 1.0)


class ExportableEncoder(nn.Module):
    """``image uint8 (B, H, W, 3) → tokens (B, N, D)`` (and ``global_token (B, D)`` where the family has one)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor):
        feats = self.encoder.encode(self.encoder.preprocess(image))
        return feats.tokens if feats.global_token is None else (feats.tokens, feats.global_token)


def example_inputs(policy: Policy, batch: int = 2, frames: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
    """Inputs at the policy's image size: ``frames`` (uint8 ``(B, H, W, 3)``) or random ones, and zero proprio."""
    h, w = policy.meta["shape_meta"].get("image_size") or [policy.env_kwargs.get("image_size", 96)] * 2
    if frames is None:
        frames = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    proprio = np.zeros((len(frames), policy.model.proprio_dim), np.float32)
    return torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(proprio)


def export_module(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | os.PathLike, fmt: str,
                  input_names: list[str], output_names: list[str]) -> Path:
    """Write ``module`` traced on ``inputs`` as ``fmt`` (``torchscript`` | ``onnx``) to ``path`` (batch axis dynamic)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with torch.no_grad():
        if fmt == "torchscript":
            traced = torch.jit.trace(module, inputs, check_trace=False)
            traced = torch.jit.freeze(traced)
            traced.save(str(path))
        else:
            torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes={n: {0: "batch"} for n in input_names + output_names},
                              opset_version=17, dynamo=False)
    return path


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` (a float32 ONNX file) with int8 MatMul / Gemm weights (per-tensor, symmetric) and activations
    quantized at run time (onnxruntime ``quantize_dynamic``) to ``dst``. Lossy: check the result against PyTorch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], per_channel=False,
                     weight_type=QuantType.QInt8)
    return Path(dst)


RUNTIMES = ("onnxruntime", "openvino")  # what runs an ONNX file (a TorchScript file runs in torch.jit)


def import_openvino() -> Any:
    """``import openvino`` with the process's own stderr in place. Its import pulls in ``absl.logging``, whose handler
    keeps the ``sys.stderr`` of that moment and closes it at logging shutdown (e.g. Hydra reconfiguring logging) when
    it is no longer ``sys.stderr`` — a redirected or captured stream would be closed under its owner."""
    with contextlib.redirect_stderr(sys.__stderr__):
        import openvino

    return openvino


class Runner:
    """Run an exported file: ``Runner(path)(image, proprio) → numpy outputs``.

    An ONNX file runs in onnxruntime (``runtime="onnxruntime"``, float32 as exported) or in OpenVINO's CPU plugin
    (``runtime="openvino"``, the ``deploy`` extra): the same file, at the precision OpenVINO picks for this CPU —
    bfloat16 where the CPU computes it natively (AMX / AVX512-BF16), float32 elsewhere — recorded in
    :attr:`precision` (``precision=`` overrides: ``"f32"`` | ``"bf16"``). ``threads``: intra-op threads (None: the
    runtime's default)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, runtime: str = "onnxruntime",
                 precision: str | None = None) -> None:
        self.path = Path(path)
        self.module = self.session = self.request = None
        self.precision = "float32"
        if self.path.suffix != ".onnx":
            if runtime != "onnxruntime":
                raise ValueError(f"runtime={runtime!r} runs ONNX files; {self.path.name} is TorchScript (torch.jit)")
            self.runtime = "torchscript"
            self.module = torch.jit.load(str(self.path), map_location="cpu")
            return
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.runtime = runtime
        if runtime == "openvino":
            try:
                ov = import_openvino()
            except ImportError as exc:
                raise ImportError("runtime=openvino needs the OpenVINO runtime: pip install 'robrep[deploy]' "
                                  "(or pip install openvino)") from exc
            config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
            if precision:
                config["INFERENCE_PRECISION_HINT"] = precision
            compiled = ov.Core().compile_model(str(self.path), "CPU", config)
            hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # 'f32' | 'bf16' | 'f16'
            self.precision = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}.get(hint, hint)
            self.request, self.outputs = compiled.create_infer_request(), list(compiled.outputs)
            return
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        arrays = [np.ascontiguousarray(x) for x in inputs]
        if self.session is not None:
            out = self.session.run(None, dict(zip(self.names, arrays)))
        elif self.request is not None:  # inputs in the file's order (a tensor may carry several names in OpenVINO)
            result = self.request.infer(arrays)
            out = [np.array(result[o]) for o in self.outputs]
        else:
            with torch.no_grad():
                out = self.module(*(torch.from_numpy(x) for x in arrays))
            return out.numpy() if isinstance(out, torch.Tensor) else tuple(o.numpy() for o in out)
        return out[0] if len(out) == 1 else tuple(out)


def export_policy(policy: Policy, path: str | os.PathLike, fmt: str, frames: np.ndarray | None = None,
                  instruction: str | None = None, quantize: str | None = None) -> dict[str, Any]:
    """Export ``policy`` (float32) to ``path`` and check the file against the PyTorch network on ``frames``
    (uint8 ``(B, H, W, 3)``; random when None) with zero proprio. ``quantize="int8"`` (ONNX only, opt-in, lossy)
    writes the int8 file of :func:`quantize_int8` instead; the float32 graph is checked too. Returns the path, the
    largest absolute difference of the actions (``max_abs_diff``: of the written file; ``max_abs_diff_float32``:
    of the float32 graph), the quantization (``None`` | ``"int8"``), and seconds to export."""
    if policy.model.trunk.output_dim == 0:
        raise ValueError("this policy reads no image (trunk 'none', e.g. the privileged-state oracle): it is a "
                         "simulator control with nothing to deploy behind a camera, so it is not exported")
    if quantize is not None and (quantize not in QUANTIZE or fmt != "onnx"):
        raise ValueError(f"quantize must be None or one of {QUANTIZE} with format onnx, got {quantize!r} ({fmt})")
    if policy.encoder is not None:
        policy.encoder.set_precision("float32")
    module = ExportablePolicy(policy, instruction).eval()
    inputs = example_inputs(policy, frames=frames)
    path = Path(path)
    float_path = path.with_name(f".{path.stem}.float32{path.suffix}") if quantize else path
    t = time.perf_counter()
    out = export_module(module, inputs, float_path, fmt, ["image", "proprio"], ["actions"])
    with torch.no_grad():
        expected = module(*inputs).numpy()
    arrays = tuple(x.numpy() for x in inputs)
    diff32 = float(np.abs(Runner(out)(*arrays) - expected).max())
    if quantize:
        try:
            out = quantize_int8(float_path, path)
        finally:
            float_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - t
    diff = float(np.abs(Runner(out)(*arrays) - expected).max()) if quantize else diff32
    return {"path": str(out), "format": fmt, "quantize": quantize, "max_abs_diff": diff,
            "max_abs_diff_float32": diff32, "frames": int(inputs[0].shape[0]), "export_seconds": round(seconds, 2)}


def export_encoder(encoder: Encoder, path: str | os.PathLike, fmt: str, frames: np.ndarray) -> dict[str, Any]:
    """Export ``encoder`` (float32) to ``path``; checked on ``frames`` like :func:`export_policy` (tokens)."""
    encoder.set_precision("float32")
    module = ExportableEncoder(encoder).eval()
    inputs = (torch.from_numpy(np.ascontiguousarray(frames)),)
    names = ["tokens"] + (["global_token"] if encoder.has_global_token else [])
    out = export_module(module, inputs, path, fmt, ["image"], names)
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected[0] if isinstance(expected, tuple) else expected
    got = Runner(out)(inputs[0].numpy())
    got = got[0] if isinstance(got, tuple) else got
    return {"path": str(out), "format": fmt, "max_abs_diff": float(np.abs(got - expected.numpy()).max()),
            "frames": len(frames)}
