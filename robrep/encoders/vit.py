"""Shared timm Vision Transformer backbone for the ViT families (MAE, Voltron-style, CLIP-token)."""

from __future__ import annotations

from typing import Any, Sequence

import timm
import torch

from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, SpatialFeatures, weights_follow_active


class ViTEncoder(Encoder):
    """A timm ``VisionTransformer`` (any registered timm ViT name, with architecture overrides).

    ``timm_model`` names the timm architecture; ``patch_size``, ``embed_dim``, ``depth`` and
    ``num_heads`` override it (``None`` keeps timm's value). Tokens are the patch tokens ``(B, h·w, D)``
    after block ``feature_layer`` (1-based; ``None`` = the last block) and the final norm, as timm's
    ``forward_intermediates(norm=True)``; the global token is the class token when ``class_token`` is true.
    ``feature_layer`` is a feature-time choice (:meth:`configure`, like DIFT's up block): pretraining always
    runs every block, and it enters ``config`` (hence the weights hash) only when set.
    Built to receive a checkpoint's weights (:func:`~robrep.encoders.base.weights_follow`), timm's weight
    initialisation is skipped (``weight_init="skip"``, not recorded in ``config``): the state dict overwrites it.
    """

    has_global_token = True
    runtime_keys = ("feature_layer",)  # feature-time choices that `configure` may change on a loaded checkpoint

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
        feature_layer: int | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__(input_size, mean, std)
        overrides = {k: v for k, v in dict(patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                                           num_heads=num_heads).items() if v is not None}
        build = dict(timm_kwargs)
        if weights_follow_active():
            build.setdefault("weight_init", "skip")
        self.vit = timm.create_model(timm_model, pretrained=False, num_classes=0, global_pool="",
                                     img_size=input_size, class_token=class_token, **overrides, **build)
        self.config = dict(timm_model=timm_model, input_size=input_size, patch_size=patch_size, embed_dim=embed_dim,
                           depth=depth, num_heads=num_heads, class_token=class_token, mean=list(mean), std=list(std),
                           **timm_kwargs)
        self.feature_layer = len(self.vit.blocks)
        if feature_layer is not None:
            self.configure(feature_layer)

    def configure(self, feature_layer: int | None = None) -> "ViTEncoder":
        """Read the tokens after block ``feature_layer`` (1 … depth) from now on; recorded in ``config``."""
        if feature_layer is None:
            return self
        depth = len(self.vit.blocks)
        if not 1 <= int(feature_layer) <= depth:
            raise ValueError(f"feature_layer must be in [1, {depth}] for this {depth}-block ViT, got {feature_layer}")
        self.feature_layer = int(feature_layer)
        self.config["feature_layer"] = self.feature_layer
        return self

    @property
    def feature_dim(self) -> int:
        return int(self.vit.embed_dim)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.vit.patch_embed.grid_size)

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.vit.num_prefix_tokens)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch + position embedding with prefix tokens: ``(B, 3, S, S)`` → ``(B, P + N, D)``."""
        return self.vit.norm_pre(self.vit._pos_embed(self.vit.patch_embed(x)))

    def transform(self, tokens: torch.Tensor, depth: int | None = None,
                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The first ``depth`` transformer blocks (``None`` = all) and the final norm on ``(B, L, D)`` (any
        subset of tokens); ``attn_mask`` ``(B, 1, 1, L)`` (True = attend) is passed to every block."""
        blocks = self.vit.blocks if depth is None else self.vit.blocks[:depth]
        for block in blocks:
            tokens = block(tokens) if attn_mask is None else block(tokens, attn_mask=attn_mask)
        return self.vit.norm(tokens)

    def split(self, tokens: torch.Tensor) -> SpatialFeatures:
        """``(B, P + N, D)`` → :class:`SpatialFeatures` (class token as the global token)."""
        p = self.num_prefix_tokens
        glob = tokens[:, 0] if self.vit.cls_token is not None else None
        return SpatialFeatures(tokens[:, p:], self.grid_size, glob)

    def encode(self, x: torch.Tensor) -> SpatialFeatures:
        return self.split(self.transform(self.embed(x), self.feature_layer))
