"""One-file torch checkpoints: atomic writes and checked reads (encoders, policies, world models).

Every checkpoint carries two hashes: ``hash``, the identity of what computes (configs + weights, defined by each
format: a policy's ``policy_hash``, an encoder's ``weights_hash``), and ``meta_hash`` (:func:`metadata_hash`),
over everything else — the recorded command, dataset, training record — so no byte of a checkpoint can be
edited without the load refusing it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

import torch

from robrep.results import atomic_path

#: Keys that :func:`metadata_hash` leaves out: the hashes themselves.
HASH_KEYS = ("hash", "meta_hash")


def _plain(value: Any) -> Any:
    """``value`` as JSON-able data; a tensor becomes its dtype and shape (its values are covered by ``hash``)."""
    if isinstance(value, torch.Tensor):
        return {"tensor": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def metadata_hash(payload: Mapping[str, Any]) -> str:
    """sha256 (16 hex) of every entry of ``payload`` but the hashes, as sorted JSON (tensors by dtype and shape)."""
    meta = {k: _plain(v) for k, v in payload.items() if k not in HASH_KEYS}
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def save_atomic(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` with its :func:`metadata_hash` as ``meta_hash``, to a temp file beside ``path``, then
    ``os.replace`` (never a half-written file)."""
    data = dict(payload)
    data["meta_hash"] = metadata_hash(data)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def load_checked(path: str | os.PathLike, fmt: str, digest: Callable[[dict[str, Any]], str], kind: str,
                 error: type[Exception] = ValueError, missing: type[Exception] = FileNotFoundError,
                 legacy: Collection[str] = (), legacy_ok: Callable[[Path], bool] | None = None) -> dict[str, Any]:
    """Load a checkpoint dict written with ``format == fmt`` and check ``digest(payload) == payload["hash"]`` and
    ``metadata_hash(payload) == payload["meta_hash"]``.

    ``legacy`` formats (written before metadata was hashed) are read when ``legacy_ok(path)`` says so (e.g. a
    committed file with known bytes), otherwise refused. Raises ``missing`` for an absent file and ``error``
    (message naming ``kind``) for an unreadable file, another format, or a hash mismatch (corrupted or edited)."""
    path = Path(path)
    if not path.is_file():
        raise missing(f"{kind} checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or not a torch file
        raise error(f"{path} is not a readable {kind} checkpoint ({type(exc).__name__}: {exc})") from exc
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found in legacy:
        if legacy_ok is None or not legacy_ok(path):
            raise error(f"{path} is a {kind} checkpoint in the older format {found!r}, whose metadata is not covered "
                        f"by a hash, and not one of the known committed files; re-create it with this version "
                        f"(format {fmt!r})")
    elif found != fmt:
        raise error(f"{path} is not a {kind} checkpoint (format {found!r}, expected {fmt!r})")
    recomputed = digest(payload)
    if recomputed != payload.get("hash"):
        raise error(f"{path}: content hash {recomputed} does not match the recorded {payload.get('hash')} "
                    "(file corrupted or edited)")
    if found == fmt and (meta := metadata_hash(payload)) != payload.get("meta_hash"):
        raise error(f"{path}: metadata hash {meta} does not match the recorded {payload.get('meta_hash')} "
                    "(its metadata — command, dataset, training record — was edited)")
    return payload
