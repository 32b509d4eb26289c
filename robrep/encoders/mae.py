"""MAE family: a timm ViT trained (in-domain) as a masked autoencoder, or loaded from public MAE weights.

Registered name ``"mae"`` (default readout ``"attention"``). The in-domain default architecture is
sized for a 2-core CPU: ViT patch 8 at 96 px → a 12 × 12 grid, width 192, depth 6, 3 heads, class
token (≈ 2.7 M parameters). Tokens are the final-norm patch tokens ``(B, 144, 192)``; the global
token is the class token (or, if ``class_token=False``, the mean of the patch tokens).

``weights=`` of the factory (and of :func:`robrep.encoders.load.load_encoder`):

* ``None`` — random init (2-D sin-cos position embedding, as MAE), for in-domain pretraining;
* ``"<robrep checkpoint>.pt"`` — an encoder saved by :func:`robrep.encoders.checkpoint.save_checkpoint`;
* ``"timm:<timm name>"`` / ``"hf-hub:<repo>"`` — public timm weights by name, from the local Hugging Face cache
  (downloaded into it only when online; :mod:`robrep.encoders.hub`), e.g. ``"timm:vit_base_patch16_224.mae"``;
* ``"timm:<timm name>@<path>"`` — timm / Hugging Face cache layout: ``<path>`` is a
  ``model.safetensors`` / ``pytorch_model.bin`` with timm's ViT key names, or the snapshot directory
  holding one, e.g. ``"timm:vit_base_patch16_224.mae@/cache/models--timm--vit_base_patch16_224.mae/snapshots/<rev>"``.
  The architecture, input size and mean/std come from timm's registry entry for ``<timm name>``;
  ``cfg`` may override them (e.g. ``depth=2``) to match the file;
* ``"mae_pth:<path>"`` — the original facebookresearch/mae checkpoint (``{"model": state_dict}``,
  e.g. ``mae_pretrain_vit_base.pth``); decoder keys (``decoder_*``, ``mask_token``) are dropped,
  the architecture is read from the tensors' shapes (heads: 12 for width 768, 16 for 1024/1280,
  else width // 64 — pass ``num_heads=`` otherwise), mean/std are ImageNet's.

Both public formats are read with timm's own reader (``timm.models.load_state_dict``) and loaded
strictly through :func:`~robrep.encoders.checkpoint.load_state_dict_checked`; a ``head.*`` in the
file is dropped and the position embedding is resampled (bicubic, timm's
``resample_abs_pos_embed``) only when ``input_size`` gives a different grid than the file's.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import timm
import torch
from timm.layers import resample_abs_pos_embed

from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD, SpatialFeatures
from robrep.encoders.checkpoint import load_state_dict_checked
from robrep.encoders.hub import timm_weights_file
from robrep.encoders.weights import load_checkpoint_as, read_state_dict, resolve_file, split_weights
from robrep.encoders.registry import register_encoder, register_family
from robrep.encoders.vit import ViTEncoder

#: Files looked for, in order, when a ``timm:`` path is a directory (HF-cache snapshot).
TIMM_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
#: Key prefixes of the facebookresearch/mae checkpoint that belong to the decoder.
MAE_DECODER_PREFIXES = ("decoder_", "mask_token")
_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 16}


def sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(h·w, dim)``, row-major: the first half of the
    channels encodes the row, the second half the column (each half: sin then cos)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    h, w = grid
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angle = pos[:, None] * freqs[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).float()


@register_family
class MAEEncoder(ViTEncoder):
    """A timm ViT whose weights come from MAE pretraining. Shapes as :class:`ViTEncoder`:
    ``(B, 3, S, S)`` → tokens ``(B, h·w, D)``, global token ``(B, D)``."""

    family = "mae"
    has_global_token = True

    def __init__(
        self,
        timm_model: str = "vit_tiny_patch16_224",
        input_size: int = 96,
        patch_size: int | None = 8,
        embed_dim: int | None = 192,
        depth: int | None = 6,
        num_heads: int | None = 3,
        class_token: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(timm_model, input_size, patch_size, embed_dim, depth, num_heads, class_token, mean, std,
                         **timm_kwargs)
        self.init_pos_embed()

    def init_pos_embed(self) -> None:
        """MAE initialisation: 2-D sin-cos on the patch positions, zeros on the prefix tokens."""
        pe = self.vit.pos_embed
        if pe is None or self.feature_dim % 4:
            return
        n = self.grid_size[0] * self.grid_size[1]
        with torch.no_grad():
            pe.zero_()
            pe[0, pe.shape[1] - n:] = sincos_2d(self.feature_dim, self.grid_size).to(pe.dtype)

    def split(self, tokens: torch.Tensor) -> SpatialFeatures:
        """``(B, P + N, D)`` → features; global = class token, or the patch-token mean without one."""
        feats = super().split(tokens)
        if feats.global_token is None:
            return SpatialFeatures(feats.tokens, feats.grid, feats.tokens.mean(dim=1))
        return feats


# ---------------------------------------------------------------------------------------------- loading
def adapt_to_vit(state_dict: Mapping[str, torch.Tensor], encoder: ViTEncoder,
                 prefix: str = "") -> dict[str, torch.Tensor]:
    """Drop a classifier ``{prefix}head.*``; resample ``{prefix}pos_embed`` to the encoder's grid if
    only the grid differs (``prefix`` = where the timm ViT's keys sit in ``state_dict``)."""
    out = {k: v for k, v in state_dict.items() if not k.startswith(prefix + "head.")}
    pe, own = out.get(prefix + "pos_embed"), encoder.vit.pos_embed
    if pe is not None and own is not None and pe.ndim == 3 and pe.shape[-1] == own.shape[-1] \
            and pe.shape[1] != own.shape[1]:
        p = encoder.num_prefix_tokens
        old = pe.shape[1] - p
        side = math.isqrt(old)
        if side * side == old:
            out[prefix + "pos_embed"] = resample_abs_pos_embed(pe, new_size=list(encoder.grid_size),
                                                               old_size=[side, side], num_prefix_tokens=p)
    return out


def load_vit_weights(encoder: ViTEncoder, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load timm-named ViT tensors into ``encoder.vit`` (WeightsMismatchError names bad keys)."""
    load_state_dict_checked(encoder.vit, adapt_to_vit(state_dict, encoder), source)


def timm_defaults(name: str) -> dict[str, Any]:
    """Architecture + preprocessing of a timm model name: its own sizes, input size and mean/std."""
    try:
        pcfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:
        raise ValueError(f"timm does not know the weights {name!r}: {exc}") from exc
    if pcfg is None:
        raise ValueError(f"timm does not know the model {name!r}")
    return dict(timm_model=name, input_size=int(pcfg.input_size[-1]), patch_size=None, embed_dim=None, depth=None,
                num_heads=None, class_token=True, mean=[float(m) for m in pcfg.mean],
                std=[float(s) for s in pcfg.std])


def mae_pth_arch(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture of a facebookresearch/mae encoder from its tensors' shapes."""
    try:
        width, _, patch, _ = state_dict["patch_embed.proj.weight"].shape
        tokens = state_dict["pos_embed"].shape[1]
    except KeyError as exc:
        raise ValueError(f"not an MAE checkpoint: no {exc.args[0]!r} among its keys") from None
    depth = 1 + max((int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")), default=-1)
    cls = "cls_token" in state_dict
    side = math.isqrt(tokens - int(cls))
    arch = dict(timm_model="vit_base_patch16_224", input_size=side * patch, patch_size=patch, embed_dim=width,
                depth=depth, num_heads=_HEADS_BY_WIDTH.get(width, max(1, width // 64)), class_token=cls,
                mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    fc1 = state_dict.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and fc1.shape[0] != 4 * width:
        arch["mlp_ratio"] = fc1.shape[0] / width
    return arch


@register_encoder("mae")
def mae(weights: str | None = None, **cfg: Any) -> MAEEncoder:
    """The MAE encoder: in-domain architecture (``cfg`` = :class:`MAEEncoder` kwargs) or public
    weights (see the module docstring for the ``weights`` syntax). Returned unfrozen."""
    if weights is None:
        return MAEEncoder(**cfg)
    scheme, arg = split_weights(str(weights))
    if scheme in ("timm", "hf-hub"):
        name, file = timm_weights_file(str(weights))  # a given file, or the Hub's (local cache first)
        encoder = MAEEncoder(**{**timm_defaults(name), **cfg})
        load_vit_weights(encoder, read_state_dict(file), str(file))
        return encoder
    if scheme == "mae_pth":
        file = resolve_file(arg)
        state = {k: v for k, v in read_state_dict(file).items() if not k.startswith(MAE_DECODER_PREFIXES)}
        encoder = MAEEncoder(**{**mae_pth_arch(state), **cfg})
        load_vit_weights(encoder, state, str(file))
        return encoder
    if scheme == "":
        return load_checkpoint_as(arg, MAEEncoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown MAE weights format {scheme!r} in {weights!r}; use 'timm:<name>[@<path>]', 'hf-hub:<repo>', "
                     "'mae_pth:<path>' or a robrep checkpoint path")
