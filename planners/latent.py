"""Planner latents: frozen encoder tokens (+ proprio) → the state the transition model predicts.

:class:`LatentMap` average-pools the tokens ``(B, N, D)`` on their grid to ``grid × grid`` cells, projects
every cell on the top ``dim`` principal components of the training tokens, standardises each channel, and

* ``kind="pooled"`` flattens the cells: ``(B, grid²·dim [+ P])`` (proprio appended, standardised), the
  input of :class:`planners.dynamics.PooledMLP`;
* ``kind="tokens"`` keeps them: ``(B, grid² [+ 1], dim)`` (proprio as one extra token, zero-padded to ``dim``),
  the input of :class:`planners.dynamics.TokenPredictor` (DINO-WM-style patch-token world model).

Every statistic is fitted once on training frames (:meth:`LatentMap.fit`) and saved with the model, so the
cost ``‖z − z_goal‖²`` weighs channels comparably and a checkpoint plans exactly as it was trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("pooled", "tokens")


class LatentMap(nn.Module):
    """Fitted, frozen map from ``tokens (B, N, D)`` on ``grid_in (h, w)`` and ``proprio (B, P)`` to latents."""

    def __init__(self, kind: str, feature_dim: int, grid_in: tuple[int, int], proprio_dim: int, grid: int = 3,
                 dim: int = 16, use_proprio: bool = True) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"latent kind must be one of {KINDS}, got {kind!r}")
        if dim > feature_dim or grid < 1 or min(grid_in) < grid:
            raise ValueError(f"need dim <= feature_dim ({feature_dim}) and 1 <= grid <= {min(grid_in)}; got dim "
                             f"{dim}, grid {grid}")
        if kind == "tokens" and use_proprio and proprio_dim > dim:
            raise ValueError(f"a proprio token needs proprio_dim ({proprio_dim}) <= dim ({dim})")
        self.kind, self.grid, self.dim, self.use_proprio = kind, int(grid), int(dim), bool(use_proprio)
        self.grid_in, self.proprio_dim = (int(grid_in[0]), int(grid_in[1])), int(proprio_dim)
        self.register_buffer("token_mean", torch.zeros(feature_dim))
        self.register_buffer("components", torch.eye(feature_dim)[:, :dim].clone())  # (D, dim)
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.register_buffer("fitted", torch.tensor(False))

    def config(self) -> dict:
        return {"kind": self.kind, "feature_dim": int(self.token_mean.numel()), "grid_in": list(self.grid_in),
                "proprio_dim": self.proprio_dim, "grid": self.grid, "dim": self.dim, "use_proprio": self.use_proprio}

    @property
    def shape(self) -> tuple[int, ...]:
        """One latent's shape: ``(L,)`` for pooled, ``(T, dim)`` for tokens."""
        cells = self.grid * self.grid
        extra = int(self.use_proprio)
        if self.kind == "pooled":
            return (cells * self.dim + extra * self.proprio_dim,)
        return (cells + extra, self.dim)

    def cells(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` → pooled cells ``(B, grid², D)``."""
        b, n, d = tokens.shape
        fmap = tokens.float().transpose(1, 2).reshape(b, d, *self.grid_in)
        return F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)

    @torch.no_grad()
    def fit(self, cells: torch.Tensor, proprio: torch.Tensor) -> "LatentMap":
        """Fit the PCA and the standardisation on training frames: pooled ``cells (F, grid², D)`` (from
        :meth:`cells`) and ``proprio (F, P)``."""
        cells = cells.float().reshape(-1, cells.shape[-1])  # (F·g², D)
        mean = cells.mean(0)
        _, _, v = torch.linalg.svd(cells - mean, full_matrices=False)
        comps = v[: self.dim].T  # (D, dim)
        proj = (cells - mean) @ comps
        self.token_mean.copy_(mean)
        self.components.copy_(comps)
        self.scale.copy_(proj.std(0).clamp_min(1e-6))
        p = proprio.float()
        self.proprio_mean.copy_(p.mean(0))
        self.proprio_std.copy_(p.std(0).clamp_min(1e-3))
        self.fitted.fill_(True)
        return self

    def forward(self, tokens: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """``tokens (B, N, D)``, ``proprio (B, P)`` → latents ``(B, *self.shape)``."""
        return self.map_cells(self.cells(tokens), proprio)

    def distance(self, z: torch.Tensor, goal: torch.Tensor, proprio_weight: float = 1.0) -> torch.Tensor:
        """Squared distance of latents ``z (..., *S)`` to ``goal`` (broadcastable) → ``(...)``: the mean over the
        image channels, plus — when the latent holds proprio — ``proprio_weight`` × the mean over the proprio
        channels. Each part is averaged on its own, so the handful of proprio channels is not drowned by the image's
        (``grid² · dim`` of them); ``proprio_weight`` 0 is the image alone."""
        d = (z - goal) ** 2
        n = len(self.shape)
        if not self.use_proprio:
            return d.flatten(-n).mean(-1)
        if self.kind == "pooled":
            cut = self.grid * self.grid * self.dim
            image, proprio = d[..., :cut], d[..., cut:]
        else:
            image, proprio = d[..., :-1, :], d[..., -1, : self.proprio_dim]
        return image.flatten(-n).mean(-1) + float(proprio_weight) * proprio.mean(-1)

    def map_cells(self, cells: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Pooled ``cells (B, grid², D)``, ``proprio (B, P)`` → latents ``(B, *self.shape)``."""
        if not bool(self.fitted):
            raise RuntimeError("LatentMap.fit must run on training frames before it maps anything")
        z = (cells.float() - self.token_mean) @ self.components / self.scale  # (B, g², dim)
        p = (proprio.float() - self.proprio_mean) / self.proprio_std  # (B, P)
        if self.kind == "pooled":
            return torch.cat([z.flatten(1), p], dim=1) if self.use_proprio else z.flatten(1)
        if not self.use_proprio:
            return z
        return torch.cat([z, F.pad(p, (0, self.dim - p.shape[1]))[:, None]], dim=1)
