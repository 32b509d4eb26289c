"""DINOv2 family: Meta's self-distilled ViTs (with or without register tokens) as frozen spatial encoders.

Registered name ``"dinov2"``. A timm ``VisionTransformer`` of a DINOv2 architecture (default
``vit_small_patch14_reg4_dinov2``: ViT-S/14 with 4 register tokens, LayerScale); tokens are the final-norm patch
tokens (registers dropped), the global token the class token. Patch 14 at the default 98 px input gives a 7 × 7
grid (DINOv2 trained at 518 px; the position embedding is resampled to the grid, as timm does).

``weights=``:

* ``None`` — random init (the control);
* ``"timm:<timm DINOv2 name>[@<path>]"`` / ``"hf-hub:<repo>"`` — timm's layout, by name from the local Hugging Face
  cache (e.g. ``timm:vit_small_patch14_reg4_dinov2.lvd142m``) or from a file / snapshot folder;
* ``"dinov2_pth:<path>"`` — the original facebookresearch/dinov2 release (``dinov2_vits14_reg4_pretrain.pth``:
  ``register_tokens``, ``mask_token``, the class token inside the position embedding), converted by timm's own
  ``checkpoint_filter_fn``; the architecture name comes from ``timm_model`` (default ViT-S/14 + registers);
* ``"<robrep checkpoint>.pt"``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from robrep.encoders.checkpoint import load_state_dict_checked
from robrep.encoders.registry import register_encoder, register_family
from robrep.encoders.vit import ViTEncoder
from robrep.encoders.weights import load_checkpoint_as, read_state_dict, resolve_file, split_weights


@register_family
class DINOv2Encoder(ViTEncoder):
    """A DINOv2 ViT (timm architecture ``timm_model``; sizes from timm unless overridden)."""

    family = "dinov2"

    def __init__(self, timm_model: str = "vit_small_patch14_reg4_dinov2", input_size: int = 98,
                 patch_size: int | None = None, embed_dim: int | None = None, depth: int | None = None,
                 num_heads: int | None = None, class_token: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 feature_layer: int | None = None, **timm_kwargs: Any) -> None:
        super().__init__(timm_model, input_size, patch_size, embed_dim, depth, num_heads, class_token, mean, std,
                         feature_layer, **timm_kwargs)


def load_dinov2_state(encoder: DINOv2Encoder, state_dict: Mapping[str, torch.Tensor], source: str) -> DINOv2Encoder:
    """Load timm- or original-layout DINOv2 tensors: timm's ``checkpoint_filter_fn`` converts the original keys and
    resamples the position embedding to the encoder's grid; then a strict load (WeightsMismatchError names keys)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    load_state_dict_checked(encoder.vit, checkpoint_filter_fn(state, encoder.vit), source)
    return encoder


@register_encoder("dinov2")
def dinov2(weights: str | None = None, **cfg: Any) -> DINOv2Encoder:
    """The DINOv2 encoder (see the module docstring for ``weights``). Returned unfrozen."""
    if weights is None:
        return DINOv2Encoder(**cfg)
    scheme, arg = split_weights(str(weights))
    if scheme in ("timm", "hf-hub"):
        from robrep.encoders.hub import timm_weights_file

        name, file = timm_weights_file(str(weights))
        encoder = DINOv2Encoder(**{"timm_model": name, **cfg})
        return load_dinov2_state(encoder, read_state_dict(file), str(file))
    if scheme == "dinov2_pth":
        file = resolve_file(arg)
        return load_dinov2_state(DINOv2Encoder(**cfg), read_state_dict(file), str(file))
    if scheme == "":
        return load_checkpoint_as(arg, DINOv2Encoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown DINOv2 weights format {scheme!r} in {weights!r}; use 'timm:<name>[@<path>]', "
                     "'hf-hub:<repo>', 'dinov2_pth:<path>' or a robrep checkpoint path")
