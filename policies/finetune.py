"""Fine-tuned encoder trunk: the comparison to frozen features, not a default (``configs/policy/finetune.yaml``).

The same pretrained encoder a feature policy reads (same :class:`policies.checkpoint.EncoderSpec`), built
trainable, with only its last ``blocks`` stages unfrozen (:func:`trainable_tail`), trained end to end with
the readout and BC head on the demo images::

    image uint8 (B, H, W, 3) ─RandomShift (±pad px, training only)─► encoder.preprocess ─► (B, 3, S, S)
    ─► encoder.encode (gradients reach the tail) ─► tokens (B, N, D) (+ global (B, D)) ─► readout ─► (B, R)

The readout part is :class:`policies.trunks.FeatureTrunk` itself (same readouts, token dropout, state keys
``readout.*``); the encoder's weights live in the trunk (``encoder.*``), so a policy checkpoint carries them.
Language-conditioned encoders (voltron) are fine-tuned and run on images only (no instruction).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from policies.cnn import RandomShift, image_batch
from policies.trunks import FeatureTrunk
from robrep.encoders.base import Encoder
from robrep.encoders.registry import family_class


def tail_modules(encoder: Encoder, blocks: int) -> list[nn.Module]:
    """The last ``blocks`` stages that compute ``encoder``'s features, read from its module structure:

    * timm-ViT families (``mae``, ``voltron``, ``clip``: an ``encoder.vit``): the ``blocks`` blocks ending at
      the one read out (``feature_layer``) plus the final norm ``vit.norm`` (the tokens are read after it);
    * diffusion U-Net (``dift``: an ``encoder.unet``): the ``blocks`` up blocks ending at the one read out,
      ``unet.up_blocks[up_block - blocks + 1 .. up_block]`` (later up blocks never run).

    ``blocks = 0`` → ``[]``. ValueError if the encoder has fewer stages; TypeError for an unknown structure.
    """
    if blocks < 0:
        raise ValueError(f"blocks must be >= 0, got {blocks}")
    vit, unet = getattr(encoder, "vit", None), getattr(encoder, "unet", None)
    if vit is not None:
        stages, last = list(vit.blocks)[: int(encoder.feature_layer)], [vit.norm]
    elif unet is not None:
        stages, last = list(unet.up_blocks)[: int(encoder.up_block) + 1], []
    else:
        raise TypeError(f"no rule for which blocks of a {type(encoder).__name__} ({encoder.family!r}) to fine-tune; "
                        "known: encoders with a timm `vit` or a diffusers `unet`")
    if blocks > len(stages):
        raise ValueError(f"cannot fine-tune {blocks} blocks of a {encoder.family!r} encoder: only {len(stages)} "
                         "blocks compute its features")
    return stages[len(stages) - blocks:] + last if blocks else []


def trainable_tail(encoder: Encoder, blocks: int) -> list[nn.Parameter]:
    """Parameters of :func:`tail_modules` ``(encoder, blocks)``: the only ones a fine-tuned policy trains."""
    return [p for module in tail_modules(encoder, blocks) for p in module.parameters()]


def encoder_from_identity(identity: Mapping[str, Any]) -> Encoder:
    """An (unfrozen, randomly initialised) encoder of the architecture ``identity`` records
    (``{"family", "config"}``, as :meth:`Encoder.identity`): the shell a fine-tuned checkpoint's weights fill."""
    with torch.random.fork_rng(devices=[]):  # do not disturb the caller's random stream
        return family_class(identity["family"])(**identity["config"])


class FinetuneTrunk(FeatureTrunk):
    """``{"image": uint8 (B, H, W, 3)}`` at the training ``image_size`` → readout of the encoder's live,
    partly trainable features ``(B, R)``.

    ``encoder`` must be trainable (``EncoderSpec.load(frozen=False)``): its parameters are frozen here
    except :func:`trainable_tail` ``(encoder, blocks)``, optimised at ``encoder_lr`` (the readout and head use
    the policy's ``train.lr``). ``augment``: DrQ random shift by up to ±``pad`` image pixels, training only.
    """

    input_keys = ("image",)

    def __init__(self, encoder: Encoder, image_size: tuple[int, int], readout: str,
                 readout_kwargs: Mapping[str, Any] | None = None, token_dropout: float = 0.0, blocks: int = 2,
                 encoder_lr: float = 1e-4, augment: bool = True, pad: int = 4) -> None:
        if getattr(encoder, "_frozen", False):
            raise ValueError("FinetuneTrunk needs a trainable encoder (EncoderSpec.load(frozen=False) or "
                             "load_encoder(..., frozen=False)); Encoder.freeze() is permanent")
        super().__init__(encoder.feature_dim, encoder.grid_size, readout, readout_kwargs, token_dropout)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.blocks, self.encoder_lr = int(blocks), float(encoder_lr)
        self.encoder = encoder.requires_grad_(False)
        for p in trainable_tail(encoder, self.blocks):
            p.requires_grad_(True)
        self.shift = RandomShift(pad if augment else 0)

    def tail_parameters(self) -> list[nn.Parameter]:
        """The encoder parameters being fine-tuned (their optimiser group uses ``encoder_lr``)."""
        return trainable_tail(self.encoder, self.blocks)

    def forward(self, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        images = self.shift(image_batch(frames["image"], self.image_size))  # (B, 3, H, W), whole-pixel shifts
        x = self.encoder.preprocess(images.to(torch.uint8).permute(0, 2, 3, 1))  # (B, 3, S, S)
        feats = self.encoder.encode(x)  # not encoder(x): Encoder.forward blocks gradients
        inputs = {"tokens": feats.tokens}
        if feats.global_token is not None:
            inputs["global_token"] = feats.global_token
        return super().forward(inputs)
