"""Outputs go under runs/ (or the untracked data/ and cache/) by default: no command's default config points an
output into a path git tracks (weights/, results/); the committed references are written only when a user passes
such a path explicitly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from robrep.cli import COMMANDS
from robrep.config import compose

ROOT = Path(__file__).resolve().parent.parent
#: Config keys that name files or folders a command writes.
OUTPUT_KEYS = ("out", "out_dir", "sweep_dir", "policy_dir", "cache_dir", "model", "dataset", "play_dir")
#: Commands whose `dataset` is an input (must exist) rather than an output.
READS_DATASET = ("features", "probe", "train", "cell")


def tracked(path: str) -> bool:
    """Whether git tracks anything at or under ``path`` (relative to the repository root)."""
    out = subprocess.run(["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_default_output_is_a_tracked_path(command):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    cfg = compose(command)
    outputs = {k: cfg.get(k) for k in OUTPUT_KEYS if cfg.get(k) is not None}
    if command in READS_DATASET:
        outputs.pop("dataset", None)
    for key, value in outputs.items():
        path = str(value)
        assert not Path(path).is_absolute(), f"{command}.{key}={path} is absolute"
        top = Path(path).parts[0]
        assert top in ("runs", "data", "cache"), f"{command}.{key}={path} is outside runs/, data/ and cache/"
        assert not tracked(path), f"{command}.{key}={path} would overwrite a tracked file"
