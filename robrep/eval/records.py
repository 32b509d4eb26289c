"""The evaluation CSV of ``robrep eval``: one row per (policy, protocol), upserted under a directory lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from robrep import results
from robrep.eval.rollouts import EvalResult


#: Columns of the evaluation CSV, in order.
COLUMNS = ("policy", "policy_hash", "task", "env_kwargs", "seed_start", "episodes", "successes", "success_rate",
           "ci_low", "ci_high", "mean_length", "max_steps", "num_envs", "steps", "wall_s", "ms_per_step",
           "episodes_json", "command")
#: Columns that identify an evaluation protocol of one policy (a matching row is replaced, not duplicated).
KEY = ("policy", "policy_hash", "task", "env_kwargs", "seed_start", "episodes", "max_steps")


@contextlib.contextmanager
def directory_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on directory ``path`` (serialises read-modify-write of files in it)."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def csv_row(result: EvalResult, policy_path: str, policy_hash: str, json_path: Path, command: str) -> dict[str, Any]:
    """One :data:`COLUMNS` row of ``result``."""
    s = result.summary()
    return {"policy": policy_path, "policy_hash": policy_hash, "task": result.task,
            "env_kwargs": json.dumps(result.env_kwargs, sort_keys=True, default=str),
            "seed_start": result.seed_start, "episodes": result.episodes, "successes": result.successes,
            "success_rate": f"{s['success_rate']:.4f}", "ci_low": f"{s['ci_low']:.4f}",
            "ci_high": f"{s['ci_high']:.4f}",
            "mean_length": f"{s['mean_length']:.2f}", "max_steps": "" if result.max_steps is None else result.max_steps,
            "num_envs": result.num_envs, "steps": result.steps, "wall_s": f"{result.wall_s:.2f}",
            "ms_per_step": f"{result.ms_per_step:.3f}", "episodes_json": str(json_path), "command": command}


def upsert_row(row: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    """Add ``row`` to the CSV at ``path`` (created if missing), replacing a row with the same :data:`KEY`."""
    with directory_lock(path.parent):
        rows = results.read_csv(path) if path.exists() else []
        key = tuple(str(row[k]) for k in KEY)
        rows = [{c: r.get(c, "") for c in COLUMNS} for r in rows if tuple(r.get(k, "") for k in KEY) != key]
        rows.append({c: row.get(c, "") for c in COLUMNS})
        results.write_csv(rows, path, ["robrep eval: one row per evaluation (policy, protocol); "
                                       "per-episode records in the episodes_json file"])
    return rows
