"""``robrep eval``: roll a policy checkpoint out on the evaluation seeds and record how well it did.

Loads the policy (``policies.load_policy``), runs :func:`robrep.eval.rollouts.evaluate`, prints a one-line
summary and writes, beside each other:

* ``<out>.csv``: one row per evaluation (:data:`robrep.eval.records.COLUMNS`); a re-run with the same policy hash and protocol
  (task, env kwargs, seed_start, episodes, max_steps) replaces its row, anything else is appended;
* ``<out stem>.start<seed_start>_n<episodes>.json``: the summary, the command and every episode's
  seed / success / length;
* ``<out stem>.ep<i>_seed<seed>.mp4|gif``: videos of the first ``videos`` episodes.

``visuals=<setting>`` evaluates in that visual setting instead of the checkpoint's own (e.g. demos in
``varied``, evaluation in ``heldout``); its JSON and videos are named ``<out stem>.<setting>...``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from robrep import results
from robrep.eval.records import csv_row, upsert_row
from robrep.eval.rollouts import evaluate, policy_demo_seeds

log = logging.getLogger(__name__)


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
    log.info(result.format())
    log.info(f"results: {out} (episodes: {json_path})" + (f"; videos: {', '.join(map(str, videos))}" if videos else ""))
