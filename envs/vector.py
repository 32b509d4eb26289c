"""Vectorised tabletop envs through gymnasium's vector API."""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym

from envs.registration import make_env


def make_vector_env(task: str, num_envs: int, asynchronous: bool = False, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``task`` stepping together; observations gain a leading ``(num_envs,)`` axis.

    ``asynchronous=True`` runs each copy in its own process (each creates its own renderer there).
    Episodes reset automatically at the step after they end (gymnasium's next-step autoreset).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns = [partial(make_env, task, **kwargs) for _ in range(num_envs)]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context="spawn")
    return gym.vector.SyncVectorEnv(fns)
