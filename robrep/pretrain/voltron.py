"""Voltron (V-Cond-style) objective: the MAE objective with the instruction's language tokens in the encoder.

Everything of :class:`robrep.pretrain.mae.MAEObjective` (masking, decoder, normalised-pixel loss,
ablation weights) is reused; only the encoder pass changes: the visible image tokens and the
projected MiniLM tokens of ``batch[text_key]`` (default the task instruction) run through the ViT
jointly (:meth:`VoltronEncoder.joint`). With probability ``language_dropout`` (default 0.2), per
image, the language tokens are masked out, which is exactly the encoder's no-language path, so
features without an instruction stay in-distribution. The decoder sees image tokens only.
"""

from __future__ import annotations

from typing import Any

import torch

from robrep.encoders.voltron import VoltronEncoder
from robrep.pretrain.mae import MAEObjective
from robrep.pretrain.objective import register_objective


class VoltronObjective(MAEObjective):
    """Language-conditioned MAE loss for a :class:`VoltronEncoder`; ``batch[text_key]`` = B strings."""

    encoder: VoltronEncoder

    def __init__(self, encoder: VoltronEncoder, language_dropout: float = 0.2, text_key: str = "instructions",
                 **mae_cfg: Any) -> None:
        super().__init__(encoder, **mae_cfg)
        if not 0.0 <= language_dropout <= 1.0:
            raise ValueError(f"language_dropout must be in [0, 1], got {language_dropout}")
        self.language_dropout, self.text_key = float(language_dropout), text_key

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        texts = list(batch[self.text_key])
        if len(texts) != x.shape[0]:
            raise ValueError(f"batch[{self.text_key!r}] has {len(texts)} texts for {x.shape[0]} images")
        if self.training and self.language_dropout > 0:
            drop = torch.rand(len(texts)) < self.language_dropout
            texts = [None if d else t for t, d in zip(texts, drop.tolist())]
        return self.encoder.joint(self.visible_tokens(x, keep), self.encoder.language_tokens(texts))


@register_objective("voltron")
def build_voltron_objective(encoder: VoltronEncoder, **cfg: Any) -> VoltronObjective:
    """``VoltronObjective(encoder, **cfg)`` (cfg = ``configs/encoder/voltron.yaml`` → ``pretrain.objective``)."""
    return VoltronObjective(encoder, **cfg)
