"""VC-1 family: the Meta/eai-vc visual cortex, an MAE-trained ViT (B/16 or L/16) on egocentric and robot video.

Registered name ``"vc1"``. The same timm ViT as the MAE family — final-norm patch tokens, class token as the global
token — loaded from the eai-vc release (``vc1_vitb.pth`` / ``vc1_vitl.pth``: ``{"model": state_dict}`` in MAE's key
layout, decoder and ``mask_token`` included and dropped). The architecture is read from the tensors' shapes; the
position embedding is resampled to ``input_size`` (default 112 px: a 7 × 7 grid at patch 16).

``weights=``: ``None`` (random init: the control), ``"vc1:<path>"`` (the release) or a robrep checkpoint (``*.pt``).
"""

from __future__ import annotations

from typing import Any

from robrep.encoders.mae import MAE_DECODER_PREFIXES, load_vit_weights, mae_pth_arch
from robrep.encoders.registry import register_encoder, register_family
from robrep.encoders.vit import ViTEncoder
from robrep.encoders.weights import load_checkpoint_as, read_state_dict, resolve_file, split_weights


@register_family
class VC1Encoder(ViTEncoder):
    """A VC-1 ViT (default ViT-B/16 at 112 px)."""

    family = "vc1"

    def __init__(self, timm_model: str = "vit_base_patch16_224", input_size: int = 112, patch_size: int | None = 16,
                 embed_dim: int | None = 768, depth: int | None = 12, num_heads: int | None = 12,
                 **kwargs: Any) -> None:
        super().__init__(timm_model, input_size, patch_size, embed_dim, depth, num_heads, **kwargs)


@register_encoder("vc1")
def vc1(weights: str | None = None, **cfg: Any) -> VC1Encoder:
    """The VC-1 encoder (see the module docstring for ``weights``). Returned unfrozen."""
    if weights is None:
        return VC1Encoder(**cfg)
    scheme, arg = split_weights(str(weights))
    if scheme == "vc1":
        file = resolve_file(arg)
        state = {k: v for k, v in read_state_dict(file).items() if not k.startswith(MAE_DECODER_PREFIXES)}
        arch = {k: v for k, v in mae_pth_arch(state).items() if k != "input_size"}
        encoder = VC1Encoder(**{**arch, "input_size": 112, **cfg})
        load_vit_weights(encoder, state, str(file))
        return encoder
    if scheme == "":
        return load_checkpoint_as(arg, VC1Encoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown VC-1 weights format {scheme!r} in {weights!r}; use 'vc1:<path>' or a robrep checkpoint")
