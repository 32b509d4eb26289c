"""Per-frame trunks: one frame's inputs → a vector ``(B, output_dim)`` for the head.

A trunk takes a dict of per-frame tensors (its ``input_keys``) with a leading batch axis ``B``:

* :class:`FeatureTrunk` — frozen-encoder features ``tokens (B, N, D)`` (+ ``global_token (B, D)``),
  from the feature cache at training time and from the encoder at execution time, through a
  trainable :mod:`robrep.readouts` readout, with optional token dropout during training;
* :class:`policies.cnn.ConvTrunk` — raw ``image`` uint8 ``(B, H, W, 3)``, a CNN trained end to end;
* :class:`policies.finetune.FinetuneTrunk` — raw ``image``, the pretrained encoder with its last blocks
  fine-tuned, then the :class:`FeatureTrunk` readout;
* :class:`NullTrunk` — no perception: the frame vector is the proprio (and instruction) alone. With
  ``obs_keys.proprio=[state]`` it is the privileged-state oracle (the simulator's object positions in place of
  vision: what N demos teach with perfect perception).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from robrep.encoders.base import SpatialFeatures
from robrep.readouts import SPATIAL_READOUTS, make_readout

#: Readouts whose output depends on where each token sits on the grid (dropped tokens are zeroed);
#: the others are permutation-invariant pools (dropped tokens are removed).
GRID_READOUTS = frozenset(SPATIAL_READOUTS)


def drop_tokens(tokens: torch.Tensor, p: float, keep_grid: bool) -> torch.Tensor:
    """Randomly drop a fraction ``p`` of the N spatial tokens of every sample (``tokens (B, N, D)``).

    ``keep_grid``: zero the dropped tokens (shape kept); else return the kept ones ``(B, N', D)``,
    ``N' = max(1, round((1 - p) · N))``, in their original order.
    """
    b, n, _ = tokens.shape
    n_keep = max(1, int(round((1.0 - p) * n)))
    if n_keep >= n:
        return tokens
    keep = torch.rand(b, n, device=tokens.device).argsort(dim=1)[:, :n_keep].sort(dim=1).values
    if keep_grid:
        mask = torch.zeros(b, n, 1, device=tokens.device, dtype=tokens.dtype)
        mask.scatter_(1, keep[..., None], 1.0)
        return tokens * mask
    return tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[2]))


class FeatureTrunk(nn.Module):
    """Readout of frozen features: ``{"tokens": (B, N, D), "global_token": (B, D)?}`` → ``(B, R)``.

    Tokens may arrive as float16 (the cache's dtype); they are computed in float32.
    ``token_dropout`` (training only) drops that fraction of the spatial tokens of each sample.
    """

    input_keys = ("tokens", "global_token")

    def __init__(self, feature_dim: int, grid: tuple[int, int], readout: str,
                 readout_kwargs: Mapping[str, Any] | None = None, token_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= token_dropout < 1.0:
            raise ValueError(f"token_dropout must be in [0, 1), got {token_dropout}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.readout_name = readout
        self.readout = make_readout(readout, feature_dim, self.grid, **dict(readout_kwargs or {}))
        self.token_dropout = float(token_dropout)
        self.output_dim = int(self.readout.output_dim)

    def forward(self, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        tokens = frames["tokens"].float()
        glob = frames.get("global_token")
        glob = None if glob is None else glob.float()
        grid = self.grid
        if self.training and self.token_dropout > 0:
            keep_grid = self.readout_name in GRID_READOUTS
            tokens = drop_tokens(tokens, self.token_dropout, keep_grid)
            grid = grid if keep_grid else (1, tokens.shape[1])
        return self.readout(SpatialFeatures(tokens, grid, glob))


class NullTrunk(nn.Module):
    """No per-frame input and an empty output: the head sees only the normalised proprio (+ instruction)
    (:meth:`policies.model.BCModel.frame_vectors` does not call a trunk whose ``output_dim`` is 0)."""

    input_keys: tuple[str, ...] = ()
    output_dim = 0

    def forward(self, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("NullTrunk has no output; BCModel uses the proprio alone")
