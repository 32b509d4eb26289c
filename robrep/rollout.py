"""Rolling a policy out in one task env."""

from __future__ import annotations

from typing import Callable

import numpy as np

from envs import make_env
from envs.experts import make_expert


def run_episode(env, policy: Callable[[dict], np.ndarray], seed: int, record: bool = False) -> dict:
    """One episode from ``env.reset(seed=seed)``; returns success, length and (if ``record``) frames ``(T+1, H, W, 3)``."""
    obs, info = env.reset(seed=seed)
    frames = [obs["image"]] if record else []
    success, steps, done = bool(info["success"]), 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        steps += 1
        success |= bool(info["success"])
        done = terminated or truncated
        if record:
            frames.append(obs["image"])
    return {"success": success, "length": steps, "frames": np.asarray(frames) if record else None}


def expert_frames(task: str, episodes: int, seed_start: int = 0, image_size: int = 96) -> np.ndarray:
    """Frames ``(T, H, W, 3)`` uint8 of ``episodes`` consecutive scripted-expert episodes."""
    env = make_env(task, image_size=image_size)
    expert = make_expert(env)
    clips = []
    try:
        for seed in range(seed_start, seed_start + episodes):
            expert.reset()
            clips.append(run_episode(env, expert, seed, record=True)["frames"])
    finally:
        env.close()
    return np.concatenate(clips)
