"""Goal-reaching by imagination: encode the observation, plan with CEM through the latent transition model,
execute the first action, replan (model-predictive control).

:class:`LatentPlanner` implements the evaluation-policy interface of :func:`robrep.eval.rollouts.evaluate`
(``act`` on a batch of observations, ``start_episode(i, seed)`` to fetch env i's goal), so planning is
scored on the same evaluation seeds, with the same Wilson intervals and videos, as a BC policy. The goal of
episode ``seed`` is an image: the task's scripted expert is run from that seed in a separate env until it
succeeds (:func:`goal_observation`) and its final observation is encoded once per episode.

Cost of a candidate (lower is better), latents standardised by the :class:`~planners.latent.LatentMap`::

    cost = ‖ẑ_H − z_goal‖² / |z|  +  running_weight · mean_h ‖ẑ_h − z_goal‖² / |z|
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
import torch

from envs.experts import make_expert
from envs.registration import make_env
from planners.cem import CEM, CEMConfig
from planners.dynamics import LatentDynamics
from planners.latent import LatentMap
from robrep.encoders.base import Encoder


def goal_observation(env, seed: int, max_steps: int | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """Reset ``env`` with ``seed``, run the scripted expert until success or the time limit; returns the last
    observation (``image`` uint8 ``(H, W, 3)``, ``proprio``, …, plus ``instruction``: the episode's, a str) and
    whether the expert succeeded."""
    obs, info = env.reset(seed=int(seed))
    instruction = str(info.get("instruction", ""))
    expert = make_expert(env)
    limit = int(max_steps or getattr(env.spec, "max_episode_steps", None) or 200)
    success = bool(info.get("success", False))
    for _ in range(limit):
        if success:
            break
        obs, _, terminated, truncated, info = env.step(expert(obs))
        success = bool(info.get("success", False))
        if terminated or truncated:
            break
    return {**obs, "instruction": instruction}, success


def goal_cost(dynamics: LatentDynamics, z: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor,
              running_weight: float = 0.1) -> torch.Tensor:
    """Candidates ``actions (B, K, H, A)`` from latents ``z (B, *S)`` towards ``goal (B, *S)`` → costs ``(B, K)``:
    every candidate of every env rolled out in one batched call of ``dynamics.rollout``."""
    b, k, h, a = actions.shape
    start = z[:, None].expand(b, k, *z.shape[1:]).reshape(b * k, *z.shape[1:])
    pred = dynamics.rollout(start, actions.reshape(b * k, h, a))  # (B·K, H, *S)
    dist = ((pred - goal.repeat_interleave(k, dim=0)[:, None]) ** 2).flatten(2).mean(-1)  # (B·K, H)
    return (dist[:, -1] + running_weight * dist.mean(1)).reshape(b, k)


class LatentPlanner:
    """Frozen encoder + :class:`LatentMap` + transition model + :class:`CEM`, acting in ``task``'s envs."""

    def __init__(self, encoder: Encoder, latent: LatentMap, dynamics: LatentDynamics, cem: CEMConfig, task: str,
                 env_kwargs: Mapping[str, Any] | None = None, running_weight: float = 0.1,
                 use_language: bool = False, seed: int = 0) -> None:
        self.encoder, self.latent, self.dynamics = encoder, latent.eval(), dynamics.eval()
        self.task, self.env_kwargs = task, dict(env_kwargs or {})
        self.cem_cfg, self.running_weight = cem, float(running_weight)
        self.device = encoder.device
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.cem = CEM(cem, action_dim=4, batch=1, device=self.device, generator=self.generator)
        # language-conditioned encoders read each env's own instruction (obs["instruction"]), as in training
        self.use_language = bool(use_language) and hasattr(encoder, "encode_with_language")
        self.goals: dict[int, torch.Tensor] = {}
        self.goal_success: dict[int, bool] = {}
        self._goal_env = None
        self.plan_seconds, self.planned_actions = 0.0, 0

    # ------------------------------------------------------------------ latents
    @torch.no_grad()
    def encode(self, images: np.ndarray, proprio: np.ndarray, texts: Any = None) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` + ``(B, P)`` (+ one instruction per image, used when ``use_language``) →
        latents ``(B, *latent.shape)`` (one batched encoder call)."""
        if self.use_language and texts is None:
            raise ValueError("this planner's encoder reads the instruction: pass obs['instruction'] (one per env)")
        feats = self.encoder.encode_frames(images, texts if self.use_language else None)
        return self.latent(feats.tokens, torch.as_tensor(np.asarray(proprio), dtype=torch.float32, device=self.device))

    def start_episode(self, i: int, seed: int) -> None:
        """Env ``i`` was reset with ``seed``: encode that episode's goal image."""
        if self._goal_env is None:
            self._goal_env = make_env(self.task, **self.env_kwargs)
        obs, ok = goal_observation(self._goal_env, seed)
        self.goals[i] = self.encode(obs["image"][None], obs["proprio"][None], [obs["instruction"]])[0]
        self.goal_success[i] = ok

    # ------------------------------------------------------------------ evaluation-policy interface
    def reset(self, num_envs: int = 1) -> None:
        self.cem.reset(num_envs)

    def reset_env(self, i: int) -> None:
        self.cem.reset_env(i)

    def cost(self, z: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """:func:`goal_cost` with this planner's transition model and running weight."""
        return goal_cost(self.dynamics, z, goal, actions, self.running_weight)

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Observations of every env (``image (B, H, W, 3)``, ``proprio (B, P)``) → first planned actions ``(B, 4)``."""
        start = time.perf_counter()
        z = self.encode(obs["image"], obs["proprio"], obs.get("instruction"))
        b = z.shape[0]
        if self.cem.batch != b:
            self.cem.reset(b)
        missing = [i for i in range(b) if i not in self.goals]
        if missing:
            raise RuntimeError(f"no goal for env(s) {missing}: start_episode(i, seed) must run after each reset")
        goal = torch.stack([self.goals[i] for i in range(b)])
        plan = self.cem.plan(lambda actions: self.cost(z, goal, actions))
        self.cem.shift(1)
        self.plan_seconds += time.perf_counter() - start
        self.planned_actions += b
        return plan[:, 0].cpu().numpy().astype(np.float32)

    @property
    def ms_per_action(self) -> float:
        """Wall milliseconds of encoding + planning per executed action (env steps excluded)."""
        return 1000.0 * self.plan_seconds / max(self.planned_actions, 1)

    def close(self) -> None:
        if self._goal_env is not None:
            self._goal_env.close()
            self._goal_env = None
