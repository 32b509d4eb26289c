"""``robrep export``: a policy or an encoder as one TorchScript / ONNX file, checked against PyTorch
(:mod:`policies.export`)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from policies.export import export_encoder, export_policy
from robrep.data.collect import expert_frames
from robrep.seeds import eval_seeds

log = logging.getLogger(__name__)

SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}


def run(cfg: DictConfig) -> None:
    if cfg.format not in SUFFIX:
        raise ValueError(f"format must be one of {sorted(SUFFIX)}, got {cfg.format!r}")
    quantize = cfg.get("quantize")
    if quantize and not cfg.checkpoint:
        raise ValueError("quantize= applies to a policy export (checkpoint=...), not to an encoder alone")
    seed = eval_seeds(1, 0, "dev")[0]  # development layouts: never a demo, never a reported test layout
    if cfg.checkpoint:
        from policies.policy import load_policy

        policy = load_policy(cfg.checkpoint, cfg.device)
        size = policy.env_kwargs.get("image_size", 96)
        frames = expert_frames(policy.task, 1, seed, image_size=size,
                               visuals=policy.env_kwargs.get("visuals", "clean"))[: int(cfg.check_frames)]
        out = Path(cfg.out or Path(cfg.checkpoint).with_suffix(SUFFIX[cfg.format]))
        report = export_policy(policy, out, cfg.format, frames, cfg.instruction, quantize or None)
        what = "policy: uint8 image (B, H, W, 3) + proprio (B, P) -> actions (B, k, A)"
    else:
        from robrep.encoders.spec import EncoderSpec

        encoder = EncoderSpec.from_cfg(cfg, precision="float32").load(cfg.device)
        frames = expert_frames(str(cfg.task.name), 1, seed, image_size=encoder.input_size)[: int(cfg.check_frames)]
        out = Path(cfg.out or Path("runs/export") / f"{cfg.encoder.name}{SUFFIX[cfg.format]}")
        report = export_encoder(encoder, out, cfg.format, frames)
        what = "encoder: uint8 image (B, H, W, 3) -> tokens (B, N, D)"
    log.info(f"wrote {report['path']} ({what}); on {report['frames']} real frames the file and PyTorch (float32) "
             f"differ by at most {report['max_abs_diff']:.2e}")
    if report.get("quantize"):
        log.warning(f"quantize={report['quantize']} is lossy: its actions differ from PyTorch by up to "
                    f"{report['max_abs_diff']:.2e} on these frames (the float32 graph: "
                    f"{report['max_abs_diff_float32']:.2e}); evaluate the quantized file before deploying it")
