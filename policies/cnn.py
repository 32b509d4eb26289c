"""From-scratch image baseline: a CNN trained end to end on the demo images (no frozen encoder).

Two backbones, picked by ``arch`` in ``configs/policy/cnn.yaml``:

* ``small_cnn`` — 4 conv layers (3×3, ``channels`` wide, the first with stride 2, ReLU), as DrQ's encoder;
* ``resnet18`` — torchvision ``resnet18(weights=None)`` without its pooling and classifier
  (feature map 512 × ⌈H/32⌉ × ⌈W/32⌉), robomimic's standard image-BC trunk.

Both end in robomimic-style spatial-softmax keypoints (:class:`robrep.readouts.SpatialSoftmaxReadout`),
so a frame becomes ``(B, 2K)`` keypoint coordinates; the BC head (``policies.heads``) follows.
Random-shift augmentation (:class:`RandomShift`, DrQ) is applied in training mode only.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from robrep.encoders.base import SpatialFeatures
from robrep.readouts import SpatialSoftmaxReadout


class RandomShift(nn.Module):
    """DrQ random shift: pad ``pad`` px on every side (replicating the border), then crop a random
    ``H × W`` window per sample; i.e. a random translation by up to ±``pad`` px. Identity in eval
    mode or when ``pad == 0``. ``(B, C, H, W)`` float → same shape."""

    def __init__(self, pad: int = 4) -> None:
        super().__init__()
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.pad <= 0:
            return x
        b, c, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4, mode="replicate")
        dy = torch.randint(0, 2 * self.pad + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * self.pad + 1, (b,), device=x.device)
        # one window slice per sample: the same crops as a gather over (B, H, W) index grids (the earlier form),
        # 5.5 against 9.4 ms for 64 frames at 96 px on one core; within noise of the whole CNN step
        # (benchmarks/train_step.py)
        crops = [padded[i, :, top:top + h, left:left + w] for i, (top, left) in enumerate(zip(dy.tolist(), dx.tolist()))]
        return torch.stack(crops)  # (B, C, H, W)


def image_batch(images: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Check ``images`` are uint8 ``(B, H, W, 3)`` at the training ``image_size`` and return them as
    float ``(B, 3, H, W)`` in [0, 255] (the input of :class:`RandomShift`). Shared by every image trunk."""
    if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (*image_size, 3):
        raise ValueError(f"expected uint8 images (B, {image_size[0]}, {image_size[1]}, 3) "
                         f"(the training image size), got {images.dtype} {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float()


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


def small_cnn(image_size: tuple[int, int], channels: int = 32, layers: int = 4
              ) -> tuple[nn.Module, int, tuple[int, int]]:
    """DrQ-style conv stack: ``layers`` 3×3 convs (stride 2 first, then 1; no padding), ReLU after each.
    Returns ``(module, out_channels, out_grid (h, w))`` for input ``(B, 3, *image_size)``."""
    mods: list[nn.Module] = []
    h, w = image_size
    for i in range(layers):
        stride = 2 if i == 0 else 1
        mods += [nn.Conv2d(3 if i == 0 else channels, channels, 3, stride=stride), nn.ReLU()]
        h, w = conv_out(h, 3, stride, 0), conv_out(w, 3, stride, 0)
    if min(h, w) < 1:
        raise ValueError(f"images of {image_size} are too small for {layers} conv layers")
    return nn.Sequential(*mods), channels, (h, w)


def resnet18(image_size: tuple[int, int], channels: int | None = None) -> tuple[nn.Module, int, tuple[int, int]]:
    """torchvision ResNet-18 (random init) up to ``layer4``: ``(B, 3, H, W)`` → ``(B, 512, ⌈H/32⌉, ⌈W/32⌉)``.
    ``channels`` is ignored (ResNet-18's widths are fixed)."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None)
    trunk = nn.Sequential(*list(net.children())[:-2])
    return trunk, 512, (math.ceil(image_size[0] / 32), math.ceil(image_size[1] / 32))


BACKBONES: dict[str, Callable[..., tuple[nn.Module, int, tuple[int, int]]]] = {
    "small_cnn": small_cnn,
    "resnet18": resnet18,
}


class ConvTrunk(nn.Module):
    """``{"image": uint8 (B, H, W, 3)}`` → spatial-softmax keypoints ``(B, 2K)`` (x, y in [-1, 1]).

    Pixels are scaled to [-0.5, 0.5]; :class:`RandomShift` (``augment``, ``pad`` px) in training only.
    ``channels_last`` runs the backbone in NHWC memory format (same maths, faster convolutions on CPUs with
    oneDNN and on recent GPUs).
    """

    input_keys = ("image",)

    def __init__(self, image_size: tuple[int, int], arch: str = "small_cnn", channels: int = 32,
                 num_keypoints: int = 32, augment: bool = True, pad: int = 4,
                 learnable_temperature: bool = True, channels_last: bool = False) -> None:
        super().__init__()
        if arch not in BACKBONES:
            raise KeyError(f"unknown CNN backbone {arch!r}; known: {sorted(BACKBONES)}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.backbone, out_channels, self.grid = BACKBONES[arch](self.image_size, channels=channels)
        self.channels_last = bool(channels_last)
        if self.channels_last:  # NHWC convolutions: ResNet-18 trains ~1.2x faster on this CPU in bf16
            self.backbone.to(memory_format=torch.channels_last)
        self.shift = RandomShift(pad if augment else 0)
        self.keypoints = SpatialSoftmaxReadout(out_channels, self.grid, num_keypoints=num_keypoints,
                                               learnable_temperature=learnable_temperature)
        self.output_dim = int(self.keypoints.output_dim)

    def forward(self, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = image_batch(frames["image"], self.image_size).div(255.0).sub(0.5)
        x = self.shift(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fmap = self.backbone(x)  # (B, C, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h·w, C)
        return self.keypoints(SpatialFeatures(tokens, tuple(fmap.shape[-2:])))
