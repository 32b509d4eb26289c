"""Gymnasium ids for the tabletop tasks and a one-call constructor."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.tasks import TASKS

#: Short task name (as used in configs: ``task=push``) -> gymnasium id.
TASK_IDS: dict[str, str] = {
    "reach": "robrep/Reach-v0",
    "push": "robrep/Push-v0",
    "pick_place": "robrep/PickPlace-v0",
    "button": "robrep/Button-v0",
    "push_color": "robrep/PushColor-v0",
}


def register_tasks() -> None:
    """Register every task id once (idempotent), with its documented episode limit."""
    for name, env_id in TASK_IDS.items():
        if env_id not in gym.registry:
            cls = TASKS[name]
            gym.register(env_id, entry_point=f"{cls.__module__}:{cls.__name__}",
                         max_episode_steps=cls.max_episode_steps)


def make_env(task: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` by short name (``"push"``) or id (``"robrep/Push-v0"``), or a Meta-World task
    (``"metaworld/push-v3"``); keyword arguments go to the env constructor."""
    if task.startswith("metaworld/"):
        from envs.metaworld_adapter import make_metaworld_env

        return make_metaworld_env(task.split("/", 1)[1], **kwargs)
    env_id = TASK_IDS.get(task, task)
    if env_id not in gym.registry:
        known = sorted(TASK_IDS) + ["metaworld/<name>-v3"]
        raise KeyError(f"unknown task {task!r}; known: {known}")
    return gym.make(env_id, disable_env_checker=True, **kwargs)
