"""Shared handling of ``weights=`` specs: ``"scheme:argument"`` for public formats (each family
documents its schemes), or a plain path to a robrep encoder checkpoint (``*.pt``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from robrep.encoders.base import Encoder
from robrep.encoders.checkpoint import load_checkpoint


def split_weights(spec: str) -> tuple[str, str]:
    """``"scheme:rest"`` → ``(scheme, rest)``; a plain path → ``("", path)``."""
    scheme, sep, rest = str(spec).partition(":")
    if sep and scheme.replace("-", "_").isidentifier() and len(scheme) > 1:  # len > 1: not a Windows drive letter
        return scheme, rest
    return "", str(spec)


def resolve_file(path: str | os.PathLike, candidates: Sequence[str] = ()) -> Path:
    """``path`` itself if it is a file, else the first of ``candidates`` inside it; FileNotFoundError names it."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for name in candidates:
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"no weights file ({', '.join(candidates) or 'any'}) in directory {p}")
    raise FileNotFoundError(f"weights file not found: {p}")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or torch-pickled state dict (``state_dict``/``model`` wrappers unwrapped)."""
    path = resolve_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path), device="cpu")
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path} is not a readable state dict ({exc.__class__.__name__}: {exc}); "
                             "TorchScript archives need converting first: "
                             "torch.save(torch.jit.load(f).state_dict(), out)") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a flat dict of tensors")
    return dict(sd)


def config_conflicts(stored: Any, given: Any, prefix: str = "") -> list[str]:
    """Keys of ``given`` whose values differ from ``stored`` (nested dicts compared key by key)."""
    if isinstance(given, dict) and isinstance(stored, dict):
        return [c for k, v in given.items() for c in config_conflicts(stored.get(k), v, f"{prefix}{k}.")]
    same = json.dumps(stored, default=str) == json.dumps(given, default=str)
    return [] if same else [f"{prefix[:-1]} (checkpoint {stored!r}, asked {given!r})"]


def load_checkpoint_as(path: str | os.PathLike, family: str | None = None, **cfg: Any) -> Encoder:
    """A robrep checkpoint (unfrozen), checked to be of ``family``. Feature-time keys the encoder
    declares in ``runtime_keys`` are applied through its ``configure``; any other key in ``cfg`` must
    equal the checkpoint's config (ValueError names the ones that differ)."""
    encoder = load_checkpoint(resolve_file(path))
    if family is not None and encoder.family != family:
        raise ValueError(f"{path} holds a {encoder.family!r} encoder, not {family!r}")
    runtime = {k: cfg.pop(k) for k in getattr(encoder, "runtime_keys", ()) if k in cfg}
    bad = config_conflicts(encoder.config, cfg)
    if bad:
        raise ValueError(f"{path}: architecture differs from the checkpoint: {'; '.join(bad)}")
    return encoder.configure(**runtime) if runtime else encoder
