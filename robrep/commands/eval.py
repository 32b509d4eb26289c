"""``robrep eval``: roll a policy checkpoint out on the evaluation seeds and record how well it did.

Loads the policy (``policies.load_policy``), runs :func:`robrep.eval.rollouts.evaluate`, prints a one-line
summary and writes, beside each other:

* ``<out>.csv``: one row per evaluation (:data:`COLUMNS`); a re-run with the same policy hash and protocol
  (task, env kwargs, seed_start, episodes, max_steps) replaces its row, anything else is appended;
* ``<out stem>.start<seed_start>_n<episodes>.json``: the summary, the command and every episode's
  seed / success / length;
* ``<out stem>.ep<i>_seed<seed>.mp4|gif``: videos of the first ``videos`` episodes.

``visuals=<setting>`` evaluates in that visual setting instead of the checkpoint's own (e.g. demos in
``varied``, evaluation in ``heldout``); its JSON and videos are named ``<out stem>.<setting>...``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from robrep import results
from robrep.eval.rollouts import EvalResult, evaluate, policy_demo_seeds

#: Columns of the evaluation CSV, in order.
COLUMNS = ("policy", "policy_hash", "task", "env_kwargs", "seed_start", "episodes", "successes", "success_rate",
           "ci_low", "ci_high", "mean_length", "max_steps", "num_envs", "steps", "wall_s", "ms_per_step",
           "episodes_json", "command")
#: Columns that identify an evaluation protocol of one policy (a matching row is replaced, not duplicated).
KEY = ("policy", "policy_hash", "task", "env_kwargs", "seed_start", "episodes", "max_steps")


def env_overrides(cfg: DictConfig, task: str) -> dict[str, Any]:
    """Env kwargs overriding the policy's: the optional ``task`` group's (``image_size``, ``wrist_camera``; its
    name must be ``task``) and a non-null top-level ``visuals`` (the group's ``visuals`` is ignored, so
    ``task=<name>`` alone keeps the checkpoint's setting)."""
    overrides: dict[str, Any] = {}
    group = cfg.get("task")
    if group is not None:
        if str(group.name) != task:
            raise ValueError(f"task={group.name} but the policy was trained on {task!r}; drop the task override "
                             f"or pick task={task}")
        overrides = {k: v for k, v in OmegaConf.to_container(group, resolve=True).items()
                     if k not in ("name", "visuals")}
    if cfg.get("visuals") is not None:
        overrides["visuals"] = str(cfg.visuals)
    return overrides


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


def run(cfg: DictConfig) -> None:
    from policies import load_policy  # lazily: evaluation reads a checkpoint, not the training code
    from robrep.threads import thread_limit

    checkpoint = Path(str(cfg.checkpoint))
    out = Path(cfg.out) if cfg.out else Path("runs/eval") / f"{checkpoint.stem}.csv"
    stem = f"{out.stem}.{cfg.visuals}" if cfg.get("visuals") is not None else out.stem  # a visuals override's own files
    json_path = out.with_name(f"{stem}.start{cfg.seed_start}_n{cfg.episodes}.json")
    command = results.command_line()
    with thread_limit(cfg.threads):
        policy = load_policy(checkpoint, device=cfg.device)
        result = evaluate(policy, int(cfg.episodes), seed_start=int(cfg.seed_start), num_envs=int(cfg.num_envs),
                          max_steps=None if cfg.max_steps is None else int(cfg.max_steps),
                          video_episodes=int(cfg.videos), progress=bool(cfg.progress),
                          env_kwargs=env_overrides(cfg, policy.task), demo_seeds=policy_demo_seeds(policy))
    meta = getattr(policy, "meta", None)
    policy_hash = str(meta.get("hash", "")) if isinstance(meta, Mapping) else ""
    videos = result.write_videos(out.with_name(f"{stem}.{cfg.video_format}"), fps=int(cfg.fps))
    results.write_json({"command": command, "policy": str(checkpoint), "policy_hash": policy_hash,
                        **result.to_dict(), "videos": [str(v) for v in videos]}, json_path)
    upsert_row(csv_row(result, str(checkpoint), policy_hash, json_path, command), out)
    print(result.format())
    print(f"results: {out} (episodes: {json_path})" + (f"; videos: {', '.join(map(str, videos))}" if videos else ""))
