"""Temporal ensembling of action chunks, as in ACT (Zhao et al., 2023).

At every step the policy predicts the next ``k`` actions. The action executed at step ``t`` averages
every prediction made for ``t`` by the chunks of steps ``t-k+1 .. t`` with weights ``exp(-m·i)``,
``i = 0`` for the oldest prediction (so ``m > 0`` favours older predictions, ACT's choice; ``m = 0``
is a plain mean). With ``k = 1`` it returns the current prediction unchanged. State is per env.
"""

from __future__ import annotations

import torch


class TemporalEnsembler:
    """Per-env history of the last ``chunk`` predicted chunks ``(num_envs, k, k, A)``."""

    def __init__(self, chunk: int, action_dim: int, decay: float = 0.01) -> None:
        self.chunk, self.action_dim, self.decay = int(chunk), int(action_dim), float(decay)
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        """Forget every env's history (``num_envs`` envs from now on)."""
        self.history = torch.zeros(num_envs, self.chunk, self.chunk, self.action_dim)  # [:, j] = chunk of j steps ago
        self.count = torch.zeros(num_envs, dtype=torch.long)  # chunks seen since reset, capped at k

    def reset_env(self, i: int) -> None:
        """Forget env ``i``'s history only."""
        self.count[i] = 0

    @property
    def num_envs(self) -> int:
        return len(self.count)

    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        """Record this step's chunks ``(num_envs, k, A)``; return the actions to execute ``(num_envs, A)``."""
        if chunks.shape != (self.num_envs, self.chunk, self.action_dim):
            raise ValueError(f"expected chunks of shape {(self.num_envs, self.chunk, self.action_dim)}, "
                             f"got {tuple(chunks.shape)}")
        chunks = chunks.detach().to("cpu", torch.float32)
        self.history = torch.roll(self.history, 1, dims=1)
        self.history[:, 0] = chunks
        self.count = (self.count + 1).clamp(max=self.chunk)
        j = torch.arange(self.chunk)
        preds = self.history[:, j, j]  # (E, k, A): the prediction for now made j steps ago
        valid = j[None] < self.count[:, None]  # (E, k)
        rank = (self.count[:, None] - 1 - j[None]).clamp(min=0)  # 0 = oldest valid prediction
        w = torch.exp(-self.decay * rank.float()) * valid
        return (w[..., None] * preds).sum(1) / w.sum(1, keepdim=True)
