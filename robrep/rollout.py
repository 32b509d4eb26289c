"""Rolling a policy out in one task env."""

from __future__ import annotations

from typing import Callable

import numpy as np

from envs import make_env
from envs.experts import make_expert


def run_episode(env, policy: Callable[[dict], np.ndarray], seed: int) -> dict:
    """One episode from ``env.reset(seed=seed)`` without recording; returns ``success`` and ``length``.

    Calls ``policy.reset()`` first if it has one (scripted experts do)."""
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    success, steps, done = bool(info["success"]), 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        steps += 1
        success |= bool(info["success"])
        done = terminated or truncated
    return {"success": success, "length": steps}


def expert_frames(task: str, episodes: int, seed_start: int = 0, image_size: int = 96,
                  visuals: str = "clean") -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 of ``episodes`` consecutive scripted-expert episodes in the ``visuals`` setting."""
    from robrep.collect import rollout_episode

    env = make_env(task, image_size=image_size, visuals=visuals)
    expert = make_expert(env)
    try:
        clips = [rollout_episode(env, expert, seed)["obs"]["image"] for seed in range(seed_start, seed_start + episodes)]
    finally:
        env.close()
    return np.concatenate(clips)
