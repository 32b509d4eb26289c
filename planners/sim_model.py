"""The simulator as the planner's model: the ladder's rungs (a) and (b).

:class:`SimulatorModel` keeps one private copy of the task's env per evaluation env, reset with the same seed
(same layout and appearance), and rolls candidate macro-action sequences out from the real env's recorded MuJoCo
state (``obs["sim_state"]``, an env built with ``observe_sim_state=True``), stepping exactly as ``env.step``
does (:meth:`envs.tabletop.TabletopEnv.advance`). Two planners score those rollouts:

* :class:`SimStatePlanner` (rung a, the search alone): a privileged task cost on the simulator's state
  (:func:`privileged_cost`: metres to the goal), no learning anywhere;
* :class:`SimLatentPlanner` (rung b, the representation as a cost): the frames the rollouts render, encoded by
  the frozen encoder and its :class:`~planners.latent.LatentMap`, against the goal image's latent — the cost of
  rung (c) with a perfect transition model.

Each planner sees the same layouts as a BC policy or the imagination planner (:func:`robrep.eval.rollouts.evaluate`),
so a drop in success from (a) to (b) to (c) locates what loses it: search, representation, or model.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from envs.registration import make_env
from planners.cem import CEMConfig
from planners.latent import LatentMap
from planners.mpc import LatentPlanner, MPCPlanner, repeat_actions, score_latents
from robrep.encoders.base import Encoder

#: Tasks with a privileged cost (:func:`privileged_cost`).
PRIVILEGED_TASKS = ("reach", "push", "pick_place")


def privileged_cost(task: str, state_spec: list[tuple[str, int]], states: np.ndarray,
                    approach_weight: float = 0.5) -> np.ndarray:
    """Distance-to-goal in metres of privileged ``states (..., D)`` (laid out by ``state_spec``) → ``(...)``.

    reach: ‖gripper − goal‖. push: ‖block − goal‖ (xy) + ``approach_weight`` · ‖gripper − block‖ (xy): the second
    term leads the gripper to the block before pushing moves the first. pick_place: ‖block − goal‖ (xy) +
    ``approach_weight`` · ‖gripper − block‖ (3-D). Lower is better; 0 at the goal.
    """
    from envs.state import split_state

    s = split_state(states, state_spec)
    if task == "reach":
        return np.linalg.norm(s["gripper_pos"] - s["goal_pos"], axis=-1)
    if task == "push":
        return (np.linalg.norm(s["block_pos"][..., :2] - s["goal_pos"][..., :2], axis=-1)
                + approach_weight * np.linalg.norm(s["gripper_pos"][..., :2] - s["block_pos"][..., :2], axis=-1))
    if task == "pick_place":
        return (np.linalg.norm(s["block_pos"][..., :2] - s["goal_pos"][..., :2], axis=-1)
                + approach_weight * np.linalg.norm(s["gripper_pos"] - s["block_pos"], axis=-1))
    raise ValueError(f"no privileged cost for task {task!r}; tasks with one: {PRIVILEGED_TASKS}")


class SimulatorModel:
    """Private copies of ``task``'s env (one per evaluation env) that roll macro-actions out from a MuJoCo state."""

    def __init__(self, task: str, env_kwargs: Mapping[str, Any] | None = None, action_repeat: int = 1) -> None:
        self.task, self.action_repeat = task, int(action_repeat)
        self.env_kwargs = {k: v for k, v in dict(env_kwargs or {}).items() if k != "observe_sim_state"}
        self._envs: dict[int, Any] = {}

    def start(self, i: int, seed: int) -> None:
        """Env ``i`` was reset with ``seed``: reset its private copy the same way (layout and appearance)."""
        if i not in self._envs:
            self._envs[i] = make_env(self.task, **self.env_kwargs).unwrapped
        self._envs[i].reset(seed=int(seed))

    def state_spec(self, i: int) -> list[tuple[str, int]]:
        return self._envs[i].state_spec

    def rollout(self, i: int, sim_state: np.ndarray, macro: np.ndarray, render: bool = False,
                last_only: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Roll every candidate ``macro (K, H, A)`` out from ``sim_state`` in env ``i``'s copy, each macro-action held
        ``action_repeat`` steps. Returns the privileged states after each macro-action ``(K, H, D)`` and, with
        ``render``, the front-camera frames there, uint8 ``(K, H, h, w, 3)`` (``last_only``: after the last
        macro-action only, ``(K, 1, h, w, 3)``)."""
        env = self._envs[i]
        k, h, _ = macro.shape
        steps = repeat_actions(macro, self.action_repeat)  # (K, H·r, A)
        states = np.empty((k, h, len(env.privileged_state())), np.float32)
        frames = np.empty((k, 1 if last_only else h, env.image_size, env.image_size, 3), np.uint8) if render else None
        for c in range(k):
            env.set_sim_state(sim_state)
            for t in range(h * self.action_repeat):
                env.advance(steps[c, t])
                if (t + 1) % self.action_repeat == 0:
                    j = t // self.action_repeat
                    states[c, j] = env.privileged_state()
                    if frames is not None and (not last_only or j == h - 1):
                        frames[c, 0 if last_only else j] = env.render_camera("front")
        return states, frames

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def _sim_states(obs: Mapping[str, np.ndarray], envs: list[int]) -> dict[int, np.ndarray]:
    if "sim_state" not in obs:
        raise KeyError("the simulator planners need obs['sim_state']: build the envs with observe_sim_state=True "
                       "(the planner's env_kwargs do)")
    return {i: np.asarray(obs["sim_state"][i], dtype=np.float64) for i in envs}


class SimStatePlanner(MPCPlanner):
    """Rung (a): CEM-MPC with the simulator as the model and the privileged :func:`privileged_cost`."""

    def __init__(self, cem: CEMConfig, task: str, env_kwargs: Mapping[str, Any] | None = None,
                 action_repeat: int = 1, running_weight: float = 0.1, approach_weight: float = 0.5,
                 seed: int = 0) -> None:
        if task not in PRIVILEGED_TASKS:
            raise ValueError(f"no privileged cost for task {task!r}; tasks with one: {PRIVILEGED_TASKS}")
        super().__init__(cem, task, {**dict(env_kwargs or {}), "observe_sim_state": True}, action_repeat,
                         running_weight, seed)
        self.sim = SimulatorModel(task, self.env_kwargs, action_repeat)
        self.approach_weight = float(approach_weight)
        self._start: dict[int, np.ndarray] = {}

    def start_episode(self, i: int, seed: int) -> None:
        self.sim.start(i, seed)

    def prepare(self, obs: Mapping[str, np.ndarray], envs: list[int]) -> None:
        self._start = _sim_states(obs, envs)

    def cost(self, envs: list[int], actions: torch.Tensor) -> torch.Tensor:
        macro = actions.cpu().numpy()
        out = np.empty(actions.shape[:2], np.float64)
        for j, i in enumerate(envs):
            states, _ = self.sim.rollout(i, self._start[i], macro[j])
            d = privileged_cost(self.task, self.sim.state_spec(i), states, self.approach_weight)  # (K, H)
            out[j] = d[:, -1] + self.running_weight * d.mean(1)
        return torch.as_tensor(out, dtype=torch.float32)

    def close(self) -> None:
        self.sim.close()


class SimLatentPlanner(LatentPlanner):
    """Rung (b): the simulator as the model, the encoder latent of its rendered frames as the cost (towards the
    expert's final frame, as rung c): imagination with a perfect transition model. With ``running_weight=0`` only
    each candidate's last frame is rendered and encoded (the cost reads nothing else): H times fewer encoder calls."""

    accepts_prior = False  # its rollouts hold each macro-action; a prior's residual step actions are not simulated

    def __init__(self, encoder: Encoder, latent: LatentMap, cem: CEMConfig, task: str,
                 env_kwargs: Mapping[str, Any] | None = None, running_weight: float = 0.1,
                 use_language: bool = False, seed: int = 0, action_repeat: int = 1,
                 encode_batch: int = 256, subgoal_ahead: int = 0, proprio_weight: float = 1.0,
                 goal_settle: int = 0, progress: torch.nn.Module | None = None, cost: str = "goal") -> None:
        super().__init__(encoder, latent, None, cem, task, env_kwargs, running_weight, use_language, seed,
                         action_repeat, progress=progress, cost=cost, subgoal_ahead=subgoal_ahead,
                         proprio_weight=proprio_weight, goal_settle=goal_settle)
        self._z0: dict[int, torch.Tensor] = {}
        self.env_kwargs = {**self.env_kwargs, "observe_sim_state": True}
        self.sim = SimulatorModel(task, self.env_kwargs, action_repeat)
        self.encode_batch = int(encode_batch)
        self._start: dict[int, np.ndarray] = {}
        self._texts: dict[int, str] = {}

    def start_episode(self, i: int, seed: int) -> None:
        super().start_episode(i, seed)
        self.sim.start(i, seed)

    def prepare(self, obs: Mapping[str, np.ndarray], envs: list[int]) -> None:
        self._start = _sim_states(obs, envs)
        texts = obs.get("instruction")
        self._texts = {i: (str(texts[i]) if texts is not None else "") for i in envs}
        self._z0 = {}
        if self.subgoal_ahead > 0:  # subgoals are chosen from the current latent
            z = self.encode(obs["image"][envs], obs["proprio"][envs], [self._texts[i] for i in envs])
            self._z0 = {i: z[j] for j, i in enumerate(envs)}

    def cost(self, envs: list[int], actions: torch.Tensor) -> torch.Tensor:
        macro = actions.cpu().numpy()
        out = torch.empty(actions.shape[:2])
        last_only = self.running_weight == 0
        for j, i in enumerate(envs):
            states, frames = self.sim.rollout(i, self._start[i], macro[j], render=True, last_only=last_only)
            if last_only:
                states = states[:, -1:]
            k, h = frames.shape[:2]
            flat, proprio = frames.reshape(k * h, *frames.shape[2:]), states.reshape(k * h, -1)[:, :4]
            z = torch.cat([self.encode(flat[s:s + self.encode_batch], proprio[s:s + self.encode_batch],
                                       [self._texts[i]] * len(flat[s:s + self.encode_batch]))
                           for s in range(0, len(flat), self.encode_batch)]).reshape(k, h, *self.latent.shape)
            goal = self.current_goal(i, self._z0.get(i)) if "goal" in self.cost_kind else None
            out[j] = score_latents(z, goal, self.cost_kind, self.running_weight, self.progress, self.latent,
                                   self.proprio_weight)  # (K,): as rung (c) scores its imagined latents
        return out

    def close(self) -> None:
        super().close()
        self.sim.close()
