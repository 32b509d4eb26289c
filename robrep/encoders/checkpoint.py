"""Encoder checkpoints: one ``.pt`` file = family + config + state dict + content hash + metadata."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from robrep.encoders.base import Encoder, content_hash, weights_follow
from robrep.encoders.registry import family_class
from robrep.torch_io import load_checked, save_atomic

FORMAT = "robrep-encoder/2"  # /2: + meta_hash over family, config, meta (robrep.torch_io.metadata_hash)
LEGACY_FORMAT = "robrep-encoder/1"

#: sha256 of the committed ``weights/*.pt`` files, written in the legacy format (metadata not hashed): a legacy
#: file is read only when its bytes are exactly one of these, so none of it can be edited unnoticed.
LEGACY_SHA256 = frozenset({
    "f865aa2d9b5137cefd379653b5de132e9a595d032f1022ab8a82e4ab8875db72",  # weights/clip_full.pt
    "42e617d8b92808378bb4e8e14a773fe605ea634634f11c9419284e939a4ede54",  # weights/clip_loto_push_quick.pt
    "786971b6bc67cd960151bdca466251c961fc668a7437d4a8a3bdb0b3345e8e02",  # weights/clip_quick.pt
    "e7314e4e131c769d473f1bfc46fde582673f4c45253b48409c4caf6326852ba7",  # weights/dift_full.pt
    "0b963c045281bb4aa7281a6e5de41fd4584f93eb9c83ea9c05593226c6b93f83",  # weights/dift_loto_push_quick.pt
    "dd7ce2e26479e610707d71bdd115fb24e207cfaebe8ed2b653996f93133e28a7",  # weights/dift_quick.pt
    "3c1be7de8bd1ddb27eb870265011a85d42a80ef310896fd637b870373364c9ab",  # weights/mae_full.pt
    "bef17beb2ac9c0b9059ae7a1996345564ba9b8929516d4745387fe7737477e4f",  # weights/mae_long.pt
    "647262d608f19247a4c10f9e5d8b3b9b20ec843eaa34141c11435b050393c5d4",  # weights/mae_loto_push_quick.pt
    "d2653a122caceac4b390d3bd15cf836777a9ea10009ce933cc64ed54254fcd24",  # weights/mae_quick.pt
    "bc18c460ea6582a55ef5080d5f4a3f7db20f5bef41a388166d4e6424fedc53ce",  # weights/voltron_full.pt
    "2def176826005af477f9b533356e76194494e76c523d9104b03c8852bcac3122",  # weights/voltron_loto_push_quick.pt
    "12c56f3529337dfaa36e0b2c157d4a513b682107992e526246b2f41b79a27171",  # weights/voltron_quick.pt
})


def _known_legacy(path) -> bool:
    """Whether ``path`` is byte for byte one of the committed legacy checkpoints (:data:`LEGACY_SHA256`)."""
    from robrep.digest import file_hash

    return file_hash(path, digits=64) in LEGACY_SHA256


class WeightsMismatchError(ValueError):
    """A state dict does not fit the architecture; the message names the keys."""


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` that fails with the missing, unexpected and mis-shaped keys listed."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f", ... ({len(xs)} in all)" if len(xs) > 8 else "")

        parts = [f"{label} keys: {show(xs)}" for label, xs in
                 (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", shapes)) if xs]
        raise WeightsMismatchError(f"weights from {source} do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def save_checkpoint(encoder: Encoder, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> str:
    """Write ``encoder`` atomically to ``path``; returns its content hash."""
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.cpu() for k, v in encoder.state_dict().items()}
    digest = content_hash(encoder.config, state)
    save_atomic({"format": FORMAT, "family": encoder.family, "config": encoder.config, "state_dict": state,
                 "hash": digest, "meta": dict(meta or {})}, path)
    return digest


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated for format and content hash."""
    return load_checked(path, FORMAT, lambda p: content_hash(p["config"], p["state_dict"]), "robrep encoder",
                        legacy=(LEGACY_FORMAT,), legacy_ok=_known_legacy)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild the encoder saved at ``path`` (not yet frozen or cast). The module is built without its random
    initialisation where the family can skip it (:func:`~robrep.encoders.base.weights_follow`): the strict
    state-dict load below sets every parameter and persistent buffer."""
    payload = read_checkpoint(path)
    with weights_follow():
        encoder = family_class(payload["family"])(**payload["config"])
    load_state_dict_checked(encoder, payload["state_dict"], str(path))
    encoder.checkpoint_meta = payload["meta"]
    return encoder.to(device)
