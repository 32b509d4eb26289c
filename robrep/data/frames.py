"""Frames for pretraining: every image of one or more demo files in memory, with its text, action,
privileged state and the index of the next frame of the same episode.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from robrep.data.augment import shift_images
from robrep.data.captions import caption
from robrep.data.demo_file import DemoFile


@dataclass
class FrameDataset:
    """``images`` uint8 ``(F, H, W, 3)``, ``actions`` float32 ``(F, A)``, ``states`` list of float32
    ``(D_task,)`` arrays (task-dependent width), ``instructions`` and ``captions`` (F strings),
    ``next_index`` int64 ``(F,)`` (index of the following frame, or itself at an episode's end),
    ``episode`` int64 ``(F,)``."""

    images: np.ndarray
    actions: np.ndarray
    states: list[np.ndarray]
    instructions: list[str]
    captions: list[str]
    next_index: np.ndarray
    episode: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_files(cls, paths: Sequence[str | os.PathLike], filter_key: str | None = None) -> "FrameDataset":
        """Load every frame of the demos in ``paths`` (optionally one filter key); all files must
        share one image size."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        images, actions, states, instructions, captions, next_index, episode = [], [], [], [], [], [], []
        offset, ep = 0, 0
        for path in paths:
            with DemoFile(path) as demos:
                demos.require_obs("image", purpose="pretraining")
                spec = [tuple(x) for x in demos.env_args.get("state_spec", [])]
                for name in demos.demo_names(filter_key):
                    e = demos.episode(name)
                    t = len(e["actions"])
                    meta = e["attrs"].get("ep_meta", "{}")
                    meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
                    instr = meta.get("instruction", "")
                    images.append(e["obs"]["image"])
                    actions.append(e["actions"].astype(np.float32))
                    for s in e["obs"]["state"]:
                        states.append(s.astype(np.float32))
                        captions.append(caption(s, spec, instr) if spec else instr)
                    instructions += [instr] * t
                    idx = np.arange(offset, offset + t)
                    next_index.append(np.minimum(idx + 1, offset + t - 1))
                    episode.append(np.full(t, ep))
                    offset += t
                    ep += 1
        if not images:
            raise ValueError(f"no frames found in {list(map(str, paths))} (filter key {filter_key!r})")
        shapes = {im.shape[1:] for im in images}
        if len(shapes) > 1:
            raise ValueError(f"demo files have different image shapes {sorted(shapes)}; collect them at one size")
        return cls(np.concatenate(images), np.concatenate(actions), states, instructions, captions,
                   np.concatenate(next_index), np.concatenate(episode))

    def batch(self, index: np.ndarray, shift_pad: int = 0, rng: np.random.Generator | None = None) -> dict:
        """A training batch for frame indices ``index (B,)``: ``images`` uint8 torch ``(B, H, W, 3)``,
        ``next_images`` (the following frames), ``actions`` float32 ``(B, A)``, ``instructions`` and
        ``captions`` (lists of B strings). ``shift_pad > 0`` translates each frame by a random offset in
        [-shift_pad, shift_pad]² px drawn from ``rng``, its next frame by the same offset."""
        index = np.asarray(index)
        images, next_images = self.images[index], self.images[self.next_index[index]]
        if shift_pad > 0:
            if rng is None:
                raise ValueError("shift_pad > 0 needs an rng")
            both = shift_images(np.concatenate([images, next_images], axis=-1), shift_pad, rng)
            images, next_images = both[..., :3], both[..., 3:]
        return {
            "images": torch.from_numpy(np.ascontiguousarray(images)),
            "next_images": torch.from_numpy(np.ascontiguousarray(next_images)),
            "actions": torch.from_numpy(self.actions[index]),
            "instructions": [self.instructions[i] for i in index],
            "captions": [self.captions[i] for i in index],
        }
