"""Readouts: frozen tokens → one vector per frame, in one vocabulary shared by policies and state probes.

:data:`READOUT_VOCABULARY` names every readout once with its meaning. A policy head trains its readout with
the head (:data:`POLICY_READOUTS`, built by :func:`make_readout`; ``configs/policy`` and
``configs/encoder`` name them); the state probe (:mod:`robrep.probe.state_probe`) reads the same names
parameter-free (:data:`PROBE_READOUTS`; ``configs/probe.yaml``). A name outside the vocabulary is an
:class:`UnknownReadoutError` listing it, wherever it is given.

Every policy readout maps (``tokens (B, N, D)``, ``grid (h, w)``, ``global_token (B, D) | None``) to
``(B, output_dim)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robrep.encoders.base import SpatialFeatures

#: The readout vocabulary: name → what it reads out of a token map ``(N, D)`` on an ``h × w`` grid.
READOUT_VOCABULARY: dict[str, str] = {
    "cls": "the encoder's class/global token, (D,)",
    "mean": "the average of the N spatial tokens, (D,)",
    "flat": "the token map average-pooled (adaptive) to at most cells x cells, flattened cell-major, (cells²·D,)",
    "spatial_softmax": "K heat maps over the grid (a learned 1x1 conv in a policy, the top-K token PCs in the "
                       "probe), each softmaxed, their expected (x, y) in [-1, 1], (2K,)",
    "attention": "a learned query attends over the tokens, then an MLP (Voltron's MAP head), (D,)",
}
READOUT_NAMES: tuple[str, ...] = tuple(READOUT_VOCABULARY)
#: Trainable readouts: a policy head's input, built by :func:`make_readout` and trained with the head
#: (``cls``, ``mean`` and ``flat`` have no parameters of their own).
POLICY_READOUTS: tuple[str, ...] = ("cls", "mean", "flat", "spatial_softmax", "attention")
#: Parameter-free readouts of the state probe (``spatial_softmax`` on fixed token PCs, nothing learned).
PROBE_READOUTS: tuple[str, ...] = ("cls", "mean", "flat", "spatial_softmax")
#: Readouts whose output depends on where each token sits on the grid (the probe gate's "spatial" readouts).
SPATIAL_READOUTS: tuple[str, ...] = ("flat", "spatial_softmax")


class UnknownReadoutError(ValueError):
    """A readout name outside :data:`READOUT_NAMES`."""


def check_readout(name: str, supported: Sequence[str] = READOUT_NAMES, user: str = "") -> str:
    """``name`` if it is in the vocabulary and in ``supported`` (the readouts ``user`` offers), else an error:
    :class:`UnknownReadoutError` listing the vocabulary, or ``ValueError`` naming what ``user`` supports."""
    if name not in READOUT_VOCABULARY:
        listing = "; ".join(f"{k}: {v}" for k, v in READOUT_VOCABULARY.items())
        raise UnknownReadoutError(f"unknown readout {name!r}; the readout vocabulary (robrep.readouts) is "
                                  f"{', '.join(READOUT_NAMES)} ({listing})")
    if name not in supported:
        raise ValueError(f"readout {name!r} is not available{f' for {user}' if user else ''}; "
                         f"available: {', '.join(supported)}")
    return name


def check_readouts(names: Iterable[str], supported: Sequence[str] = READOUT_NAMES, user: str = "") -> list[str]:
    """:func:`check_readout` of every name; returns them as a list."""
    return [check_readout(str(n), supported, user) for n in names]


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int], max_cells: int) -> torch.Tensor:
    """``(B, h·w, D)`` → ``(B, h'·w', D)`` average-pooled (adaptive) to at most ``max_cells`` per side
    (``h' = min(h, max_cells)``), cells row-major: the ``flat`` readout before flattening."""
    b, _, d = tokens.shape
    fmap = tokens.transpose(1, 2).reshape(b, d, *grid)
    out = F.adaptive_avg_pool2d(fmap, (min(grid[0], max_cells), min(grid[1], max_cells)))
    return out.flatten(2).transpose(1, 2)


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
                             "use 'mean', 'flat', 'spatial_softmax' or 'attention'")
        return features.global_token


class MeanReadout(Readout):
    """Average over the N spatial tokens, ``(B, D)``."""

    def __init__(self, feature_dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.output_dim = feature_dim

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        return features.tokens.mean(dim=1)


class FlatReadout(Readout):
    """The token map average-pooled (adaptive) to at most ``cells`` × ``cells`` and flattened cell-major:
    ``(B, N, D)`` → ``(B, h'·w'·D)``, ``h' = min(h, cells)`` (``cells²·D`` when the grid is at least that
    fine). No parameters of its own; the probe's ``flat`` is the same pooling (:func:`pool_tokens`)."""

    def __init__(self, feature_dim: int, grid: tuple[int, int], cells: int = 6) -> None:
        super().__init__()
        if cells < 1:
            raise ValueError(f"the 'flat' readout needs cells >= 1, got {cells}")
        self.grid, self.cells = (int(grid[0]), int(grid[1])), int(cells)
        self.output_dim = min(self.grid[0], self.cells) * min(self.grid[1], self.cells) * feature_dim

    def forward(self, features: SpatialFeatures) -> torch.Tensor:
        return pool_tokens(features.tokens, tuple(features.grid), self.cells).flatten(1)


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
        # the 1x1 conv as one matmul over the token rows (B, N, D) @ (D, K): the same map, no (B, D, h, w) copy
        heat = F.linear(features.tokens, self.proj.weight.flatten(1), self.proj.bias).transpose(1, 2)  # (B, K, N)
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


#: The trainable readout classes, by name (keys = :data:`POLICY_READOUTS`).
READOUTS: dict[str, Callable[..., Readout]] = {
    "cls": ClsReadout,
    "mean": MeanReadout,
    "flat": FlatReadout,
    "spatial_softmax": SpatialSoftmaxReadout,
    "attention": AttentionPoolReadout,
}


def make_readout(name: str, feature_dim: int, grid: tuple[int, int], **kwargs) -> Readout:
    """Policy readout ``name`` (:data:`POLICY_READOUTS`) for tokens of width ``feature_dim`` on ``grid``."""
    check_readout(name, POLICY_READOUTS, "a policy")
    return READOUTS[name](feature_dim, tuple(grid), **kwargs)
