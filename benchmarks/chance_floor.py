"""Chance floor per task: the success of policies that ignore their observations, on the sweeps' evaluation layouts.

    python -m benchmarks.chance_floor [--tasks push push_color pick_place mw_push] [--commit | --out PATH]

A success rate means little until it is set beside what doing nothing gets on the same layouts: on some tasks a
layout can start near success, or wandering can end in it. Per task (a ``configs/task`` name) and policy --
``zero`` (the zero action every step: the arm holds still) and ``random`` (uniform actions in the env's action box,
seeded) -- the sweep's own evaluation (``robrep sweep``'s ``episodes``, ``eval_split``, ``eval_seed_start`` and
``num_envs``: the layouts every sweep cell is scored on) with Wilson 95 % intervals. Neither policy reads an image, so
the envs skip rendering. Writes runs/benchmarks/chance_floor/chance_floor.csv (+ the command; ``--commit``: the
reference results/chance_floor.csv). Renders headless (``MUJOCO_GL=egl`` unless set).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv

NAME = "chance_floor"
COMMITTED = "results/chance_floor.csv"
#: The tasks of the cross-task benchmark (benchmarks/report.py TASK_SWEEPS), by their configs/task names.
TASKS = ["push", "push_color", "pick_place", "mw_push"]
POLICIES = ("zero", "random")


@dataclass
class BlindPolicy:
    """An :class:`robrep.eval.rollouts.EvalPolicy` that never reads its observations: ``kind="zero"`` acts
    ``zeros(action_dim)``, ``kind="random"`` draws each action uniformly from ``[low, high]`` (the env's action box)
    with a generator seeded by ``seed``. ``observation_needed`` is all False, so :func:`evaluate` lets the envs skip
    rendering."""

    task: str
    env_kwargs: dict[str, Any]
    kind: str
    low: np.ndarray
    high: np.ndarray
    seed: int = 0
    _n: int = field(default=1, init=False)
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"kind must be one of {POLICIES}, got {self.kind!r}")
        self._rng = np.random.default_rng(self.seed)

    def reset(self, num_envs: int = 1) -> None:
        self._n = int(num_envs)

    def reset_env(self, i: int) -> None:
        pass

    def observation_needed(self) -> np.ndarray:
        return np.zeros(self._n, dtype=bool)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``(num_envs, action_dim)`` float32 actions."""
        shape = (self._n, self.low.shape[-1])
        if self.kind == "zero":
            return np.zeros(shape, dtype=np.float32)
        return self._rng.uniform(self.low, self.high, size=shape).astype(np.float32)


def floor_rows(task: str, episodes: int | None = None, seed: int = 0) -> list[dict]:
    """One row per blind policy on ``task`` (a configs/task name), scored as ``robrep sweep`` scores its cells."""
    from omegaconf import OmegaConf

    from envs import make_env
    from robrep.config import compose
    from robrep.eval.rollouts import evaluate

    cfg = compose("sweep", [f"task={task}"])
    env_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items() if k != "name"}
    env = make_env(cfg.task.name, **env_kwargs)
    low, high = np.asarray(env.action_space.low), np.asarray(env.action_space.high)
    env.close()
    episodes = int(cfg.episodes if episodes is None else episodes)
    rows = []
    for kind in POLICIES:
        policy = BlindPolicy(cfg.task.name, env_kwargs, kind, low, high, seed)
        result = evaluate(policy, episodes, seed_start=int(cfg.eval_seed_start), split=str(cfg.eval_split),
                          num_envs=int(cfg.num_envs), progress=False, demo_seeds=[])
        summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.summary().items()}
        rows.append({"task": task, "env": summary.pop("task"), "policy": kind, "split": cfg.eval_split, **summary})
        print(f"{task:<12} {kind:<7} {result.format()}")
    return rows


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; before MuJoCo is imported (by envs)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--episodes", type=int, default=None, help="default: the sweep's `episodes`")
    parser.add_argument("--seed", type=int, default=0, help="the random policy's generator seed")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    rows = [row for task in args.tasks for row in floor_rows(task, args.episodes, args.seed)]
    path = write_csv(rows, output_path(args, NAME, COMMITTED), comments=[command(NAME, argv)])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
