"""Encoder checkpoints: one ``.pt`` file = family + config + state dict + content hash + metadata."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from robrep.encoders.base import Encoder, content_hash
from robrep.encoders.registry import family_class
from robrep.torch_io import load_checked, save_atomic

FORMAT = "robrep-encoder/1"


class WeightsMismatchError(ValueError):
    """A state dict does not fit the architecture; the message names the keys."""


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` that fails with the missing, unexpected and mis-shaped keys listed."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f", ... ({len(xs)} in all)" if len(xs) > 8 else "")

        parts = [f"{label} keys: {show(xs)}" for label, xs in
                 (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", shapes)) if xs]
        raise WeightsMismatchError(f"weights from {source} do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def save_checkpoint(encoder: Encoder, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> str:
    """Write ``encoder`` atomically to ``path``; returns its content hash."""
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu() for k, v in encoder.state_dict().items()}
    digest = content_hash(encoder.config, state)
    save_atomic({"format": FORMAT, "family": encoder.family, "config": encoder.config, "state_dict": state,
                 "hash": digest, "meta": dict(meta or {})}, path)
    return digest


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated for format and content hash."""
    return load_checked(path, FORMAT, lambda p: content_hash(p["config"], p["state_dict"]), "robrep encoder")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the encoder saved at ``path`` (not yet frozen or cast)."""
    payload = read_checkpoint(path)
    encoder = family_class(payload["family"])(**payload["config"])
    load_state_dict_checked(encoder, payload["state_dict"], str(path))
    encoder.checkpoint_meta = payload["meta"]
    return encoder.to(device)
