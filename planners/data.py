"""Transitions for the latent world model, read from feature caches (the encoder never runs here).

:func:`load_cells` reads episodes of demo/play files and their feature caches (tokens ``(T, N, D)``,
pooled at once to ``(T, grid², D)`` cells to keep memory small) with proprio ``(T, P)`` and actions
``(T, A)``. :class:`Transitions` holds the mapped latents of many episodes laid end to end and serves
H-step windows: ``obs[t]`` is observed before ``actions[t]``, so a window from frame ``t`` has targets
``z_{t+1} … z_{t+H}`` wherever they stay inside the episode (a ``mask`` marks the valid steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from planners.latent import LatentMap
from robrep.data.demo_file import DemoFile
from robrep.data.feature_cache import FeatureCache


@dataclass
class EpisodeCells:
    """Episodes laid end to end: ``cells (F, g², D)``, ``proprio (F, P)``, ``actions (F, A)``, ``lengths``, and the
    privileged ``state (F, D_s)`` where every episode recorded it (training labels only: a reward model's targets)."""

    cells: torch.Tensor
    proprio: torch.Tensor
    actions: torch.Tensor
    lengths: list[int]
    state: torch.Tensor | None = None


def valid_split(demo_path: str | Path) -> dict[str, list[str]]:
    """``{"valid": the file's mask/valid episodes, "train": every other episode}``: the world model's split of a demo
    or play file (its transition model and reward train on ``train``; diagnostics read ``valid``)."""
    with DemoFile(demo_path) as f:
        valid = f.demo_names("valid")
        return {"valid": valid, "train": [n for n in f.demo_names() if n not in set(valid)]}


def load_cells(demo_path: str, cache: FeatureCache, names: Sequence[str], latent: LatentMap) -> EpisodeCells:
    """The episodes ``names`` of ``demo_path`` with their cached features pooled by ``latent.cells``."""
    if not names:
        raise ValueError(f"no episodes to load from {demo_path}")
    cells, proprio, actions, lengths, state = [], [], [], [], []
    with DemoFile(demo_path) as demos:
        for name in names:
            ep = demos.episode(name)
            tokens = cache.features(name).tokens
            if len(tokens) != len(ep["actions"]):
                raise ValueError(f"{cache.path} has {len(tokens)} frames of {name}, {demo_path} has "
                                 f"{len(ep['actions'])}: the cache belongs to another file")
            cells.append(latent.cells(tokens))
            proprio.append(torch.from_numpy(ep["obs"]["proprio"]).float())
            actions.append(torch.from_numpy(ep["actions"]).float())
            lengths.append(len(tokens))
            if "state" in ep["obs"]:
                state.append(torch.from_numpy(np.asarray(ep["obs"]["state"])).float())
    return EpisodeCells(torch.cat(cells), torch.cat(proprio), torch.cat(actions), lengths,
                        torch.cat(state) if len(state) == len(names) else None)


def concat(parts: Sequence[EpisodeCells]) -> EpisodeCells:
    states = [p.state for p in parts]
    return EpisodeCells(torch.cat([p.cells for p in parts]), torch.cat([p.proprio for p in parts]),
                        torch.cat([p.actions for p in parts]), [n for p in parts for n in p.lengths],
                        torch.cat(states) if all(s is not None for s in states) else None)


@dataclass
class Transitions:
    """``latents (F, *S)``, ``actions (F, A)`` and ``last (F,)`` = index of each frame's episode's last frame.

    ``frameskip`` r: one model step spans r env steps (DINO-WM's frameskip) — a window's step h goes from frame
    ``t + h r`` to ``t + (h + 1) r`` under the r actions between them, concatenated to ``(r · A,)``.
    """

    latents: torch.Tensor
    actions: torch.Tensor
    last: torch.Tensor
    frameskip: int = 1
    history: int = 1  # latents per model input (the start frame and the history-1 before it, frameskip apart)

    @staticmethod
    def from_cells(data: EpisodeCells, latent: LatentMap, frameskip: int = 1, history: int = 1) -> "Transitions":
        with torch.no_grad():
            z = latent.map_cells(data.cells, data.proprio)
        ends = np.cumsum(data.lengths) - 1
        last = torch.from_numpy(np.repeat(ends, data.lengths)).long()
        return Transitions(z, data.actions, last, int(frameskip), int(history))

    @property
    def first(self) -> torch.Tensor:
        """Index of each frame's episode's first frame ``(F,)``."""
        ends = torch.unique_consecutive(self.last)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1] + 1])
        return starts.repeat_interleave(ends - starts + 1)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def action_dim(self) -> int:
        """Width of one model step's action: ``frameskip · A``."""
        return self.frameskip * self.actions.shape[1]

    def starts(self, min_steps: int = 1) -> torch.Tensor:
        """Frames with at least ``min_steps`` model steps (``min_steps · frameskip`` env steps) left in their episode."""
        return torch.nonzero(self.last - torch.arange(len(self)) >= min_steps * self.frameskip).flatten()

    def window(self, idx: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start frames ``idx (B,)`` → ``z0 (B, *S)`` (with history k: ``(B, k, *S)``, frames ``idx − (k−1) r …
        idx``, the episode's first frame repeated before its start), actions ``(B, H, frameskip · A)``, targets
        ``(B, H, *S)`` (the latents after each model step), ``mask (B, H)`` (the target lies inside the episode)."""
        r = self.frameskip
        last = self.last[idx][:, None]
        env_steps = torch.arange(horizon * r)
        act_idx = torch.minimum(idx[:, None] + env_steps, last)  # (B, H·r)
        actions = self.actions[act_idx].reshape(len(idx), horizon, r * self.actions.shape[1])
        tgt = idx[:, None] + (torch.arange(horizon) + 1) * r
        mask = tgt <= last
        tgt = torch.minimum(tgt, last)
        if self.history > 1:
            back = idx[:, None] - (torch.arange(self.history - 1, -1, -1) * r)  # (B, k), oldest first
            z0 = self.latents[torch.maximum(back, self.first[idx][:, None])]
        else:
            z0 = self.latents[idx]
        return z0, actions, self.latents[tgt], mask


@dataclass
class EpisodeTokens:
    """Episodes laid end to end with their unpooled tokens: ``tokens (F, N, D)``, ``proprio (F, P)``, ``lengths``."""

    tokens: torch.Tensor
    proprio: torch.Tensor
    lengths: list[int]


def load_tokens(demo_path: str, cache: FeatureCache, names: Sequence[str]) -> EpisodeTokens:
    """The episodes ``names`` of ``demo_path`` with their cached tokens, unpooled (for few episodes: diagnostics)."""
    tokens, proprio, lengths = [], [], []
    with DemoFile(demo_path) as demos:
        for name in names:
            ep = demos.episode(name)
            t = cache.features(name).tokens
            if len(t) != len(ep["actions"]):
                raise ValueError(f"{cache.path} has {len(t)} frames of {name}, {demo_path} has {len(ep['actions'])}")
            tokens.append(t.float())
            proprio.append(torch.from_numpy(ep["obs"]["proprio"]).float())
            lengths.append(len(t))
    return EpisodeTokens(torch.cat(tokens), torch.cat(proprio), lengths)
