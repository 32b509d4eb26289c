"""Training tensors for BC: the frames of some demos, flattened, with frame-stack and action-chunk indices.

Per-frame inputs come either from the feature cache (``tokens`` float16 ``(T, N, D)`` and, where the
encoder has one, ``global_token`` ``(T, D)``; the encoder never runs here) or from the demo images
(``obs/<obs_keys.image>`` uint8 ``(T, H, W, 3)``, for the from-scratch CNN and fine-tuning; the trunk input is
called ``image`` whatever the file's key). Actions and proprio always come from the demo file: ``actions``
float32 ``(T, A)`` (robrep's tasks: A = 4 in [-1, 1]; any A from another file), proprio float32 ``(T, P)`` =
the ``obs_keys.proprio`` keys concatenated (robrep's ``obs/proprio``: TCP xyz in m + finger opening in m).
``obs[t]`` is observed before ``actions[t]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from robrep.data.demo_file import DemoFile
from robrep.data.feature_cache import FeatureCache
from robrep.data.obs_keys import ObsKeys


@dataclass
class DemoTensors:
    """``F`` frames of ``episodes`` (concatenated in order).

    ``frames`` ``{key: (F, ...)}`` per-frame trunk inputs; ``proprio (F, P)``; ``actions (F, A)``;
    ``stack (F, S)`` indices of the S stacked frames of each frame (oldest first, the episode's first
    frame repeated before its start); ``chunk (F, k)`` indices of the next k actions (the episode's last
    action repeated after its end, as robomimic's sequence padding); ``instructions`` one per episode;
    ``shifted`` ``{key: (C, F, ...)}`` the feature cache's C shifted copies of ``frames`` (empty without);
    ``episode_index (F,)`` each frame's episode (index into ``episodes``).
    """

    frames: dict[str, torch.Tensor]
    proprio: torch.Tensor
    actions: torch.Tensor
    stack: torch.Tensor
    chunk: torch.Tensor
    episodes: list[str]
    instructions: list[str | None]
    shifted: dict[str, torch.Tensor] = field(default_factory=dict)
    episode_index: torch.Tensor | None = None  # (F,) the index in ``episodes`` of each frame

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def num_views(self) -> int:
        """1 + the number of shifted copies of every frame."""
        return 1 + (len(next(iter(self.shifted.values()))) if self.shifted else 0)

    def batch(self, idx: torch.Tensor, view: torch.Tensor | None = None
              ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Frames ``idx (B,)`` → ``frames {key: (B, S, ...)}``, ``proprio (B, S, P)``, ``actions (B, k, A)``;
        ``view (B,)`` picks per sample the recorded frames (0) or a shifted copy (1 … C) of all its S frames."""
        s = self.stack[idx]
        frames = {k: v[s] for k, v in self.frames.items()}
        if view is not None and self.shifted:
            pick = view > 0
            for k, copies in self.shifted.items():
                frames[k][pick] = copies[(view[pick] - 1)[:, None], s[pick]]  # (B', S, ...)
        return frames, self.proprio[s], self.actions[self.chunk[idx]]


def window_indices(lengths: Sequence[int], frame_stack: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For episodes of ``lengths`` laid end to end: ``stack (F, frame_stack)`` (frames t-S+1..t, clamped
    at each episode's start) and ``chunk (F, chunk)`` (actions t..t+k-1, clamped at each episode's end)."""
    stacks, chunks, offset = [], [], 0
    for T in lengths:
        t = np.arange(T)[:, None]
        stacks.append(offset + np.clip(t - (frame_stack - 1) + np.arange(frame_stack), 0, T - 1))
        chunks.append(offset + np.clip(t + np.arange(chunk), 0, T - 1))
        offset += T
    return torch.from_numpy(np.concatenate(stacks)).long(), torch.from_numpy(np.concatenate(chunks)).long()


def load_demo_tensors(demos: DemoFile, names: Sequence[str], frame_stack: int = 1, chunk: int = 1,
                      cache: FeatureCache | None = None, shifted: bool = False, obs_keys: ObsKeys | None = None,
                      images: bool = True) -> DemoTensors:
    """The demos ``names`` as :class:`DemoTensors`: cached features when ``cache`` is given, else the images
    ``obs/<obs_keys.image>``; proprio from ``obs_keys.proprio`` (default :class:`ObsKeys`: ``image``, ``proprio``);
    ``shifted``: also the cache's shifted copies (training data; ValueError if the cache has none); ``images=False``:
    no per-frame input at all (a ``trunk: none`` policy reads the proprio alone)."""
    if not names:
        raise ValueError(f"no demos to load from {demos.path}")
    if shifted and (cache is None or not cache.shifts):
        raise ValueError(f"shifted feature copies asked for, but {getattr(cache, 'path', 'no cache')} holds none")
    parts: dict[str, list[torch.Tensor]] = {}
    copies: dict[str, list[torch.Tensor]] = {}
    keys = obs_keys or ObsKeys()
    demos.require_obs_keys(keys, proprio=True, purpose="policy training")
    proprio, actions, lengths, instructions = [], [], [], []
    for name in names:
        episode = demos.episode(name)
        T = len(episode["actions"])
        if cache is not None:
            feats = cache.features(name, dtype=torch.float16)
            if len(feats.tokens) != T:
                raise ValueError(f"feature cache {cache.path} has {len(feats.tokens)} frames of {name}, the demo file "
                                 f"{T}: the cache belongs to another dataset")
            frame = {"tokens": feats.tokens}
            if feats.global_token is not None:
                frame["global_token"] = feats.global_token
            for view in range(1, cache.shifts + 1 if shifted else 1):
                moved = cache.features(name, dtype=torch.float16, view=view)
                copies.setdefault("tokens", []).append(moved.tokens)
                if moved.global_token is not None:
                    copies.setdefault("global_token", []).append(moved.global_token)
        elif images:
            frame = {"image": torch.from_numpy(np.ascontiguousarray(episode["obs"][keys.image]))}
        else:
            frame = {}
        for key, value in frame.items():
            parts.setdefault(key, []).append(value)
        proprio.append(torch.from_numpy(keys.proprio_of(episode["obs"])).float())
        actions.append(torch.from_numpy(episode["actions"]).float())
        lengths.append(T)
        instructions.append(episode["attrs"]["ep_meta"].get("instruction"))
    stack, chunks = window_indices(lengths, frame_stack, chunk)
    c = cache.shifts if shifted and cache is not None else 0
    shifted_frames = {k: torch.stack([torch.cat(v[i::c]) for i in range(c)]) for k, v in copies.items()}  # (C, F, ...)
    return DemoTensors({k: torch.cat(v) for k, v in parts.items()}, torch.cat(proprio), torch.cat(actions),
                       stack, chunks, list(names), instructions, shifted_frames,
                       torch.repeat_interleave(torch.arange(len(names)), torch.tensor(lengths)))
