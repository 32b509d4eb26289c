"""Content digests: one sha256 rule for files (datasets, checkpoints, exported files) and for JSON-able settings
(content-addressed keys)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def file_hash(path: str | os.PathLike, chunk: int = 1 << 22, digits: int = 16) -> str:
    """sha256 of a file's bytes: its first ``digits`` hex characters (64 = the whole digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:digits]


def json_hash(value: Any, digits: int = 16) -> str:
    """sha256 of ``value`` as sorted JSON (anything not JSON-able as its ``str``): its first ``digits`` hex
    characters. The key of a setting: equal settings, equal keys, whatever the dicts' order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:digits]
