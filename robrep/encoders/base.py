"""The encoder contract: ``Encoder`` (a frozen ``nn.Module``) and the ``SpatialFeatures`` it returns.

Images cross public boundaries as uint8 ``(B, H, W, 3)`` (numpy or torch, any H, W);
:meth:`Encoder.preprocess` turns them into the float ``(B, 3, S, S)`` tensor the network takes
(resize to the encoder's ``input_size``, scale to [0, 1], normalise by its mean/std).
:meth:`Encoder.forward` returns tokens ``(B, N, D)`` on a grid ``(h, w)`` (N = h·w) and, where
the family has one, a global token ``(B, D)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any, ClassVar, ContextManager, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robrep.precision import autocast, check_precision


@dataclass(frozen=True)
class SpatialFeatures:
    """Frozen features of a batch: ``tokens (B, N, D)``, ``grid (h, w)``, ``global_token (B, D) | None``."""

    tokens: torch.Tensor
    grid: tuple[int, int]
    global_token: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be (B, N, D), got shape {tuple(self.tokens.shape)}")
        h, w = self.grid
        if self.tokens.shape[1] != h * w:
            raise ValueError(f"tokens have N={self.tokens.shape[1]} but grid {self.grid} has {h * w} cells")
        if self.global_token is not None and self.global_token.shape != (self.tokens.shape[0], self.tokens.shape[2]):
            raise ValueError(f"global_token must be (B, D) = {(self.tokens.shape[0], self.tokens.shape[2])}, "
                             f"got {tuple(self.global_token.shape)}")

    def as_map(self) -> torch.Tensor:
        """Tokens as a feature map ``(B, D, h, w)`` (row-major grid, top-left first)."""
        b, _, d = self.tokens.shape
        return self.tokens.transpose(1, 2).reshape(b, d, *self.grid)

    def to(self, *args: Any, **kwargs: Any) -> "SpatialFeatures":
        g = None if self.global_token is None else self.global_token.to(*args, **kwargs)
        return SpatialFeatures(self.tokens.to(*args, **kwargs), self.grid, g)

    @staticmethod
    def cat(parts: Sequence["SpatialFeatures"]) -> "SpatialFeatures":
        """Concatenate along the batch axis."""
        glob = None if parts[0].global_token is None else torch.cat([p.global_token for p in parts])
        return SpatialFeatures(torch.cat([p.tokens for p in parts]), parts[0].grid, glob)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Encoder(nn.Module):
    """A frozen image encoder. Subclasses implement :meth:`encode` and set ``family``.

    ``config`` holds the constructor arguments (JSON-able), so ``type(enc)(**enc.config)``
    rebuilds the architecture and a checkpoint = family + config + state dict.
    """

    family: ClassVar[str] = "base"
    has_global_token: ClassVar[bool] = False

    def __init__(self, input_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.input_size = int(input_size)
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.config: dict[str, Any] = {}
        self.language: str | None = None  # instruction for language-conditioned families
        self.precision = "float32"        # compute precision of forward passes (set_precision)

    # ------------------------------------------------------------------ to implement
    def encode(self, x: torch.Tensor) -> SpatialFeatures:
        """Network forward on preprocessed ``x (B, 3, S, S)``."""
        raise NotImplementedError

    @property
    def feature_dim(self) -> int:
        """D, the token width."""
        raise NotImplementedError

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the token grid at ``input_size``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared behaviour
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def set_precision(self, precision: str | None) -> "Encoder":
        """Run forward passes at ``precision`` (``float32`` | ``bfloat16`` | ``float16`` autocast,
        :mod:`robrep.precision`); weights stay as they are and features come out float32."""
        self.precision = check_precision(precision)
        return self

    def computing(self) -> ContextManager:
        """Gradient-free context of one forward pass at this encoder's precision."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(autocast(self.device, self.precision))
        return stack

    def as_output(self, feats: SpatialFeatures) -> SpatialFeatures:
        """Features in the encoder's parameter dtype (autocast may hand back bfloat16/float16)."""
        return feats if feats.tokens.dtype == self.dtype else feats.to(self.dtype)

    def freeze(self) -> "Encoder":
        """Eval mode and no gradients, permanently (``train()`` cannot undo it)."""
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        self._frozen = True
        return self

    def train(self, mode: bool = True) -> "Encoder":
        if mode and getattr(self, "_frozen", False):
            return self  # frozen encoders stay in eval mode
        return super().train(mode)

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` → normalised float ``(B, 3, S, S)`` on the encoder's device/dtype."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 (B, H, W, 3) in [0, 255], got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must have shape (B, H, W, 3), got {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (B = 0)")
        x = images.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return ((x - self.pixel_mean) / self.pixel_std).to(self.dtype)

    def forward(self, x: torch.Tensor) -> SpatialFeatures:
        """Preprocessed ``(B, 3, S, S)`` → :class:`SpatialFeatures`. No gradients flow."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"{self.family}: expected (B, 3, {self.input_size}, {self.input_size}) from "
                             f"preprocess(), got {tuple(x.shape)}")
        with self.computing():
            feats = self.encode(x)
        return self.as_output(feats)

    def encode_images(self, images: np.ndarray | torch.Tensor, batch_size: int = 64) -> SpatialFeatures:
        """uint8 ``(B, H, W, 3)`` → features, in batches of ``batch_size``."""
        parts = [self(self.preprocess(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        if not parts:
            raise ValueError("images is an empty batch (B = 0)")
        return parts[0] if len(parts) == 1 else SpatialFeatures.cat(parts)

    def encode_frames(self, images: np.ndarray | torch.Tensor, texts: Sequence[str] | str | None = None) -> SpatialFeatures:
        """uint8 ``(B, H, W, 3)`` (+ instructions, for language-conditioned families) → features in one
        batched call. ``texts``: one string for every image or one per image (:func:`per_image_texts`);
        ``None``, or a family without language, encodes the images alone."""
        x = self.preprocess(images)
        if texts is None or not hasattr(self, "encode_with_language"):
            return self(x)
        return self.encode_with_language(x, per_image_texts(texts, x.shape[0]))

    def identity(self) -> dict[str, Any]:
        """What downstream artefacts record: family, config and the weights' content hash."""
        return {"family": self.family, "config": self.config, "weights_hash": self.weights_hash()}

    def weights_hash(self) -> str:
        """sha256 (hex, 16 chars) of the config and every tensor of the state dict."""
        return content_hash(self.config, self.state_dict())

    def output_shape(self) -> tuple[int, int]:
        """(N, D) of ``tokens`` for one image, without running the network."""
        h, w = self.grid_size
        return h * w, self.feature_dim


_WEIGHTS_FOLLOW: contextvars.ContextVar[bool] = contextvars.ContextVar("robrep_weights_follow", default=False)


@contextlib.contextmanager
def weights_follow() -> Iterator[None]:
    """Within: every encoder built is about to receive a complete state dict (a checkpoint's, loaded strictly),
    so a family may skip its random initialisation — the values would be overwritten. Random-init encoders
    are never built inside it; the previous state is restored on exit."""
    token = _WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _WEIGHTS_FOLLOW.reset(token)


def weights_follow_active() -> bool:
    """Whether the encoder being built gets its weights from a state dict next (:func:`weights_follow`)."""
    return _WEIGHTS_FOLLOW.get()


def per_image_texts(texts: Sequence[str] | str | np.ndarray, batch: int) -> list[str]:
    """One instruction per image: a single string is repeated ``batch`` times, a sequence (or array, e.g. a
    vector env's ``obs["instruction"]``) must hold exactly ``batch``; ``ValueError`` otherwise."""
    out = [str(texts)] * batch if isinstance(texts, str) else [str(t) for t in np.asarray(texts).reshape(-1)]
    if len(out) != batch:
        raise ValueError(f"got {len(out)} instructions for {batch} observations")
    return out


def content_hash(config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """Deterministic sha256 of a JSON config and tensors (by sorted key, float32 bytes)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu")
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        buf = io.BytesIO()
        np.save(buf, t.float().numpy() if t.is_floating_point() else t.numpy())
        h.update(buf.getvalue())
    return h.hexdigest()[:16]
