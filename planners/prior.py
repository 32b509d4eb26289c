"""A policy prior for CEM: a trained BC policy proposes the first macro-actions of every plan.

Sampling-based planners with a learned model lose to model error wherever the search wanders off the data the
model was trained on. TD-MPC-style planners therefore start the search from a policy's proposal. Here the
proposal is a robrep BC policy (:func:`policies.policy.load_policy`): at each replanning call it predicts, from the
current frame alone, its action chunk ``(k, A)`` (:meth:`policies.policy.Policy.predict_chunks`). The planner's
macro-actions (each held ``action_repeat`` env steps) become residuals on that chunk: the first ``⌈k / repeat⌉``
macro-actions of the initial mean are the chunk's means over their env steps, the rest keep the warm start, and a
candidate's env step ``t`` executes the chunk's own action at ``t`` plus its macro-action's deviation from that
mean (:meth:`planners.mpc.MPCPlanner._plan`; the world model is fed the same step actions). CEM samples around the
proposal with ``prior_std``, scores every candidate with its usual cost plus ``prior_weight`` times the mean squared
deviation from the proposal, and the proposal itself is always candidate 0: the chunk exactly as the policy would
execute it open loop — so with a positive weight and a cost that cannot tell candidates apart the planner returns
the policy's chunk.

Reported beside the same policy acting alone on the same layouts, seed by seed (``benchmarks/prior_planner.py``),
so a result says whether planning added to the policy or only inherited it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


def pad_chunks(chunks: np.ndarray, repeat: int) -> np.ndarray:
    """Action chunks ``(B, k, A)`` (one action per env step) → ``(B, m · repeat, A)``, ``m = ⌈k / repeat⌉``:
    padded with each chunk's last action to whole macro-actions."""
    chunks = np.asarray(chunks, dtype=np.float32)
    pad = math.ceil(chunks.shape[1] / int(repeat)) * int(repeat) - chunks.shape[1]
    return np.concatenate([chunks, np.repeat(chunks[:, -1:], pad, axis=1)], axis=1) if pad else chunks


def chunk_to_macros(chunks: np.ndarray, repeat: int) -> np.ndarray:
    """Action chunks ``(B, k, A)`` → macro-actions ``(B, ⌈k / repeat⌉, A)``: the mean of each run of ``repeat``
    consecutive env steps of :func:`pad_chunks`."""
    steps = pad_chunks(chunks, repeat)
    b, n, a = steps.shape
    return steps.reshape(b, n // int(repeat), int(repeat), a).mean(axis=2)


class PolicyPrior:
    """A BC policy as the proposal of a :class:`planners.mpc.MPCPlanner` (see the module docstring).

    ``policy`` is a loaded :class:`policies.policy.Policy` (``frame_stack`` 1) — or anything with its
    ``predict_chunks(obs) -> (B, k, A)``; planners never import policies, the caller loads it (``robrep plan`` does,
    from ``planner.prior``); ``std`` the CEM standard deviation on the proposed macro-actions (action units);
    ``weight`` the cost per unit of mean squared deviation from them; ``path`` names the policy in tables.
    """

    def __init__(self, policy: Any, std: float = 0.2, weight: float = 0.0, path: str = "") -> None:
        if std <= 0 or weight < 0:
            raise ValueError(f"prior std must be > 0 and weight >= 0, got std={std}, weight={weight}")
        self.policy, self.std, self.weight, self.path = policy, float(std), float(weight), str(path)

    def check_env(self, task: str, env_kwargs: Mapping[str, Any] | None = None) -> None:
        """Refuse a policy trained on another task or image size than the planner's env."""
        if getattr(self.policy, "task", task) != task:
            raise ValueError(f"prior policy {self.path} was trained on task {self.policy.task!r}, the planner acts in "
                             f"{task!r}")
        size = (env_kwargs or {}).get("image_size")
        seen = dict(getattr(self.policy, "env_kwargs", {}) or {}).get("image_size", size)
        if size is not None and list(np.atleast_1d(seen)) != list(np.atleast_1d(size)):
            raise ValueError(f"prior policy {self.path} saw images of {seen}, the planner's env renders {size}")

    def propose(self, obs: Mapping[str, np.ndarray], envs: list[int], repeat: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The proposal for envs ``envs`` from the batched observations ``obs``: its env-step actions float32
        ``(b, m · repeat, A)`` (the chunk, padded with its last action) and their macro-actions ``(b, m, A)``,
        ``m = ⌈k / repeat⌉`` (:func:`chunk_to_macros`)."""
        def rows(value: Any) -> Any:
            if isinstance(value, np.ndarray) and value.ndim:
                return value[envs]
            return [value[i] for i in envs] if isinstance(value, (list, tuple)) else value

        sub = {key: rows(value) for key, value in obs.items()}
        steps = pad_chunks(self.policy.predict_chunks(sub), repeat)
        return torch.from_numpy(steps), torch.from_numpy(chunk_to_macros(steps, repeat))

    def describe(self) -> str:
        """One line for tables: which policy, std and weight."""
        return f"{Path(self.path).name} std={self.std:g} weight={self.weight:g}"
