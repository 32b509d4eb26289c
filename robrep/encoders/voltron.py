"""Voltron-style family (V-Cond): an MAE whose ViT also attends to the task instruction's language tokens.

Registered name ``"voltron"`` (default readout ``"attention"``). Language = the frozen MiniLM's
contextual token embeddings (:func:`robrep.encoders.language.embed_tokens`, ``(B, L, 384)``),
projected to the ViT width by ``lang_proj`` plus a learned modality embedding ``lang_token``;
image tokens (class token + patches, after the position embedding) get ``img_token``. The
sequence ``[language; image]`` runs through the ViT blocks jointly (padding language tokens are
masked as keys) and only the image part is returned: patch tokens ``(B, h·w, D)`` and the class
token as global token (the patch-token mean when ``class_token=False``).

Language is optional at feature time: ``encoder.language`` (a string set by the caller, applied
to every image) or :meth:`VoltronEncoder.encode_with_language` (one instruction per image, ``None``
entries allowed). ``None`` means no language tokens at all, which equals masking them out — the
objective trains with language dropout so that path is in-distribution.

Two block styles (``style``): ``"vit"`` (default; the timm ViT block of the MAE family —
LayerNorm, GELU MLP — so MAE vs Voltron differ only by the language) and ``"vcond"`` (the released
V-Cond blocks: RMSNorm, SwishGLU MLP, LayerScale 0.1), used for the public weights.
In-domain default: ViT patch 8 at 96 px (12 × 12 grid), width 192, depth 6, 3 heads (≈ 2.8 M).

``weights=``: ``None``; a robrep checkpoint ``.pt``; ``"vcond:v-cond"`` / ``"vcond:v-cond-base"`` (a released model by
id, from voltron-robotics' cache folders: :func:`find_vcond`); or ``"vcond:<path>"``, the voltron-robotics
release (``v-cond.pt`` = ``(state_dict, optimizer_state)`` with keys ``patch2embed.*``,
``encoder_pe``, ``encoder_blocks.N.*``, ``encoder_norm.g``, ``lang2encoder.*``, ``img_token``,
``lang_token``, optional ``cls_token``; decoder, ``mask_token`` and ``lm.*`` are dropped).
``<path>`` is the file or its cache directory (``<cache>/v-cond/`` holding ``v-cond.pt`` and
``v-cond-config.json``, which gives the head count; without it heads = width // 64). The
release's ``lang2encoder`` expects DistilBERT (768-d) tokens, which robrep does not ship: such an
encoder works without language only (setting language raises).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from timm.layers import GluMlp, RmsNorm
from torch import nn

from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD, SpatialFeatures
from robrep.encoders.checkpoint import load_state_dict_checked
from robrep.encoders.language import LANGUAGE_DIM, embed_tokens
from robrep.encoders.mae import MAEEncoder, adapt_to_vit
from robrep.encoders.weights import load_checkpoint_as, resolve_file, split_weights
from robrep.encoders.registry import register_encoder, register_family

STYLES = ("vit", "vcond")
#: (pattern, replacement) from the voltron-robotics V-Cond state dict to this module's keys.
VCOND_KEYS: tuple[tuple[str, str], ...] = (
    (r"^patch2embed\.proj\.(weight|bias)$", r"vit.patch_embed.proj.\1"),
    (r"^encoder_pe$", "vit.pos_embed"),
    (r"^cls_token$", "vit.cls_token"),
    (r"^encoder_blocks\.(\d+)\.pre_norm_attn\.g$", r"vit.blocks.\1.norm1.weight"),
    (r"^encoder_blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$", r"vit.blocks.\1.attn.\2.\3"),
    (r"^encoder_blocks\.(\d+)\.layer_scale_attn\.gamma$", r"vit.blocks.\1.ls1.gamma"),
    (r"^encoder_blocks\.(\d+)\.pre_norm_mlp\.g$", r"vit.blocks.\1.norm2.weight"),
    (r"^encoder_blocks\.(\d+)\.mlp\.0\.project\.(weight|bias)$", r"vit.blocks.\1.mlp.fc1.\2"),
    (r"^encoder_blocks\.(\d+)\.mlp\.2\.(weight|bias)$", r"vit.blocks.\1.mlp.fc2.\2"),
    (r"^encoder_blocks\.(\d+)\.layer_scale_mlp\.gamma$", r"vit.blocks.\1.ls2.gamma"),
    (r"^encoder_norm\.g$", "vit.norm.weight"),
    (r"^lang2encoder\.(weight|bias)$", r"lang_proj.\1"),
)
#: Key prefixes of the V-Cond checkpoint not used by the encoder (decoder, language model).
VCOND_DROP = ("lm.", "encoder2decoder.", "decoder_", "mask_token")


def _style_kwargs(style: str, mlp_ratio: float) -> dict[str, Any]:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style == "vit":
        return dict(mlp_ratio=mlp_ratio)
    # SwishGLU: fc1 D -> 2·r·D (value, gate), fc2 r·D -> D; RMSNorm as x / rms(x) · g
    return dict(mlp_ratio=2 * mlp_ratio, mlp_layer=GluMlp, act_layer="silu", init_values=0.1,
                norm_layer=partial(RmsNorm, eps=1e-8))


@register_family
class VoltronEncoder(MAEEncoder):
    """MAE ViT with language tokens in its sequence. ``(B, 3, S, S)`` (+ texts) → tokens ``(B, h·w, D)``."""

    family = "voltron"

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
        style: str = "vit",
        mlp_ratio: float = 4.0,
        language_dim: int = LANGUAGE_DIM,
        max_tokens: int = 32,
        **timm_kwargs: Any,
    ) -> None:
        style_kwargs = _style_kwargs(style, mlp_ratio)
        clash = sorted(set(style_kwargs) & set(timm_kwargs))
        if clash:
            raise ValueError(f"{clash} are set by style={style!r}; do not pass them")
        super().__init__(timm_model, input_size, patch_size, embed_dim, depth, num_heads, class_token, mean, std,
                         **style_kwargs, **timm_kwargs)
        width = self.feature_dim
        self.lang_proj = nn.Linear(language_dim, width)
        self.lang_token = nn.Parameter(torch.zeros(1, 1, width))
        self.img_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.lang_token, std=0.02)
        nn.init.normal_(self.img_token, std=0.02)
        self.max_tokens = int(max_tokens)
        base = {k: v for k, v in self.config.items() if k not in style_kwargs}
        self.config = {**base, "style": style, "mlp_ratio": mlp_ratio, "language_dim": language_dim,
                       "max_tokens": max_tokens}

    # ------------------------------------------------------------------ language
    def language_tokens(self, texts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Projected language tokens ``(B, L, D)`` (with the modality embedding) and their mask
        ``(B, L)`` (True = attend; all False for a ``None`` text). ``None`` if every text is ``None``."""
        if all(t is None for t in texts):
            return None
        if self.lang_proj.in_features != LANGUAGE_DIM:
            raise ValueError(f"this voltron encoder's language projection takes {self.lang_proj.in_features}-d "
                             f"tokens (the released V-Cond: DistilBERT), but robrep's language model gives "
                             f"{LANGUAGE_DIM}-d MiniLM tokens; use it without language (language=None)")
        emb, mask = embed_tokens(["" if t is None else t for t in texts], self.max_tokens)
        for i, t in enumerate(texts):
            if t is None:
                mask[i] = False
        emb = emb.to(device=self.device, dtype=self.lang_proj.weight.dtype)
        return self.lang_proj(emb) + self.lang_token, mask.to(self.device)

    def joint(self, image: torch.Tensor, language: tuple[torch.Tensor, torch.Tensor] | None,
              depth: int | None = None) -> torch.Tensor:
        """Embedded image tokens ``(B, P + n, D)`` (any subset of patches, after :meth:`embed`) and
        optional language ``((B, L, D), (B, L))`` → the image tokens after the first ``depth`` blocks
        (``None`` = all) + final norm."""
        x = image + self.img_token
        if language is None:
            return self.transform(x, depth)
        lang, mask = language
        attn_mask = None
        if not bool(mask.all()):
            keep = torch.cat([mask, mask.new_ones(x.shape[0], x.shape[1])], dim=1)
            attn_mask = keep[:, None, None, :]  # (B, 1, 1, L + P + n): keys to attend
        return self.transform(torch.cat([lang, x], dim=1), depth, attn_mask)[:, lang.shape[1]:]

    def features(self, x: torch.Tensor, texts: Sequence[str | None] | None) -> SpatialFeatures:
        """``(B, 3, S, S)`` and per-image texts (or ``None``) → :class:`SpatialFeatures` after block
        ``feature_layer`` (gradients allowed)."""
        language = None if texts is None else self.language_tokens(texts)
        return self.split(self.joint(self.embed(x), language, self.feature_layer))

    def encode(self, x: torch.Tensor) -> SpatialFeatures:
        texts = None if self.language is None else [self.language] * x.shape[0]
        return self.features(x, texts)

    def encode_with_language(self, x: torch.Tensor, texts: Sequence[str | None]) -> SpatialFeatures:
        """Preprocessed ``(B, 3, S, S)`` and one instruction per image (``None`` = no language) →
        features, without gradients (like :meth:`forward`); ignores ``self.language``."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"{self.family}: expected (B, 3, {self.input_size}, {self.input_size}) from "
                             f"preprocess(), got {tuple(x.shape)}")
        if isinstance(texts, str) or len(texts) != x.shape[0]:
            raise ValueError(f"expected a list of {x.shape[0]} texts (one per image), got {texts!r:.80}")
        with self.computing():
            feats = self.features(x, list(texts))
        return self.as_output(feats)


# ---------------------------------------------------------------------------------------------- loading
def read_vcond(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict of a voltron-robotics checkpoint (``(state_dict, optimizer)`` tuple or a dict)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read V-Cond weights from {path} ({exc.__class__.__name__}: {exc})") from exc
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], Mapping):
        raw = raw[0]
    if isinstance(raw, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
    if not isinstance(raw, Mapping) or "patch2embed.proj.weight" not in raw:
        raise ValueError(f"{path} is not a V-Cond checkpoint (no 'patch2embed.proj.weight' state-dict key)")
    return dict(raw)


def remap_vcond(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """V-Cond keys → :class:`VoltronEncoder` keys; unused parts dropped, unknown keys kept as they are."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(VCOND_DROP):
            continue
        for pattern, repl in VCOND_KEYS:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key)
                break
        out[key] = value
    return out


def vcond_arch(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`VoltronEncoder` kwargs of a V-Cond state dict (+ its ``*-config.json`` if any)."""
    width, _, patch, _ = state_dict["patch2embed.proj.weight"].shape
    cls = "cls_token" in state_dict
    side = int(round((state_dict["encoder_pe"].shape[1] - int(cls)) ** 0.5))
    depth = 1 + max((int(k.split(".")[1]) for k in state_dict if k.startswith("encoder_blocks.")), default=-1)
    fc2 = state_dict.get("encoder_blocks.0.mlp.2.weight")
    return dict(timm_model="vit_small_patch16_224", input_size=int(config.get("resolution", side * patch)),
                patch_size=patch, embed_dim=width, depth=depth,
                num_heads=int(config.get("encoder_n_heads", max(1, width // 64))), class_token=cls,
                mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), style="vcond",
                mlp_ratio=(fc2.shape[1] / width) if fc2 is not None else 4.0,
                language_dim=int(state_dict["lang2encoder.weight"].shape[1]) if "lang2encoder.weight" in state_dict
                else LANGUAGE_DIM)


#: Released V-Cond models by voltron-robotics model id (its ``MODEL_REGISTRY``): Google Drive file ids of the
#: checkpoint and config, which ``voltron.load(<id>)`` downloads to ``<cache>/<id>/<id>.pt`` and ``<id>-config.json``.
VCOND_MODELS = {"v-cond": ("12g5QckQSMKqrfr4lFY3UPdy7oLw4APpG", "1O4oqRIblfS6PdFlZzUcYIX-Rqe6LbvnD"),
                "v-cond-base": ("1PwczOijL0hfYD8DI4xLOPLf1xL_7Kg9S", "1CLe7CaIzTEcGCijIgw_S-uqMXHfBFSLI")}


def vcond_caches() -> list[Path]:
    """Where released V-Cond models are looked for by id: ``$VOLTRON_CACHE``, voltron-robotics' default ``./cache``
    and ``~/.cache/voltron``."""
    import os

    env = os.environ.get("VOLTRON_CACHE")
    return [Path(p).expanduser() for p in ([env] if env else []) + ["cache", "~/.cache/voltron"]]


def find_vcond(model_id: str) -> Path:
    """The cached folder ``<cache>/<model_id>/`` of a released V-Cond model; FileNotFoundError naming the files,
    the folders searched and where to get them (voltron-robotics downloads from Google Drive, not the HF Hub)."""
    for cache in vcond_caches():
        if (cache / model_id / f"{model_id}.pt").is_file():
            return cache / model_id
    ckpt, config = VCOND_MODELS[model_id]
    searched = ", ".join(str(c / model_id) for c in vcond_caches())
    raise FileNotFoundError(
        f"V-Cond model {model_id!r} not found: put {model_id}.pt and {model_id}-config.json in one of {searched} "
        f"(or set VOLTRON_CACHE). voltron-robotics' voltron.load({model_id!r}) leaves them there; they are Google "
        f"Drive files {ckpt} (checkpoint) and {config} (config)")


def load_vcond(path: str, **cfg: Any) -> VoltronEncoder:
    """A :class:`VoltronEncoder` with the voltron-robotics V-Cond weights at ``path`` (file or directory), or of a
    released model id (``v-cond``, ``v-cond-base``) found in the voltron caches (:func:`find_vcond`)."""
    if path in VCOND_MODELS and not Path(path).exists():
        path = str(find_vcond(path))
    p = Path(path).expanduser()
    if p.is_dir() and not any((p / n).is_file() for n in ("v-cond.pt", "v-cond-base.pt")):
        found = sorted(p.glob("*.pt"))
        file = resolve_file(found[0] if len(found) == 1 else p / "v-cond.pt")
    else:
        file = resolve_file(p, ("v-cond.pt", "v-cond-base.pt"))
    config_file = file.with_name(f"{file.stem}-config.json")
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    state = read_vcond(file)
    encoder = VoltronEncoder(**{**vcond_arch(state, config), **cfg})
    load_state_dict_checked(encoder, adapt_to_vit(remap_vcond(state), encoder, prefix="vit."), str(file))
    return encoder


@register_encoder("voltron")
def voltron(weights: str | None = None, **cfg: Any) -> VoltronEncoder:
    """The Voltron-style encoder: in-domain architecture (``cfg`` = :class:`VoltronEncoder` kwargs) or
    public V-Cond weights (see the module docstring for the ``weights`` syntax). Returned unfrozen."""
    if weights is None:
        return VoltronEncoder(**cfg)
    scheme, arg = split_weights(str(weights))
    if scheme == "vcond":
        return load_vcond(arg, **cfg)
    if scheme == "":
        return load_checkpoint_as(arg, VoltronEncoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown Voltron weights format {scheme!r} in {weights!r}; use 'vcond:<path>' "
                     "or a robrep checkpoint path")
