"""A learned progress (reward) model on planner latents: ``z (B, *S)`` → predicted steps-to-go ``(B,)``.

Trained on expert demos (:func:`planners.fit.fit_progress`), where the steps left to the episode's end are known
for every frame; the planner descends it on imagined latents (``planner.cost: progress``) instead of, or next to,
the distance to a goal image's latent. Predictions are in env steps (the target is scaled by ``scale`` inside).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class ProgressModel(nn.Module):
    """MLP from a flattened latent ``(B, *S)`` to steps-to-go ``(B,)`` (env steps, ≥ 0 by a softplus)."""

    def __init__(self, latent_shape: tuple[int, ...], hidden: int = 256, layers: int = 2, scale: float = 100.0
                 ) -> None:
        super().__init__()
        width, mods = math.prod(latent_shape), []
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)
        self.scale = float(scale)
        self.config: dict[str, Any] = {"latent_shape": list(latent_shape), "hidden": int(hidden),
                                       "layers": int(layers), "scale": self.scale}

    def normalised(self, z: torch.Tensor) -> torch.Tensor:
        """Steps-to-go / ``scale``, ``(B,)`` (the training target's units)."""
        return nn.functional.softplus(self.net(z.flatten(1).float())).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted steps-to-go in env steps, ``(B,)``."""
        return self.normalised(z) * self.scale
