"""Trainable readouts: frozen tokens → a policy-input vector.

Every readout maps (``tokens (B, N, D)``, ``grid (h, w)``, ``global_token (B, D) | None``) to
``(B, output_dim)``. Pick one by name with :func:`make_readout` (``configs/policy`` names them).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robrep.encoders.base import SpatialFeatures


class Readout(nn.Module):
    """Base: ``forward(features) -> (B, output_dim)``."""

    output_dim: int

    def forward(self, features: SpatialFeatures) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ClsReadout(Readout):
    """The encoder's global/class token, ``(B, D)``."""

    def __init__(self, feature_dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.output_dim = feature_dim

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        if features.global_token is None:
            raise ValueError("the 'cls' readout needs a global token, but this encoder has none; "
                             "use 'mean', 'spatial_softmax' or 'attention'")
        return features.global_token


class MeanReadout(Readout):
    """Average over the N spatial tokens, ``(B, D)``."""

    def __init__(self, feature_dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.output_dim = feature_dim

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        return features.tokens.mean(dim=1)


class SpatialSoftmaxReadout(Readout):
    """robomimic-style keypoints: 1×1 conv to K heat maps, softmax over the grid, expected (x, y).

    Output ``(B, 2K)``: for each keypoint its expected x then y in [-1, 1] image coordinates
    (x right, y down; grid cell centres).
    """

    def __init__(self, feature_dim: int, grid: tuple[int, int], num_keypoints: int = 32,
                 learnable_temperature: bool = True) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.proj = nn.Conv2d(feature_dim, num_keypoints, kernel_size=1)
        self.log_temperature = nn.Parameter(torch.zeros(()), requires_grad=learnable_temperature)
        h, w = self.grid
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("coords", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1), persistent=False)
        self.output_dim = 2 * num_keypoints

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        heat = self.proj(features.as_map()).flatten(2)  # (B, K, N)
        attn = F.softmax(heat / self.log_temperature.exp(), dim=-1)
        return (attn @ self.coords.to(attn.dtype)).flatten(1)  # (B, K*2)


class AttentionPoolReadout(Readout):
    """Learned multi-head attention pooling (a learned query attends over the tokens, then an MLP),
    as Voltron's MAP head. Output ``(B, D)``."""

    def __init__(self, feature_dim: int, grid: tuple[int, int], num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        heads = num_heads if feature_dim % num_heads == 0 else 1
        self.query = nn.Parameter(torch.randn(1, 1, feature_dim) * 0.02)
        self.norm = nn.LayerNorm(feature_dim)
        self.attn = nn.MultiheadAttention(feature_dim, heads, batch_first=True)
        hidden = int(feature_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, feature_dim))
        self.output_dim = feature_dim

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        tokens = self.norm(features.tokens)
        q = self.query.expand(tokens.shape[0], -1, -1)
        pooled = self.attn(q, tokens, tokens, need_weights=False)[0][:, 0]
        return pooled + self.mlp(pooled)


READOUTS: dict[str, Callable[..., Readout]] = {
    "cls": ClsReadout,
    "mean": MeanReadout,
    "spatial_softmax": SpatialSoftmaxReadout,
    "attention": AttentionPoolReadout,
}


def make_readout(name: str, feature_dim: int, grid: tuple[int, int], **kwargs) -> Readout:
    """Readout ``name`` for tokens of width ``feature_dim`` on ``grid``."""
    if name not in READOUTS:
        raise KeyError(f"unknown readout {name!r}; known: {sorted(READOUTS)}")
    return READOUTS[name](feature_dim, tuple(grid), **kwargs)
