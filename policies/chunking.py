"""Temporal ensembling of action chunks, as in ACT (Zhao et al., 2023).

At every step the policy predicts the next ``k`` actions. The action executed at step ``t`` averages
every prediction made for ``t`` by the chunks of steps ``t-k+1 .. t`` with weights ``exp(-m·i)``,
``i = 0`` for the oldest prediction (so ``m > 0`` favours older predictions, ACT's choice; ``m = 0``
is a plain mean). With ``k = 1`` it returns the current prediction unchanged. State is per env.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class TemporalEnsembler:
    """Per-env history of the last ``chunk`` predicted chunks ``(num_envs, k, k, A)``. NumPy only, so a deployed
    controller (``examples/robot_loop.py``'s ONNX one) ensembles without importing torch; ``Policy.act`` passes its
    torch chunks, which are read as float32 arrays."""

    def __init__(self, chunk: int, action_dim: int, decay: float = 0.01) -> None:
        self.chunk, self.action_dim, self.decay = int(chunk), int(action_dim), float(decay)
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        """Forget every env's history (``num_envs`` envs from now on)."""
        self.history = np.zeros((num_envs, self.chunk, self.chunk, self.action_dim), np.float32)  # [:, j]: j steps ago
        self.count = np.zeros(num_envs, dtype=np.int64)  # chunks seen since reset, capped at k

    def reset_env(self, i: int) -> None:
        """Forget env ``i``'s history only."""
        self.count[i] = 0

    @property
    def num_envs(self) -> int:
        return len(self.count)

    def __call__(self, chunks: Any) -> np.ndarray:
        """Record this step's chunks ``(num_envs, k, A)`` (array or CPU/GPU tensor); return the actions to execute
        ``(num_envs, A)`` float32."""
        if hasattr(chunks, "detach"):  # a torch tensor
            chunks = chunks.detach().float().cpu().numpy()
        chunks = np.asarray(chunks, np.float32)
        if chunks.shape != (self.num_envs, self.chunk, self.action_dim):
            raise ValueError(f"expected chunks of shape {(self.num_envs, self.chunk, self.action_dim)}, "
                             f"got {tuple(chunks.shape)}")
        self.history = np.roll(self.history, 1, axis=1)
        self.history[:, 0] = chunks
        self.count = np.minimum(self.count + 1, self.chunk)
        j = np.arange(self.chunk)
        preds = self.history[:, j, j]  # (E, k, A): the prediction for now made j steps ago
        valid = j[None] < self.count[:, None]  # (E, k)
        rank = np.maximum(self.count[:, None] - 1 - j[None], 0)  # 0 = oldest valid prediction
        w = (np.exp(-self.decay * rank) * valid).astype(np.float32)
        return ((w[..., None] * preds).sum(1) / w.sum(1, keepdims=True)).astype(np.float32)
