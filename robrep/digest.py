"""Content digests of files: one sha256 rule for datasets, checkpoints and exported files."""

from __future__ import annotations

import hashlib
import os


def file_hash(path: str | os.PathLike, chunk: int = 1 << 22, digits: int = 16) -> str:
    """sha256 of a file's bytes: its first ``digits`` hex characters (64 = the whole digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:digits]
