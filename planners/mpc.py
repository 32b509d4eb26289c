"""Model-predictive control by CEM: plan ``H`` macro-actions, execute the first, replan.

:class:`MPCPlanner` is the shared loop: each planned macro-action is held for ``action_repeat`` env steps
(frameskip), so a plan covers ``H · action_repeat`` env steps and an env is replanned once per macro-action
(only the envs whose macro-action is used up, or that were reset). It implements the evaluation-policy
interface of :func:`robrep.eval.rollouts.evaluate` (``act`` on a batch of observations,
``start_episode(i, seed)`` after env i's reset), so planning is scored on the same evaluation seeds, with the
same Wilson intervals and videos, as a BC policy. A subclass says what it plans with:

* :class:`LatentPlanner` — imagination: the frozen encoder's latent of the observation, the learned transition
  model, the goal latent of the expert's final frame (:func:`goal_observation`); the ladder's rung (c);
* :class:`planners.sim_model.SimStatePlanner` / :class:`~planners.sim_model.SimLatentPlanner` — the simulator
  as the model, with the privileged state or the encoder latent of rendered frames as the cost: rungs (a), (b).

Latent cost of a candidate (lower is better), latents standardised by the :class:`~planners.latent.LatentMap`,
``ẑ_h`` the latent after macro-action ``h``::

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


def expert_trajectory(env, seed: int, max_steps: int | None = None, settle: int = 0
                      ) -> tuple[list[dict[str, np.ndarray]], bool]:
    """Reset ``env`` with ``seed`` and run the scripted expert until success (then ``settle`` more expert steps, so
    the last frame lies inside the success region rather than on its edge; ``env`` must not terminate on success
    then) or the time limit; returns every observation from the reset on (``image`` uint8 ``(H, W, 3)``,
    ``proprio``, …, plus ``instruction``: the episode's, a str) and whether the expert succeeded."""
    obs, info = env.reset(seed=int(seed))
    instruction = str(info.get("instruction", ""))
    expert = make_expert(env)
    limit = int(max_steps or getattr(env.spec, "max_episode_steps", None) or 200)
    success = bool(info.get("success", False))
    frames, after = [{**obs, "instruction": instruction}], 0
    for _ in range(limit):
        if success:
            if after >= int(settle):
                break
            after += 1
        obs, _, terminated, truncated, info = env.step(expert(obs))
        frames.append({**obs, "instruction": instruction})
        success = success or bool(info.get("success", False))
        if terminated or truncated:
            break
    return frames, success


def goal_observation(env, seed: int, max_steps: int | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """The last observation of :func:`expert_trajectory` (the goal image of episode ``seed``) and whether the
    expert succeeded."""
    frames, success = expert_trajectory(env, seed, max_steps)
    return frames[-1], success


#: What a latent planner descends (``planner.cost``): the distance to the goal image's latent, the learned
#: steps-to-go (:class:`planners.reward.ProgressModel`, in units of its ``scale``), or their sum.
COSTS = ("goal", "progress", "goal+progress")


def goal_cost(dynamics: LatentDynamics, z: torch.Tensor, goal: torch.Tensor | None, actions: torch.Tensor,
              running_weight: float = 0.1, repeat: int = 1, progress: torch.nn.Module | None = None,
              kind: str = "goal", latent: LatentMap | None = None, proprio_weight: float = 1.0,
              risk: float = 0.0, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Candidates ``actions (B, K, H, A)`` (macro-actions, each held ``repeat`` model steps) from latents
    ``z (B, *S)`` → costs ``(B, K)``: every candidate of every env rolled out in one batched call of
    ``dynamics.rollout`` over ``H · repeat`` steps and scored after each macro-action by ``kind`` (:data:`COSTS`):
    the mean squared distance to ``goal (B, *S)`` and/or ``progress``'s normalised steps-to-go; terminal value plus
    ``running_weight`` times the mean over the horizon. With ``latent``, the goal distance is
    :meth:`LatentMap.distance` (image and proprio channels averaged apart, proprio × ``proprio_weight``); without,
    the mean over every channel.

    ``offsets (B, H·r, A)`` are added to every candidate's env-step actions (clipped to [-1, 1]): a policy prior's
    residual parametrisation (:meth:`MPCPlanner._plan`).

    An :class:`~planners.dynamics.Ensemble` scores each member's own rollout and returns the members' mean cost
    plus ``risk`` times their standard deviation (pessimism where the members disagree: the candidates whose
    imagined success rests on one member's guess lose against those every member agrees on)."""
    if kind not in COSTS:
        raise ValueError(f"planner cost must be one of {COSTS}, got {kind!r}")
    b, k, h, a = actions.shape
    start = z[:, None].expand(b, k, *z.shape[1:]).reshape(b * k, *z.shape[1:])
    skip, r = int(getattr(dynamics, "frameskip", 1)), int(repeat)
    if r % skip:
        raise ValueError(f"action_repeat {r} must be a multiple of the transition model's frameskip {skip}")
    # each macro-action is held r env steps = r / skip model steps, each taking the action `skip` times over
    seq = actions.repeat_interleave(r, dim=2)  # (B, K, H·r, A): one action per env step
    if offsets is not None:  # a policy prior's residual step actions (MPCPlanner._plan), as the env will execute them
        seq = (seq + offsets[:, None]).clamp(-1.0, 1.0)
    steps = seq.reshape(b * k, h * r // skip, skip * a)  # (B·K, H·r/s, s·A): s consecutive env steps per model step
    target = goal.repeat_interleave(k, dim=0)[:, None] if "goal" in kind else None
    if hasattr(dynamics, "rollout_members"):
        preds = dynamics.rollout_members(start, steps)[:, :, r // skip - 1 :: r // skip]  # (M, B·K, H, *S)
        costs = torch.stack([score_latents(p, target, kind, running_weight, progress, latent, proprio_weight)
                             for p in preds])  # (M, B·K)
        return (costs.mean(0) + float(risk) * costs.std(0)).reshape(b, k)
    if risk:
        raise ValueError("planner risk > 0 needs an ensemble transition model (dynamics.ensemble > 1)")
    pred = dynamics.rollout(start, steps)[:, r // skip - 1 :: r // skip]  # (B·K, H, *S) after each macro-action
    return score_latents(pred, target, kind, running_weight, progress, latent, proprio_weight).reshape(b, k)


def score_latents(pred: torch.Tensor, goal: torch.Tensor | None, kind: str, running_weight: float = 0.1,
                  progress: torch.nn.Module | None = None, latent: LatentMap | None = None,
                  proprio_weight: float = 1.0) -> torch.Tensor:
    """Cost ``(N,)`` of ``N`` candidate futures given as latents ``pred (N, H, *S)`` after each macro-action (imagined
    by a transition model, or encoded from the simulator's frames): per step, by ``kind`` (:data:`COSTS`), the
    squared distance to ``goal`` (broadcastable to ``pred``; :meth:`LatentMap.distance` with ``latent``, else the
    mean over every channel) and/or ``progress``'s normalised prediction; then the terminal value plus
    ``running_weight`` times the mean over the horizon."""
    n, h = pred.shape[:2]
    dist = torch.zeros(n, h, device=pred.device)
    if "goal" in kind:
        dist = dist + (latent.distance(pred, goal, proprio_weight) if latent is not None
                       else ((pred - goal) ** 2).flatten(2).mean(-1))  # (N, H)
    if "progress" in kind:
        if progress is None:
            raise ValueError("planner cost 'progress' needs a progress model (trained with the world model)")
        dist = dist + progress.normalised(pred.flatten(0, 1)).reshape(n, h)
    return dist[:, -1] + running_weight * dist.mean(1)


def repeat_actions(macro: np.ndarray, repeat: int) -> np.ndarray:
    """Macro-actions ``(..., H, A)`` → the env actions that execute them ``(..., H · repeat, A)``: each held
    ``repeat`` consecutive env steps (frameskip)."""
    return np.repeat(np.asarray(macro), int(repeat), axis=-2)


class MPCPlanner:
    """CEM-MPC over macro-actions for a batch of envs; subclasses define :meth:`prepare` and :meth:`cost`.

    ``act`` replans only the envs whose current macro-action is used up (each is held ``action_repeat`` steps)
    or that were reset, warm-starting each from its previous plan shifted by one macro-action.
    """

    accepts_prior = False  # whether cost() reads step_offsets (a policy prior's residual step actions)

    def __init__(self, cem: CEMConfig, task: str, env_kwargs: Mapping[str, Any] | None = None,
                 action_repeat: int = 1, running_weight: float = 0.1, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if int(action_repeat) < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.task, self.env_kwargs = task, dict(env_kwargs or {})
        self.cem_cfg, self.running_weight, self.action_repeat = cem, float(running_weight), int(action_repeat)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.cem = CEM(cem, action_dim=4, batch=1, device=self.device, generator=self.generator)
        self._steps = np.zeros((1, self.action_repeat, 4), np.float32)  # (E, r, 4) env i's current macro-action,
        #                                                                   one action per env step it is held
        self._left = np.zeros(1, np.int64)           # (E,) env steps it is still held for
        self.plan_seconds, self.planned_actions, self.plan_calls = 0.0, 0, 0
        self.prior: Any = None  # a planners.prior.PolicyPrior: CEM starts from its proposal (set after construction)
        self.step_offsets: torch.Tensor | None = None  # with a prior, during a plan call: (b, H·r, A), see _plan

    # ------------------------------------------------------------------ subclass hooks
    def prepare(self, obs: Mapping[str, np.ndarray], envs: list[int]) -> None:
        """Read the planning start of envs ``envs`` from the batched observations ``obs`` (before :meth:`cost`)."""
        raise NotImplementedError

    def cost(self, envs: list[int], actions: torch.Tensor) -> torch.Tensor:
        """Costs ``(b, K)`` of candidate macro-action sequences ``actions (b, K, H, A)`` of envs ``envs``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation-policy interface
    def reset(self, num_envs: int = 1) -> None:
        self.cem.reset(num_envs)
        self._steps = np.zeros((num_envs, self.action_repeat, 4), np.float32)
        self._left = np.zeros(num_envs, np.int64)

    def reset_env(self, i: int) -> None:
        self.cem.reset_env(i)
        self._left[i] = 0

    def start_episode(self, i: int, seed: int) -> None:
        """Env ``i`` was reset with ``seed`` (subclasses fetch its goal)."""

    @torch.no_grad()
    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Observations of every env (leading axis ``E``) → the actions ``(E, 4)`` to execute now."""
        start = time.perf_counter()
        b = len(obs["proprio"])
        if self.cem.batch != b or len(self._left) != b:
            self.reset(b)
        envs = [i for i in range(b) if self._left[i] <= 0]
        if envs:
            self.prepare(obs, envs)
            first = self._plan(obs, envs)  # (b', r, A) the env-step actions of each env's first macro-action
            self.cem.shift(1, envs=envs)
            self._steps[envs] = first.cpu().numpy().astype(np.float32)
            self._left[envs] = self.action_repeat
            self.plan_calls += len(envs)
        actions = self._steps[np.arange(b), self.action_repeat - self._left]  # (E, A)
        self._left -= 1
        self.plan_seconds += time.perf_counter() - start
        self.planned_actions += b
        return actions.copy()

    def _plan(self, obs: Mapping[str, np.ndarray], envs: list[int]) -> torch.Tensor:
        """One CEM call for envs ``envs`` → the env-step actions ``(b, r, A)`` of their first macro-actions.

        Without a :attr:`prior` a macro-action is one action held ``r`` steps. With one, CEM starts from the prior's
        proposal (:class:`planners.prior.PolicyPrior`) and a macro-action is a *residual*: env step ``t`` executes
        the proposal's own step action plus the macro-action's deviation from the proposal's macro mean
        (:attr:`step_offsets`, which the cost adds the same way), so the proposal itself executes the policy's
        chunk step by step; the prior's weight adds its deviation penalty to the cost."""
        prior, r, h = self.prior, self.action_repeat, self.cem_cfg.horizon
        if prior is None:
            self.step_offsets = None
            plan = self.cem.plan(lambda actions: self.cost(envs, actions), envs=envs)  # (b, H, A)
            return plan[:, :1].expand(-1, r, -1)
        if not self.accepts_prior:
            raise ValueError(f"{type(self).__name__} does not plan with a policy prior (only the latent planner)")
        steps, macros = prior.propose(obs, envs, r)  # (b, m·r, A), (b, m, A)
        m = min(macros.shape[1], h)
        steps, macros = steps[:, : m * r].to(self.device), macros[:, :m].to(self.device)
        offsets = torch.zeros(len(envs), h * r, macros.shape[-1], device=self.device)
        offsets[:, : m * r] = steps - macros.repeat_interleave(r, dim=1)
        self.step_offsets = offsets  # (b, H·r, A): added to every candidate's held macro-actions
        rows = torch.as_tensor(envs, dtype=torch.long)
        mean = self.cem.mean[rows].clone() if self.cem_cfg.warm_start else torch.zeros_like(self.cem.mean[rows])
        mean[:, :m] = macros
        std = torch.full_like(mean, self.cem_cfg.init_std)
        std[:, :m] = prior.std

        def cost(actions: torch.Tensor) -> torch.Tensor:  # (b, K, H, A) -> (b, K)
            c = self.cost(envs, actions)
            if prior.weight:
                c = c + prior.weight * ((actions[:, :, :m] - macros[:, None]) ** 2).mean((-2, -1))
            return c

        plan = self.cem.plan(cost, envs=envs, init_mean=mean, init_std=std)  # (b, H, A)
        return (plan[:, :1] + offsets[:, :r]).clamp(self.cem_cfg.low, self.cem_cfg.high)

    @property
    def ms_per_action(self) -> float:
        """Wall milliseconds of planning per executed env action (encoding + CEM; env steps excluded), amortised
        over the ``action_repeat`` actions of each plan."""
        return 1000.0 * self.plan_seconds / max(self.planned_actions, 1)

    @property
    def ms_per_plan(self) -> float:
        """Wall milliseconds per replanning of one env (the latency before its next macro-action)."""
        return 1000.0 * self.plan_seconds / max(self.plan_calls, 1)

    def close(self) -> None:
        """Release private envs (subclasses)."""


class LatentPlanner(MPCPlanner):
    """Frozen encoder + :class:`LatentMap` + transition model + :class:`CEM`, acting in ``task``'s envs: the
    ladder's rung (c), full imagination towards the encoded goal image."""

    accepts_prior = True

    def __init__(self, encoder: Encoder, latent: LatentMap, dynamics: LatentDynamics | None, cem: CEMConfig, task: str,
                 env_kwargs: Mapping[str, Any] | None = None, running_weight: float = 0.1,
                 use_language: bool = False, seed: int = 0, action_repeat: int = 1,
                 progress: torch.nn.Module | None = None, cost: str = "goal", subgoal_ahead: int = 0,
                 proprio_weight: float = 1.0, goal_settle: int = 0, risk: float = 0.0) -> None:
        super().__init__(cem, task, env_kwargs, action_repeat, running_weight, seed, encoder.device)
        self.proprio_weight, self.goal_settle, self.risk = float(proprio_weight), int(goal_settle), float(risk)
        if cost not in COSTS or ("progress" in cost and progress is None):
            raise ValueError(f"planner cost must be one of {COSTS} (progress ones need a progress model), got {cost!r}")
        self.progress, self.cost_kind = (progress.eval() if progress is not None else None), cost
        self.encoder, self.latent = encoder, latent.eval()
        self.dynamics = dynamics.eval() if dynamics is not None else None  # None: a subclass models otherwise
        # language-conditioned encoders read each env's own instruction (obs["instruction"]), as in training
        self.use_language = bool(use_language) and hasattr(encoder, "encode_with_language")
        self.goals: dict[int, torch.Tensor] = {}
        self.subgoal_ahead = int(subgoal_ahead)
        self.trajectories: dict[int, torch.Tensor] = {}  # subgoals: env i's expert latents (T, *S)
        self.goal_success: dict[int, bool] = {}
        self._goal_env = None
        self._z: dict[int, torch.Tensor] = {}    # per env: the model input (with history: (k, *S))
        self._now: dict[int, torch.Tensor] = {}  # per env: its newest latent
        self._hist: dict[int, list[torch.Tensor]] = {}
        hist, skip = int(getattr(self.dynamics, "history", 1)), int(getattr(self.dynamics, "frameskip", 1))
        if hist > 1 and self.action_repeat != skip:
            raise ValueError(f"a transition model with history {hist} reads latents {skip} env steps apart: plan with "
                             f"action_repeat {skip} (got {self.action_repeat}) so each replanning adds one")

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
        """Env ``i`` was reset with ``seed``: encode that episode's goal image (with ``subgoal_ahead``, the whole
        expert trajectory of that seed: its subgoals)."""
        if self._goal_env is None:
            self._goal_env = make_env(self.task, **{**self.env_kwargs, "terminate_on_success": False})
        frames, ok = expert_trajectory(self._goal_env, seed, settle=getattr(self, "goal_settle", 0))
        if self.subgoal_ahead > 0:
            self.trajectories[i] = self.encode(np.stack([f["image"] for f in frames]),
                                               np.stack([f["proprio"] for f in frames]),
                                               [f["instruction"] for f in frames])
            self.goals[i] = self.trajectories[i][-1]
        else:
            last = frames[-1]
            self.goals[i] = self.encode(last["image"][None], last["proprio"][None], [last["instruction"]])[0]
        self.goal_success[i] = ok

    def current_goal(self, i: int, z: torch.Tensor) -> torch.Tensor:
        """Env ``i``'s target from latent ``z``: its goal, or (``subgoal_ahead`` k > 0) the expert frame k steps
        after the expert frame nearest to ``z`` (the goal once that runs past the end)."""
        if self.subgoal_ahead <= 0:
            return self.goals[i]
        traj = self.trajectories[i]
        nearest = int(self.latent.distance(traj, z[None], self.proprio_weight).argmin())
        return traj[min(nearest + self.subgoal_ahead, len(traj) - 1)]

    def prepare(self, obs: Mapping[str, np.ndarray], envs: list[int]) -> None:
        """Encode only the envs about to be replanned (one batched encoder call)."""
        missing = [i for i in envs if i not in self.goals]
        if missing:
            raise RuntimeError(f"no goal for env(s) {missing}: start_episode(i, seed) must run after each reset")
        texts = obs.get("instruction")
        z = self.encode(obs["image"][envs], obs["proprio"][envs], None if texts is None else [texts[i] for i in envs])
        hist = int(getattr(self.dynamics, "history", 1))
        for j, i in enumerate(envs):
            self._now[i] = z[j]
            if hist > 1:  # the latents of this env's last `hist` replannings (one model step apart), oldest first
                h = self._hist.setdefault(i, [])
                h.append(z[j])
                del h[:-hist]
                self._z[i] = torch.stack([h[0]] * (hist - len(h)) + h)
            else:
                self._z[i] = z[j]

    def reset(self, num_envs: int = 1) -> None:
        super().reset(num_envs)
        self._hist.clear()

    def reset_env(self, i: int) -> None:
        super().reset_env(i)
        self._hist.pop(i, None)

    def cost(self, envs: list[int], actions: torch.Tensor) -> torch.Tensor:
        """The MPC hook: :meth:`latent_cost` from the prepared latents of ``envs`` towards their (sub)goals."""
        return self.latent_cost(torch.stack([self._z[i] for i in envs]),
                                torch.stack([self.current_goal(i, self._now[i]) for i in envs]), actions)

    def latent_cost(self, z: torch.Tensor, goal: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """:func:`goal_cost` of ``actions (B, K, H, A)`` from ``z (B, *S)`` towards ``goal (B, *S)`` with this
        planner's transition model, running weight and action repeat → ``(B, K)``."""
        return goal_cost(self.dynamics, z, goal, actions, self.running_weight, self.action_repeat,
                         getattr(self, "progress", None), getattr(self, "cost_kind", "goal"),
                         getattr(self, "latent", None), getattr(self, "proprio_weight", 1.0),
                         getattr(self, "risk", 0.0), offsets=getattr(self, "step_offsets", None))

    def close(self) -> None:
        if self._goal_env is not None:
            self._goal_env.close()
            self._goal_env = None
