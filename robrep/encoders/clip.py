"""CLIP-token baseline: a CLIP-style ViT image tower whose representation is its class token.

Architecture (:class:`CLIPEncoder`): a timm CLIP ViT (``pre_norm=True`` — CLIP's ``ln_pre`` —,
LayerNorm eps 1e-5, a class token, final norm = CLIP's ``ln_post``) plus CLIP's image
projection, kept as timm's ``vit.head`` (``Linear(D, proj_dim)``; same key names as timm's CLIP
checkpoints). The in-domain default is comparable to the MAE encoder: patch 8 at 96 px (12×12
grid), width 192, depth 6, 3 heads, projection to 128 (≈2.8 M parameters).

What the package treats as the representation: **the class token after the final norm, before the
projection** — ``SpatialFeatures.global_token (B, D)``, read by the default ``"cls"`` readout. The
projection is linear, so any readout on the pre-projection token can express the projected CLIP
embedding; the contract also needs the global token to have the tokens' width D. The projected
embedding ``(B, proj_dim)`` (what the contrastive objective aligns with text) is available from
:meth:`CLIPEncoder.image_embedding`. ``SpatialFeatures.tokens (B, h·w, D)`` are the final-norm
patch tokens, returned only so "same encoder, class token vs spatial tokens" readouts can be
compared; the CLIP baseline is the class token.

Weights (``load_encoder("clip", weights=...)``):

* ``None`` — random init (in-domain pretraining with the ``"clip"`` objective).
* ``"/path/enc.pt"`` — a robrep encoder checkpoint.
* ``"timm:<timm CLIP ViT name>@<file>"`` — e.g. ``timm:vit_base_patch16_clip_224.openai@/w/model.safetensors``;
* ``"timm:<timm CLIP ViT name>"`` / ``"hf-hub:<repo>"`` — by name from the local Hugging Face cache (downloaded only
  when online): e.g. ``timm:vit_base_patch16_clip_224.openai``, OpenAI's CLIP ViT-B/16 in timm's layout.
  The name gives the architecture (patch, width, depth, heads, activation; input size and mean/std
  from its pretrained config); the file (``.safetensors`` or a torch ``.bin``/``.pth``) may use
  timm key names or the OpenAI/OpenCLIP layout (``visual.conv1.weight``, ...). Use the
  ``*_clip_quickgelu_*`` names for OpenAI's original weights (natively QuickGELU).
* ``"open_clip:<file>"`` — an OpenAI/OpenCLIP-layout state dict; the architecture is read from the
  tensor shapes (patch, width, depth, MLP ratio, input size, projection width), heads = width / 64
  (the OpenAI/OpenCLIP convention) and GELU (pass ``act_layer="quick_gelu"`` for OpenAI weights).

A public file named ``*.pt`` is taken for a robrep checkpoint by ``load_encoder`` (it checks the
suffix before the family sees the spec): name it ``.bin``/``.pth``. Text-tower keys are dropped. Extra ``cfg`` overrides the architecture; a different ``input_size``
resamples the position embedding; any other disagreement with the file raises
:class:`~robrep.encoders.checkpoint.WeightsMismatchError` naming the keys.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from timm.layers import resample_abs_pos_embed

from robrep.encoders.checkpoint import WeightsMismatchError, load_state_dict_checked
from robrep.encoders.weights import load_checkpoint_as, read_state_dict
from robrep.encoders.registry import register_encoder, register_family
from robrep.encoders.vit import ViTEncoder

#: OpenAI CLIP pixel statistics (also used by OpenCLIP's LAION models).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: timm architecture that supplies CLIP's block layout (pre-norm, LayerNorm eps 1e-5, qkv bias).
CLIP_TIMM_MODEL = "vit_base_patch16_clip_224"


@register_family
class CLIPEncoder(ViTEncoder):
    """CLIP image tower: tokens ``(B, h·w, D)``, global token = class token ``(B, D)`` (pre-projection).

    ``proj_dim`` is the width of the CLIP image embedding (``vit.head``; 0 = no projection).
    Other arguments as :class:`~robrep.encoders.vit.ViTEncoder` (``None`` keeps timm's value).
    """

    family = "clip"

    def __init__(
        self,
        timm_model: str = CLIP_TIMM_MODEL,
        input_size: int = 96,
        patch_size: int | None = 8,
        embed_dim: int | None = 192,
        depth: int | None = 6,
        num_heads: int | None = 3,
        class_token: bool = True,
        proj_dim: int = 128,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        **timm_kwargs: Any,
    ) -> None:
        if not class_token:
            raise ValueError("CLIPEncoder needs class_token=True: the class token is its representation")
        super().__init__(timm_model, input_size, patch_size, embed_dim, depth, num_heads, class_token, mean, std,
                         **timm_kwargs)
        self.proj_dim = int(proj_dim or 0)
        if self.proj_dim < 0:
            raise ValueError(f"proj_dim must be >= 0, got {proj_dim}")
        if self.proj_dim:
            self.vit.reset_classifier(self.proj_dim)  # vit.head = Linear(D, proj_dim): CLIP's image projection
        self.config["proj_dim"] = self.proj_dim

    def project(self, global_token: torch.Tensor) -> torch.Tensor:
        """CLIP image projection: class token ``(B, D)`` → embedding ``(B, proj_dim)`` (not normalised)."""
        if not self.proj_dim:
            raise ValueError("this CLIPEncoder has no projection head (proj_dim=0)")
        return self.vit.head(global_token)

    def image_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``(B, 3, S, S)`` → projected CLIP embedding ``(B, proj_dim)``, not normalised.
        Gradients flow when the encoder is trainable (the contrastive objective uses this)."""
        tokens = self.transform(self.embed(x))
        return self.project(tokens[:, 0])


# ---------------------------------------------------------------------------------------- public weights
def to_timm_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI/OpenCLIP keys (``visual.*``, text keys dropped) → timm ViT keys, via timm's converter;
    a dict already in timm layout is returned unchanged."""
    from timm.models.vision_transformer import _convert_openai_clip

    for prefix in ("visual.", "module.visual."):
        if f"{prefix}class_embedding" in sd:
            return _convert_openai_clip(sd, None, prefix=prefix)  # the model argument is unused
    return sd


def infer_open_clip_arch(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """CLIPEncoder kwargs read off a timm-layout CLIP state dict's shapes (heads = width / 64)."""
    need = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        raise WeightsMismatchError(f"cannot read a CLIP ViT architecture: missing keys {missing} "
                                   f"(file has {sorted(sd)[:8]}...)")
    width, _, patch, _ = sd["patch_embed.proj.weight"].shape
    grid = math.isqrt(sd["pos_embed"].shape[1] - 1)
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    arch: dict[str, Any] = dict(timm_model=CLIP_TIMM_MODEL, input_size=grid * patch, patch_size=patch,
                                embed_dim=width, depth=depth, num_heads=max(1, width // 64), mean=CLIP_MEAN,
                                std=CLIP_STD)
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / width
    if mlp_ratio != 4.0:
        arch["mlp_ratio"] = mlp_ratio
    return arch


def _fit_pos_embed(sd: dict[str, torch.Tensor], encoder: CLIPEncoder) -> dict[str, torch.Tensor]:
    """Resample a square ``pos_embed`` grid to the encoder's (input sizes differ); else unchanged."""
    pe, own = sd.get("pos_embed"), encoder.vit.pos_embed
    if pe is None or own is None or pe.shape == own.shape or pe.ndim != 3 or pe.shape[-1] != own.shape[-1]:
        return sd
    prefix = encoder.num_prefix_tokens
    grid = math.isqrt(pe.shape[1] - prefix)
    if grid * grid != pe.shape[1] - prefix:
        return sd
    new = resample_abs_pos_embed(pe.float(), new_size=list(encoder.grid_size), old_size=[grid, grid],
                                 num_prefix_tokens=prefix)
    return {**sd, "pos_embed": new.to(pe.dtype)}


def load_public(arch: str | None, path: str | Path, **cfg: Any) -> CLIPEncoder:
    """A :class:`CLIPEncoder` with public CLIP weights from ``path`` (see the module docstring):
    architecture from the timm name ``arch`` (``None``: from the file's shapes), overridden by ``cfg``."""
    base: dict[str, Any] = {}
    if arch is not None:
        import timm

        if not timm.is_model(arch.split(".")[0]):
            raise ValueError(f"unknown timm architecture {arch!r} in CLIP weights spec")
        pcfg = timm.models.get_pretrained_cfg(arch)
        base = dict(timm_model=arch, patch_size=None, embed_dim=None, depth=None, num_heads=None)
        if pcfg is not None:
            base.update(input_size=int(pcfg.input_size[-1]), mean=tuple(pcfg.mean), std=tuple(pcfg.std))
    sd = to_timm_layout(read_state_dict(path))
    if arch is None:
        base = infer_open_clip_arch(sd)
    base["proj_dim"] = int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0
    encoder = CLIPEncoder(**{**base, **cfg})
    load_state_dict_checked(encoder.vit, _fit_pos_embed(sd, encoder), str(path))
    return encoder


@register_encoder("clip")
def clip(weights: str | None = None, **cfg: Any) -> CLIPEncoder:
    """CLIP-token encoder (trainable). ``weights``: ``None``, a robrep ``.pt`` checkpoint,
    ``"timm:<name>@<file>"`` or ``"open_clip:<file>"`` (see the module docstring)."""
    if weights is None:
        return CLIPEncoder(**cfg)
    weights = str(weights)
    if weights.startswith(("timm:", "hf-hub:")):
        from robrep.encoders.hub import timm_weights_file

        arch, file = timm_weights_file(weights)  # a given file, or the Hub's (local cache first)
        return load_public(arch, str(file), **cfg)
    if weights.startswith("open_clip:"):
        return load_public(None, weights[len("open_clip:"):], **cfg)
    if Path(weights).suffix == ".pt":
        return load_checkpoint_as(weights, CLIPEncoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unrecognised CLIP weights {weights!r}; use a robrep .pt checkpoint, "
                     "'timm:<timm model name>@<file>' or 'open_clip:<file>'")
