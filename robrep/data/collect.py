"""Scripted-expert episodes: demonstrations into a robomimic-layout HDF5 file, plain rollouts, frames.

:func:`collect_demos`: episode ``k`` (``k = 0, 1, ...``) is reset with seed ``seed_start + k``; only
successful episodes are kept, until ``num_demos`` are. All seeds are checked against
:data:`robrep.seeds.DEMO_SEEDS`. :func:`rollout_episode` records one episode of any policy,
:func:`run_episode` runs one without recording (success and length), :func:`expert_frames` returns
the camera frames of consecutive scripted-expert episodes (``robrep video``). Policy evaluation is
:mod:`robrep.eval.rollouts`.

Command line (Hydra, ``configs/collect.yaml``)::

    robrep collect task=push num_demos=100 out=data/push_demos.hdf5
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs import make_env
from envs.experts import make_expert
from robrep import results
from robrep.data.demo_file import DemoWriter, split_masks
from robrep.failpoints import failpoint
from robrep.interrupt import deferred_interrupts
from robrep.locks import exclusive_lock
from robrep.seeds import DEMO_SEEDS, check_demo_seed


def rollout_episode(env, policy_fn: Callable[[dict[str, np.ndarray]], np.ndarray], seed: int) -> dict[str, Any]:
    """Run one episode of ``policy_fn`` (obs dict -> action ``(4,)``) from ``env.reset(seed=seed)``.

    Calls ``policy_fn.reset()`` first if it has one (scripted experts do). Returns, with ``T`` steps:
    ``obs`` ``{key: (T, ...)}`` (observation before each action), ``actions`` float32 ``(T, 4)``,
    ``rewards`` float32 ``(T,)``, ``dones`` uint8 ``(T,)`` (1 at the last step), ``states``
    float64 ``(T, S)`` (sim state before each action), ``final_obs`` ``{key: (...)}`` (the observation after
    the last action: the last row of a demo file's ``next_obs``), ``success`` (bool, ``info["success"]`` at
    the last step), ``seed`` and ``ep_meta`` (``env.unwrapped.episode_meta``).
    """
    base = env.unwrapped
    obs, info = env.reset(seed=int(seed))
    if hasattr(policy_fn, "reset"):
        policy_fn.reset()
    ep_meta = dict(base.episode_meta)
    frames: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    actions, rewards, states = [], [], []
    done = False
    while not done:
        states.append(base.get_sim_state())
        for k, v in obs.items():
            frames[k].append(v)
        action = np.asarray(policy_fn(obs), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    dones = np.zeros(len(actions), dtype=np.uint8)
    dones[-1] = 1
    return {
        "obs": {k: np.stack(v) for k, v in frames.items()},
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "dones": dones,
        "states": np.stack(states),
        "final_obs": {k: np.asarray(v) for k, v in obs.items()},
        "success": bool(info.get("success", False)),
        "seed": int(seed),
        "ep_meta": ep_meta,
    }


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
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(task, image_size=image_size, visuals=visuals)
    expert = make_expert(env)
    try:
        clips = [rollout_episode(env, expert, seed)["obs"]["image"] for seed in range(seed_start, seed_start + episodes)]
    finally:
        env.close()
    return np.concatenate(clips)


def _noise_seed(seed: int) -> int:
    """Seed of the expert's action noise for episode ``seed``, decorrelated from the env's layout RNG."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


def collect_demos(
    task: str,
    num_demos: int,
    out_path: str | os.PathLike,
    image_size: int = 96,
    seed_start: int = 0,
    noise_std: float = 0.0,
    subset_sizes: Sequence[int] = (10, 50, 100, 500),
    subset_seeds: Sequence[int] = (0, 1, 2),
    valid_fraction: float = 0.1,
    max_attempts: int | None = None,
    progress: bool = True,
    visuals: str = "clean",
) -> dict[str, Any]:
    """Collect ``num_demos`` successful scripted-expert episodes of ``task`` into ``out_path``.

    Tries seeds ``seed_start, seed_start + 1, ...`` (at most ``max_attempts``, default
    ``3 * num_demos``); the file (masks from ``valid_fraction``, ``subset_sizes``, ``subset_seeds``,
    see :func:`robrep.data.demo_file.split_masks`) appears atomically only if enough succeed,
    replacing any existing file; on an error, Ctrl-C or SIGTERM only the temp file existed and is
    removed. Episodes render in the ``visuals`` setting (``clean`` | ``varied`` | ``heldout``, see
    :mod:`envs.visuals`; recorded in ``env_args`` and each ``ep_meta``). Raises ``RuntimeError`` when the
    attempts run out, ``ValueError`` for bad arguments or seeds outside the demo range.

    Returns ``{"task", "visuals", "num_demos", "attempts", "expert_success_rate", "frames", "seconds", "path"}``.
    """
    if isinstance(num_demos, bool) or not isinstance(num_demos, numbers.Integral) or num_demos < 1:
        raise ValueError(f"num_demos must be a whole number >= 1, got {num_demos!r}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0 (the expert's Gaussian action noise), got {noise_std}")
    if Path(out_path).is_dir():
        raise ValueError(f"out={out_path} is a directory; name the .hdf5 file to write")
    max_attempts = 3 * num_demos if max_attempts is None else int(max_attempts)
    if max_attempts < num_demos:
        raise ValueError(f"max_attempts={max_attempts} is smaller than num_demos={num_demos}")
    split_masks([f"demo_{i}" for i in range(num_demos)], valid_fraction, subset_sizes, subset_seeds)  # fail early
    check_demo_seed(seed_start)
    if seed_start + max_attempts > DEMO_SEEDS.stop:
        raise ValueError(
            f"seeds {seed_start}..{seed_start + max_attempts - 1} would leave the demo seed range "
            f"[{DEMO_SEEDS.start}, {DEMO_SEEDS.stop})"
        )
    out_path = Path(out_path)
    t0 = time.perf_counter()
    env = make_env(task, image_size=image_size, visuals=visuals)
    attempts = frames = 0
    try:
        with exclusive_lock(out_path, f"robrep collect into {out_path}"), deferred_interrupts() as pending, \
                tqdm(total=num_demos, desc=f"collect {task}", unit="demo", disable=not progress) as bar, \
                DemoWriter(out_path, env.unwrapped.env_args(), valid_fraction=valid_fraction,
                           subset_sizes=subset_sizes, subset_seeds=subset_seeds) as writer:
            results.remove_stale_temps(out_path.parent, prefix=f"{out_path.name}.tmp-")  # left by a killed collect
            while len(writer) < num_demos:
                pending.check()  # Ctrl-C / SIGTERM stop between demos, never mid-write
                if attempts >= max_attempts:
                    raise RuntimeError(
                        f"only {len(writer)} of {num_demos} {task} episodes succeeded in {attempts} attempts "
                        f"(seeds {seed_start}..{seed_start + attempts - 1}); raise max_attempts or lower noise_std"
                    )
                seed = check_demo_seed(seed_start + attempts)
                attempts += 1
                expert = make_expert(env, noise_std=noise_std, seed=_noise_seed(seed))
                ep = rollout_episode(env, expert, seed)
                if ep["success"]:
                    writer.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["dones"], ep["states"],
                                       seed=seed, ep_meta=ep["ep_meta"], final_obs=ep["final_obs"])
                    frames += len(ep["actions"])
                    failpoint("collect.demo")
                    bar.update(1)
                bar.set_postfix(attempts=attempts, success=f"{len(writer) / attempts:.0%}")
            writer.attrs.update(task=task, noise_std=float(noise_std), seed_start=int(seed_start),
                                attempts=attempts, expert="scripted")
    finally:
        env.close()
    return {
        "task": task,
        "visuals": visuals,
        "num_demos": num_demos,
        "attempts": attempts,
        "expert_success_rate": num_demos / attempts,
        "frames": frames,
        "seconds": time.perf_counter() - t0,
        "path": str(out_path),
    }
