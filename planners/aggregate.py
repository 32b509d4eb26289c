"""On-policy data for the world model (the Dyna / PETS loop): the planner's own episodes, written as play data.

A transition model trained on demos and play is exploited by CEM: the planner steers towards actions whose imagined
outcome the data never contradicted (``benchmarks/plan_exploitation.py``). Running the planner and training the
model again on what really happened shows it those outcomes. :func:`collect_planner_play` runs an
:class:`~planners.mpc.MPCPlanner` one env at a time and writes its episodes in the demo / play file format
(:class:`robrep.data.demo_file.DemoWriter`, with ``states``, so privileged labels such as the task cost exist for
training), on play seeds of their own (:data:`PLANNER_PLAY_SEEDS`): no evaluation or demo layout is ever seen.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robrep.seeds import PLAY_SEEDS

#: Seeds of planner-collected episodes: the upper half of :data:`robrep.seeds.PLAY_SEEDS` (play files start at its
#: bottom), so they are play layouts — disjoint from demo and evaluation layouts — and not the play files' own.
PLANNER_PLAY_SEEDS = range(PLAY_SEEDS.start + len(PLAY_SEEDS) // 2, PLAY_SEEDS.stop)


class PlannerPolicy:
    """One env's policy from a batched :class:`~planners.mpc.MPCPlanner` (``obs`` dict → action ``(4,)``), for
    :func:`robrep.data.collect.rollout_episode`; set :attr:`seed` before each episode (its goal is that seed's)."""

    def __init__(self, planner: Any) -> None:
        self.planner, self.seed = planner, None

    def reset(self) -> None:
        self.planner.reset(1)
        self.planner.start_episode(0, int(self.seed))

    def __call__(self, obs: Mapping[str, Any]) -> np.ndarray:
        batch = {k: np.asarray(v)[None] for k, v in obs.items() if k != "instruction"}
        if "instruction" in obs:
            batch["instruction"] = np.array([obs["instruction"]])
        return self.planner.act(batch)[0]


def collect_planner_play(planner: Any, task: str, episodes: int, path: str | os.PathLike, seed_start: int,
                         env_kwargs: Mapping[str, Any] | None = None, valid_fraction: float = 0.1) -> dict[str, Any]:
    """Run ``planner`` for ``episodes`` episodes of ``task`` on seeds ``seed_start, …`` (inside
    :data:`PLANNER_PLAY_SEEDS`) and write them to ``path`` atomically; returns ``{"path", "episodes", "frames",
    "successes", "seconds"}``."""
    from envs.registration import make_env
    from robrep.data.collect import rollout_episode
    from robrep.data.demo_file import DemoWriter

    seeds = range(int(seed_start), int(seed_start) + int(episodes))
    if seeds.start < PLANNER_PLAY_SEEDS.start or seeds.stop > PLANNER_PLAY_SEEDS.stop or episodes < 1:
        raise ValueError(f"planner play seeds {seeds} must lie in {PLANNER_PLAY_SEEDS}")
    t0 = time.perf_counter()
    env = make_env(task, **dict(env_kwargs or {}))
    policy = PlannerPolicy(planner)
    frames = successes = 0
    try:
        with DemoWriter(path, env.unwrapped.env_args(), valid_fraction=valid_fraction, next_obs=False) as writer:
            for seed in seeds:
                policy.seed = seed
                ep = rollout_episode(env, policy, seed)
                writer.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["dones"], ep["states"], seed=seed,
                                   ep_meta={**ep["ep_meta"], "collected_by": "planner"})
                frames += len(ep["actions"])
                successes += int(ep["success"])
            writer.attrs.update(task=task, episodes=int(episodes), successes=successes, expert="planner")
    finally:
        env.close()
    return {"path": str(Path(path)), "episodes": int(episodes), "frames": frames, "successes": successes,
            "seconds": time.perf_counter() - t0}
