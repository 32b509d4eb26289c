"""One-file torch checkpoints: atomic writes and format/content-hash checked reads (encoders and policies)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from robrep.results import atomic_path


def save_atomic(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to a temp file beside ``path``, then ``os.replace`` (never a half-written file)."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return Path(path)


def load_checked(path: str | os.PathLike, fmt: str, digest: Callable[[dict[str, Any]], str], kind: str,
                 error: type[Exception] = ValueError, missing: type[Exception] = FileNotFoundError) -> dict[str, Any]:
    """Load a checkpoint dict written with ``format == fmt`` and check ``digest(payload) == payload["hash"]``.

    Raises ``missing`` for an absent file and ``error`` (message naming ``kind``) for an unreadable file,
    another format, or a hash mismatch (corrupted or edited file)."""
    path = Path(path)
    if not path.is_file():
        raise missing(f"{kind} checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a torch file
        raise error(f"{path} is not a readable {kind} checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise error(f"{path} is not a {kind} checkpoint (format {found!r}, expected {fmt!r})")
    recomputed = digest(payload)
    if recomputed != payload.get("hash"):
        raise error(f"{path}: content hash {recomputed} does not match the recorded {payload.get('hash')} "
                    "(file corrupted or edited)")
    return payload
