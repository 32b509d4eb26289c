"""Batched policy evaluation on fixed evaluation seeds.

:func:`evaluate` runs episode ``i`` from ``env.reset(seed=eval_seeds(episodes, seed_start)[i])`` (the
range :data:`robrep.seeds.EVAL_SEEDS`, disjoint from demo seeds), so two policies evaluated with the same
``episodes`` and ``seed_start`` see identical layouts and their per-episode outcomes can be paired.
``num_envs`` envs step together and the policy gets ONE batched ``act`` per step.

The policy interface (``policies.Policy`` implements it)::

    policy.task: str                      # envs.registration.make_env(task, **env_kwargs)
    policy.env_kwargs: dict
    policy.reset(num_envs=1)              # clear every env's frame stack / action chunks
    policy.reset_env(i)                   # clear env i's state after its episode ended
    policy.act(obs) -> float32 (B, A)     # obs: image uint8 (B, H, W, 3), proprio (B, P), state (B, D),
                                          #      instruction str array (B,); A = the env's action size (4)
    policy.action_dim, policy.obs_keys (optional)  # checked against the env before the first step
    policy.demo_seeds (optional)          # seeds of its training demos, checked disjoint from eval seeds
    policy.start_episode(i, seed) (optional)  # env i was just reset with seed (e.g. a planner fetches its goal)
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

import numpy as np

from envs.registration import make_env
from robrep.eval.stats import wilson_interval
from robrep.failpoints import failpoint
from robrep.seeds import check_disjoint, eval_seeds
from robrep.video import write_video


class EvalPolicy(Protocol):
    """What :func:`evaluate` needs from a policy (see the module docstring)."""

    task: str
    env_kwargs: dict[str, Any]

    def reset(self, num_envs: int = 1) -> None: ...

    def reset_env(self, i: int) -> None: ...

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class EpisodeRecord:
    """One evaluation episode: its position in the evaluation order, reset seed, outcome and length (env steps)."""

    index: int
    seed: int
    success: bool
    length: int


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`. ``records[i]`` is episode ``i`` (seed ``eval_seeds(n, seed_start)[i]``);
    ``frames[i]`` uint8 ``(T_i + 1, H, W, 3)`` are the observed images of episode ``i < video_episodes``.
    Times in seconds: ``wall_s`` the whole evaluation, ``policy_s`` inside ``policy.act``."""

    task: str
    env_kwargs: dict[str, Any]
    seed_start: int
    records: list[EpisodeRecord]
    wall_s: float
    policy_s: float
    num_envs: int
    max_steps: int | None = None
    demo_seeds_checked: int | None = None  # how many demo seeds were checked disjoint (None: none known)
    frames: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def episodes(self) -> int:
        return len(self.records)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    @property
    def success(self) -> np.ndarray:
        """Per-episode success, bool ``(episodes,)``."""
        return np.array([r.success for r in self.records], dtype=bool)

    @property
    def successes(self) -> int:
        return int(self.success.sum())

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes

    @property
    def ci(self) -> tuple[float, float]:
        """Wilson 95 % interval of the success rate."""
        return wilson_interval(self.successes, self.episodes)

    @property
    def steps(self) -> int:
        """Env steps taken over all episodes."""
        return sum(r.length for r in self.records)

    @property
    def mean_length(self) -> float:
        """Mean episode length (env steps)."""
        return self.steps / self.episodes

    @property
    def ms_per_step(self) -> float:
        """Wall-clock milliseconds per env step (policy share included)."""
        return 1000.0 * self.wall_s / max(self.steps, 1)

    def summary(self) -> dict[str, Any]:
        """Flat scalars: task, episodes, successes, success_rate, ci_low, ci_high, mean_length, steps, wall_s,
        policy_s, ms_per_step, seed_start, num_envs, max_steps."""
        low, high = self.ci
        return {"task": self.task, "episodes": self.episodes, "successes": self.successes,
                "success_rate": self.success_rate, "ci_low": low, "ci_high": high, "mean_length": self.mean_length,
                "steps": self.steps, "wall_s": self.wall_s, "policy_s": self.policy_s,
                "ms_per_step": self.ms_per_step, "seed_start": self.seed_start, "num_envs": self.num_envs,
                "max_steps": self.max_steps}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: :meth:`summary` + env kwargs + per-episode records (no frames)."""
        return {**self.summary(), "env_kwargs": dict(self.env_kwargs), "demo_seeds_checked": self.demo_seeds_checked,
                "records": [asdict(r) for r in self.records]}

    def format(self) -> str:
        """One line: ``<task>: success k/n = r% [low%, high%] ...``."""
        low, high = self.ci
        return (f"{self.task}: success {self.successes}/{self.episodes} = {self.success_rate:.1%} "
                f"[{low:.1%}, {high:.1%}] (Wilson 95 %), mean length {self.mean_length:.1f} steps, "
                f"{self.ms_per_step:.2f} ms/step ({self.policy_s / max(self.wall_s, 1e-9):.0%} in the policy), "
                f"{self.wall_s:.1f} s")

    def write_videos(self, path: str | os.PathLike, fps: int = 20) -> list[Path]:
        """Write each recorded episode to ``<path stem>.ep<i>_seed<seed><path suffix>`` (``.mp4`` or ``.gif``)."""
        path = Path(path)
        return [write_video(clip, path.with_name(f"{path.stem}.ep{i}_seed{self.records[i].seed}{path.suffix}"), fps=fps)
                for i, clip in enumerate(self.frames)]


def recorded_demo_seeds(policy: Any) -> list[int] | None:
    """The policy's training demo seeds if it records them (``policy.demo_seeds`` or
    ``policy.meta["dataset"]["demo_seeds"]``), else ``None``."""
    seeds = getattr(policy, "demo_seeds", None)
    if seeds is None:
        meta = getattr(policy, "meta", None)
        if isinstance(meta, Mapping):
            seeds = (meta.get("dataset") or {}).get("demo_seeds")
    return None if seeds is None else [int(s) for s in seeds]


def policy_demo_seeds(policy: Any) -> list[int] | None:
    """Seeds to check disjoint from the evaluation seeds: those the policy records (:func:`recorded_demo_seeds`),
    else every demo seed of its training file (``policy.meta["dataset"]["path"]``) if that file is still there and
    robrep wrote it, else ``None``."""
    seeds = recorded_demo_seeds(policy)
    meta = getattr(policy, "meta", None)
    path = ((meta or {}).get("dataset") or {}).get("path") if isinstance(meta, Mapping) else None
    if seeds is None and path and Path(path).is_file():
        from robrep.data.demo_file import DemoFile

        with DemoFile(path) as demos:
            seeds = demos.demo_seeds if demos.written_by_robrep else None  # a foreign file's demos have no seeds
    return seeds


def check_policy_env(policy: Any, env: Any) -> None:
    """Refuse, before any step, a policy the env cannot run: ``policy.action_dim`` (if it has one) must be the
    env's action size and the obs keys it reads (``policy.obs_keys``, :class:`robrep.data.obs_keys.ObsKeys`) must
    be in the env's observations. A policy trained on a file robrep did not write (robomimic's 7-D actions,
    ``agentview_image``, ...) fails here with a ``ValueError`` saying so instead of a shape error mid-rollout."""
    space = getattr(env, "action_space", None)
    env_dim = int(space.shape[-1]) if getattr(space, "shape", None) else None
    want = getattr(policy, "action_dim", None)
    origin = ""
    meta = getattr(policy, "meta", None)
    if isinstance(meta, Mapping):
        origin = f" ({(meta.get('dataset') or {}).get('path', 'its demo file')})"
    if want is not None and env_dim is not None and int(want) != env_dim:
        raise ValueError(f"the policy predicts {want}-D actions (the actions of its training demos{origin}) but the "
                         f"{policy.task!r} env takes {env_dim}-D actions: closed-loop evaluation needs a policy trained "
                         f"on demos of this env; a policy trained on another file (e.g. a robomimic dataset) is for "
                         f"offline use only")
    keys = getattr(policy, "obs_keys", None)
    spaces = getattr(getattr(env, "observation_space", None), "spaces", None)
    if keys is not None and spaces is not None and (missing := keys.missing(spaces)):
        raise ValueError(f"the policy reads obs {missing} (trained with obs_keys {keys.to_dict()}{origin}) but the "
                         f"{policy.task!r} env observes {sorted(spaces)}")


def _batch(obs: list[dict[str, np.ndarray]], instructions: list[str]) -> dict[str, np.ndarray]:
    batch = {k: np.stack([o[k] for o in obs]) for k in obs[0]}
    batch["instruction"] = np.array(instructions)
    return batch


def evaluate(policy: EvalPolicy, episodes: int, seed_start: int = 0, num_envs: int = 8, max_steps: int | None = None,
             video_episodes: int = 0, progress: bool = True, env_kwargs: Mapping[str, Any] | None = None,
             demo_seeds: Iterable[int] | None = None, split: str = "dev", skip_unread_images: bool = True) -> EvalResult:
    """Roll ``policy`` out for ``episodes`` episodes on the seeds ``robrep.seeds.eval_seeds(episodes, seed_start,
    split)`` (``split``: ``dev`` development layouts, default; ``test`` the held-back test layouts).

    Args:
        policy: see the module docstring; envs are ``make_env(policy.task, **policy.env_kwargs, **env_kwargs)``.
        episodes: number of episodes (>= 1).
        seed_start: offset into the evaluation seed range (same value = same layouts for every policy).
        num_envs: envs stepping together (capped at ``episodes``); each step is one ``policy.act`` on a
            ``(num_envs, ...)`` batch. Envs idle at the end keep their last observation (actions discarded),
            so every batch index stays bound to one env, as the policy's per-env state requires.
        max_steps: optional extra step limit per episode (the env's own time limit always applies).
        video_episodes: keep the observed images of the first this-many episodes (``EvalResult.frames``).
        progress: tqdm bar over episodes.
        env_kwargs: overrides of ``policy.env_kwargs``.
        demo_seeds: the policy's training demo seeds, checked disjoint from the evaluation seeds
            (default: :func:`recorded_demo_seeds`).
        skip_unread_images: where the policy says which observations its next ``act`` reads
            (``policy.observation_needed()``, bool ``(num_envs,)``, e.g. open-loop action chunks) and the env can skip
            rendering (``skip_next_images()``), envs whose next image is not read do not render it. Results are
            identical either way (the skipped images are never read; an idle env at the end pads with an older image,
            its actions discarded); only the time differs.

    An episode ends on termination (success) or truncation (time limit, ``max_steps``); it counts as a
    success if the env reported ``info["success"]`` at any step. Results are reproducible for a fixed
    ``num_envs`` (a policy's batched numerics may depend on the batch size).
    """
    from tqdm.auto import tqdm

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 or None, got {max_steps}")
    seeds = eval_seeds(episodes, seed_start, split)
    known = recorded_demo_seeds(policy) if demo_seeds is None else [int(s) for s in demo_seeds]
    if known is not None:
        check_disjoint(known, seeds)
    kwargs = {**policy.env_kwargs, **(env_kwargs or {})}
    n = min(num_envs, episodes)

    start = time.perf_counter()
    try:
        envs = [make_env(policy.task, **kwargs)]
    except KeyError as exc:  # e.g. a policy trained on a robomimic file: its env_args name a robosuite env
        raise ValueError(f"cannot build the policy's env {policy.task!r}: {exc.args[0]}. Closed-loop evaluation "
                         "needs a robrep env; a policy trained on a file robrep did not write is for offline "
                         "use only") from exc
    envs += [make_env(policy.task, **kwargs) for _ in range(n - 1)]
    try:
        check_policy_env(policy, envs[0])
    except BaseException:
        for env in envs:
            env.close()
        raise
    action_dim = int(envs[0].action_space.shape[-1])
    slot_episode = [-1] * n  # episode index running in each env; -1 = idle
    obs: list[dict[str, np.ndarray]] = [{}] * n
    instructions, lengths, succeeded = [""] * n, [0] * n, [False] * n
    records: dict[int, EpisodeRecord] = {}
    frames: dict[int, list[np.ndarray]] = {}
    next_episode, policy_s = 0, 0.0
    start_episode = getattr(policy, "start_episode", None)
    observation_needed = getattr(policy, "observation_needed", None) if skip_unread_images else None
    skippers = [getattr(env.unwrapped, "skip_next_images", None) for env in envs]

    def begin(i: int) -> None:
        nonlocal next_episode
        ep, next_episode = next_episode, next_episode + 1
        o, info = envs[i].reset(seed=seeds[ep])
        slot_episode[i], obs[i], lengths[i] = ep, o, 0
        instructions[i], succeeded[i] = str(info.get("instruction", "")), bool(info.get("success", False))
        if start_episode is not None:
            start_episode(i, seeds[ep])
        if ep < video_episodes:
            frames[ep] = [o["image"]]

    bar = tqdm(total=episodes, desc=f"eval {policy.task}", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for i in range(n):
            begin(i)
        policy.reset(n)
        while any(ep >= 0 for ep in slot_episode):
            t = time.perf_counter()
            actions = np.asarray(policy.act(_batch(obs, instructions)), dtype=np.float32)
            policy_s += time.perf_counter() - t
            failpoint("eval.step")
            if actions.shape != (n, action_dim):
                raise ValueError(f"policy.act returned shape {actions.shape} for {n} observations, "
                                 f"expected ({n}, {action_dim})")
            needed = None if observation_needed is None else observation_needed()
            for i, ep in enumerate(slot_episode):
                if ep < 0:
                    continue
                if needed is not None and not needed[i] and skippers[i] is not None and ep not in frames:
                    skippers[i]()  # the next act does not read this env's image
                o, _, terminated, truncated, info = envs[i].step(actions[i])
                obs[i], lengths[i] = o, lengths[i] + 1
                succeeded[i] = succeeded[i] or bool(info.get("success", False))
                if ep in frames:
                    frames[ep].append(o["image"])
                if not (terminated or truncated or (max_steps is not None and lengths[i] >= max_steps)):
                    continue
                records[ep] = EpisodeRecord(ep, seeds[ep], succeeded[i], lengths[i])
                bar.update(1)
                bar.set_postfix(success=f"{sum(r.success for r in records.values())}/{len(records)}")
                if next_episode < episodes:
                    begin(i)
                    policy.reset_env(i)
                else:
                    slot_episode[i] = -1  # idle: keeps its last observation as padding
    finally:
        bar.close()
        for env in envs:
            env.close()
    return EvalResult(task=policy.task, env_kwargs=kwargs, seed_start=int(seed_start),
                      records=[records[i] for i in range(episodes)], wall_s=time.perf_counter() - start,
                      policy_s=policy_s, num_envs=n, max_steps=max_steps,
                      demo_seeds_checked=None if known is None else len(known),
                      frames=[np.stack(frames[i]) for i in sorted(frames)])
