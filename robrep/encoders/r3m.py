"""R3M family: the ResNet trained by R3M (time contrast + video-language alignment on Ego4D) as a spatial encoder.

Registered name ``"r3m"``. A torchvision ResNet (18, 34 or 50) without its pooling and classifier; tokens are the
``layer4`` feature map ``(B, h·w, C)`` (C = 512 or 2048; a 3 × 3 grid at 96 px), the global token its spatial mean —
R3M's own 512/2048-d representation. Preprocessing as R3M's: resize, scale to [0, 1], ImageNet mean/std.

``weights=``: ``None`` (random init: the control), ``"r3m:<path>"`` — the R3M release (``model.pt``:
``{"r3m": state_dict}`` of the DataParallel-wrapped model, keys ``module.convnet.*``; the language-reward head
``module.lang_enc.*`` / ``module.lang_rew.*`` is dropped; depth read from the keys) — or a robrep checkpoint.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Encoder, SpatialFeatures
from robrep.encoders.checkpoint import load_state_dict_checked
from robrep.encoders.registry import register_encoder, register_family
from robrep.encoders.weights import load_checkpoint_as, resolve_file, split_weights

DEPTHS = (18, 34, 50)
#: Last ``layer3`` block index per ResNet depth (tells 34 from 50 with the bottleneck test below).
_LAYER3_BLOCKS = {18: 2, 34: 6, 50: 6}


@register_family
class R3MEncoder(Encoder):
    """torchvision ResNet-``depth`` trunk (random init) → ``layer4`` tokens + their mean."""

    family = "r3m"
    has_global_token = True

    def __init__(self, depth: int = 50, input_size: int = 96, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__(input_size, mean, std)
        if depth not in DEPTHS:
            raise ValueError(f"R3M ResNet depth must be one of {DEPTHS}, got {depth}")
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        net.fc = nn.Identity()  # as R3M's convnet: no classifier
        self.convnet = net
        self.depth = int(depth)
        self.config = dict(depth=int(depth), input_size=int(input_size), mean=list(mean), std=list(std))

    @property
    def feature_dim(self) -> int:
        return 512 if self.depth < 50 else 2048

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.input_size
        for _ in range(5):  # stride-2 stem conv, max-pool, layers 2-4
            side = (side + 1) // 2
        return side, side

    def encode(self, x: torch.Tensor) -> SpatialFeatures:
        n = self.convnet
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        fmap = n.layer4(n.layer3(n.layer2(n.layer1(x))))  # (B, C, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)
        return SpatialFeatures(tokens, (fmap.shape[-2], fmap.shape[-1]), tokens.mean(dim=1))


def r3m_state(raw: Any) -> dict[str, torch.Tensor]:
    """The convnet tensors of an R3M release (``{"r3m": state_dict}``), ``module.convnet.`` stripped."""
    sd = raw.get("r3m", raw) if isinstance(raw, Mapping) else raw
    if not isinstance(sd, Mapping) or not any(k.startswith("module.convnet.") for k in sd):
        raise ValueError("not an R3M checkpoint: no 'module.convnet.*' keys (expected {'r3m': state_dict})")
    return {k[len("module.convnet."):]: v for k, v in sd.items() if k.startswith("module.convnet.")}


def r3m_depth(state: Mapping[str, torch.Tensor]) -> int:
    """ResNet depth of R3M convnet tensors: bottlenecks (``conv3``) → 50, else 34 or 18 by ``layer3``'s blocks."""
    if any(".conv3." in k for k in state):
        return 50
    last = max(int(k.split(".")[1]) for k in state if k.startswith("layer3."))
    return 34 if last + 1 >= _LAYER3_BLOCKS[34] else 18


@register_encoder("r3m")
def r3m(weights: str | None = None, **cfg: Any) -> R3MEncoder:
    """The R3M encoder (see the module docstring for ``weights``). Returned unfrozen."""
    if weights is None:
        return R3MEncoder(**cfg)
    scheme, arg = split_weights(str(weights))
    if scheme == "r3m":
        file = resolve_file(arg)
        try:
            raw = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"cannot read R3M weights from {file} ({type(exc).__name__}: {exc})") from exc
        state = r3m_state(raw)
        encoder = R3MEncoder(**{"depth": r3m_depth(state), **cfg})
        load_state_dict_checked(encoder.convnet, state, str(file))
        return encoder
    if scheme == "":
        return load_checkpoint_as(arg, R3MEncoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown R3M weights format {scheme!r} in {weights!r}; use 'r3m:<path>' or a robrep checkpoint")
