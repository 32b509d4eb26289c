"""The pretraining-objective contract and its registry (names = encoder family names)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from torch import nn

from robrep.encoders.base import Encoder


class Objective(nn.Module):
    """Owns the trainable encoder (``self.encoder``) and any decoder/head used only for pretraining.

    :meth:`loss` takes a batch from :meth:`robrep.data.frames.FrameDataset.batch` — ``images``
    uint8 ``(B, H, W, 3)``, ``next_images``, ``actions (B, A)``, ``instructions``/``captions``
    (lists of B strings) — and returns the scalar loss and a dict of floats to log.
    Only ``self.encoder`` is saved in the checkpoint.
    """

    encoder: Encoder

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` → the encoder's normalised float input, with gradients allowed."""
        return self.encoder.preprocess(images)


_OBJECTIVES: dict[str, Callable[..., Objective]] = {}

#: Built-in objectives: encoder family → the module that registers its objective, imported on first use.
BUILTIN_OBJECTIVES: dict[str, str] = {
    "mae": "robrep.pretrain.mae",
    "dift": "robrep.pretrain.ddpm",
    "voltron": "robrep.pretrain.voltron",
    "clip": "robrep.pretrain.contrastive",
}


def register_objective(family: str) -> Callable[[Callable[..., Objective]], Callable[..., Objective]]:
    """Decorator: ``builder(encoder, **objective_cfg) -> Objective`` for encoders of ``family``."""

    def wrap(builder: Callable[..., Objective]) -> Callable[..., Objective]:
        _OBJECTIVES[family] = builder
        return builder

    return wrap


def make_objective(encoder: Encoder, **cfg: Any) -> Objective:
    """The in-domain objective of ``encoder.family`` with hyperparameters ``cfg``."""
    module = BUILTIN_OBJECTIVES.get(encoder.family)
    if module is not None:
        importlib.import_module(module)
    if encoder.family not in _OBJECTIVES:
        known = sorted(set(_OBJECTIVES) | set(BUILTIN_OBJECTIVES))
        raise KeyError(f"no pretraining objective for family {encoder.family!r}; known: {known}")
    return _OBJECTIVES[encoder.family](encoder, **cfg)
