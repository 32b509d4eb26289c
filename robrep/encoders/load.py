"""Load a frozen encoder by registry name, checkpoint path or public weights: :func:`load_encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robrep.encoders.base import Encoder
from robrep.encoders.registry import build_encoder, is_registered, list_encoders
from robrep.encoders.weights import load_checkpoint_as, split_weights


def load_encoder(
    name: str,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    frozen: bool = True,
    **cfg: Any,
) -> Encoder:
    """Build a frozen encoder (``frozen=False``: the same weights, trainable, for fine-tuning).

    ``name`` is a registered name (``"mae"``) or the path of a robrep encoder checkpoint
    (``*.pt``). ``weights`` is ``None`` (random init), a robrep checkpoint path, or a public
    format the family understands (see each family's docstring). ``cfg`` overrides the
    architecture hyperparameters of the registered name.
    """
    if not is_registered(name):
        if not (Path(name).suffix == ".pt" or Path(name).exists()):
            raise KeyError(f"unknown encoder {name!r}; registered: {list_encoders()} (or pass a checkpoint path)")
        encoder = load_checkpoint_as(name, **cfg)
    elif weights is not None and split_weights(weights)[0] == "" and Path(weights).suffix == ".pt":
        encoder = load_checkpoint_as(weights, **cfg)
    else:
        encoder = build_encoder(name, weights=weights, **cfg)
    encoder = encoder.to(device=device, dtype=dtype)
    return encoder.freeze() if frozen else encoder
