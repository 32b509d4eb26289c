"""A frozen robrep encoder as robomimic's visual backbone: :class:`RobrepEncoderCore`.

Importing this module registers the class with robomimic (``EncoderCore`` subclasses register themselves), so a
robomimic config can name it for an image modality::

    import policies.robomimic_core  # noqa: F401  (registers "RobrepEncoderCore")
    config.observation.encoder.rgb.core_class = "RobrepEncoderCore"
    config.observation.encoder.rgb.core_kwargs = {"encoder": "mae", "weights": "weights/mae_full.pt",
                                                  "readout": "spatial_softmax", "feature_dimension": 64}

robomimic hands the core float images ``(B, 3, H, W)`` in [0, 1] (its ``rgb`` modality processing); the core resizes
them to the encoder's input size, normalises them with the encoder's mean/std, runs the frozen encoder (no gradient,
eval mode whatever robomimic's train/eval switch says), reads the tokens out with a robrep readout (trainable) and
projects to ``feature_dimension`` (trainable; ``None`` keeps the readout's width).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from robomimic.models.obs_core import EncoderCore
from torch import nn

from robrep.encoders import load_encoder
from robrep.readouts import make_readout


class RobrepEncoderCore(EncoderCore):
    """robomimic ``EncoderCore``: float ``(B, 3, H, W)`` in [0, 1] → frozen robrep encoder → readout → ``(B, F)``."""

    def __init__(self, input_shape, encoder: str = "mae", weights: str | None = None,
                 arch: Mapping[str, Any] | None = None, readout: str = "spatial_softmax",
                 readout_kwargs: Mapping[str, Any] | None = None, feature_dimension: int | None = 64) -> None:
        super().__init__(input_shape=input_shape)
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise ValueError(f"RobrepEncoderCore takes RGB images (3, H, W), got input shape {tuple(input_shape)}")
        self.encoder = load_encoder(encoder, weights=weights, **dict(arch or {})).freeze()
        self.readout = make_readout(readout, self.encoder.feature_dim, self.encoder.grid_size, **dict(readout_kwargs or {}))
        width = self.readout.output_dim
        self.proj = nn.Linear(width, int(feature_dimension)) if feature_dimension else nn.Identity()
        self.feature_dimension = int(feature_dimension) if feature_dimension else width

    def output_shape(self, input_shape=None) -> list[int]:
        return [self.feature_dimension]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        enc, size = self.encoder, self.encoder.input_size
        x = inputs.float()
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = ((x - enc.pixel_mean) / enc.pixel_std).to(enc.dtype)
        with torch.no_grad():
            feats = enc(x)  # frozen: eval mode, no gradient
        return self.proj(self.readout(feats))

    def __repr__(self) -> str:
        return (f"RobrepEncoderCore({self.encoder.family}, grid {self.encoder.grid_size}, "
                f"readout {type(self.readout).__name__}, out {self.feature_dimension})")
