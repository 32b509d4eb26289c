"""Per-dimension standardisation with statistics of the training frames, stored as module buffers
(so they travel inside the policy's state dict and checkpoint)."""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """``normalize(x) = (x - mean) / std`` over the last axis; ``unnormalize`` inverts it.

    ``mean`` and ``std`` are ``(D,)`` in the units of ``x`` (metres for proprio, action units for
    actions). ``std`` is floored at ``min_std`` when fitted, so a constant dimension (e.g. a gripper
    that never opens in the training demos) maps to 0 instead of dividing by zero.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @classmethod
    def fit(cls, x: torch.Tensor, min_std: float = 1e-2) -> "Normalizer":
        """Statistics of ``x (F, D)`` (float, any units); ``std`` clamped below at ``min_std``."""
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"Normalizer.fit needs a non-empty (F, D) tensor, got shape {tuple(x.shape)}")
        norm = cls(x.shape[1])
        x = x.double()
        norm.mean.copy_(x.mean(0).float())
        norm.std.copy_(x.std(0, unbiased=False).clamp_min(min_std).float())
        return norm

    @property
    def dim(self) -> int:
        return int(self.mean.numel())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` raw → standardised."""
        return (x - self.mean) / self.std

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` standardised → raw units."""
        return y * self.std + self.mean

    def stats(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` as plain lists (for checkpoints and logs)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}
