"""Policy checkpoints: one ``torch.save`` dict per policy, written atomically, with a content hash.

Keys of a checkpoint (format ``robrep-policy/1``)::

    format, hash            content hash of (policy_config, shape_meta, encoder identity) + state_dict
    state_dict              trunk (readout, CNN, or fine-tuned encoder + readout) + head + normalisers (float32, CPU)
    policy_config           the resolved configs/policy/*.yaml the network is rebuilt from
    shape_meta              action_dim, proprio_dim and feature_dim/grid/has_global_token or image_size (+ feature_dim/grid
                            for fine-tuned policies)
    normalization           {"action": {mean, std}, "proprio": {mean, std}} (also in state_dict; for reading)
    encoder                 EncoderSpec fields + identity (family, config, weights_hash) + use_language; None for the CNN
                            (fine-tuned policies: identity of the *base* pretrained encoder, + finetuned_blocks and
                            finetuned_weights_hash; the fine-tuned weights are in state_dict as trunk.encoder.*)
    task, env_kwargs, env_args   to rebuild the env: envs.registration.make_env(task, **env_kwargs)
    instruction             the training demos' instruction if they all share one, else None
    dataset                 path, hash, filter_key, train/valid demo names
    n, seed, config         N demos, seed, the resolved command config
    train                   seconds, steps, best_step, train_loss, train_mse, valid_mse, history
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from robrep.encoders.base import Encoder, content_hash
from robrep.encoders.registry import load_encoder
from robrep.encoders.weights import split_weights
from robrep.precision import check_precision
from robrep.torch_io import load_checked, save_atomic

FORMAT = "robrep-policy/1"


class PolicyCheckpointError(ValueError):
    """A policy checkpoint is missing, unreadable, damaged, or does not match its encoder."""


@dataclass
class EncoderSpec:
    """How to rebuild a frozen encoder with :func:`robrep.encoders.registry.load_encoder`.

    ``name`` is a registry name (``configs/encoder/<name>.yaml``) or an encoder checkpoint path;
    ``weights`` a ``weights=`` spec (``None`` = random init, drawn under ``torch.manual_seed(init_seed)``);
    ``arch`` the architecture keyword arguments. ``weights_resolved`` is the absolute path of a plain-file
    ``weights`` when it was recorded, tried when the relative one does not exist (another working dir).
    ``precision`` the compute precision of its forward passes (``float32`` | ``bfloat16`` autocast).
    """

    name: str
    weights: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    init_seed: int = 0
    weights_resolved: str | None = None
    precision: str = "float32"    # the frozen encoder's compute precision (robrep.precision); part of the cache key

    def __post_init__(self) -> None:
        self.precision = check_precision(self.precision)
        if self.weights is not None:
            self.weights = str(self.weights)
            if self.weights_resolved is None and split_weights(self.weights)[0] == "" and Path(self.weights).exists():
                self.weights_resolved = str(Path(self.weights).resolve())

    @property
    def label(self) -> str:
        """Short name for file names: the registry name, or a checkpoint's stem."""
        return Path(self.name).stem

    def load(self, device: str | torch.device = "cpu", frozen: bool = True) -> Encoder:
        """The frozen encoder (random init is reproducible: a forked RNG seeded with ``init_seed``);
        ``frozen=False``: the same weights, trainable (a fresh module, for fine-tuning)."""
        weights = self.weights
        if (weights is not None and split_weights(weights)[0] == "" and not Path(weights).exists()
                and self.weights_resolved and Path(self.weights_resolved).exists()):
            weights = self.weights_resolved
        if weights is not None:
            encoder = load_encoder(self.name, weights=weights, device=device, frozen=frozen, **self.arch)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                encoder = load_encoder(self.name, weights=None, device=device, frozen=frozen, **self.arch)
        return encoder.set_precision(self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint_hash(payload: Mapping[str, Any]) -> str:
    """Content hash of what decides the policy's actions: configs, shapes, encoder identity, weights."""
    encoder = payload.get("encoder")
    meta = {"policy_config": payload["policy_config"], "shape_meta": payload["shape_meta"],
            "encoder": None if encoder is None else encoder["identity"]}
    return content_hash(meta, payload["state_dict"])


def save_policy_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` (the keys in the module docstring, without ``format``/``hash``) atomically."""
    state = {k: v.detach().cpu() for k, v in payload["state_dict"].items()}
    data = {**payload, "state_dict": state, "format": FORMAT}
    data["hash"] = checkpoint_hash(data)
    return save_atomic(data, path)


def read_policy_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, checked for format and content hash (raises :class:`PolicyCheckpointError`)."""
    return load_checked(path, FORMAT, checkpoint_hash, "robrep policy", error=PolicyCheckpointError,
                        missing=PolicyCheckpointError)
