"""Policy checkpoints: one ``torch.save`` dict per policy, written atomically, with a content hash.

Keys of a checkpoint (format ``robrep-policy/2``)::

    format, hash            content hash of (policy_config, shape_meta, encoder identity) + state_dict
    meta_hash               hash of every other key (robrep.torch_io.metadata_hash): edited metadata is refused
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
    obs_keys                {"image": str, "proprio": [str, ...]}: the demo file's obs keys the policy was trained on
                            (robrep.data.obs_keys.ObsKeys; absent in older checkpoints = the defaults image, [proprio])
    dataset                 path, hash, filter_key, train/valid demo names
    n, seed, config         N demos, seed, the resolved command config
    train                   seconds, steps, best_step, train_loss, train_mse, valid_mse, history
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


from robrep.encoders.base import content_hash
from robrep.torch_io import load_checked, save_atomic

FORMAT = "robrep-policy/2"  # /2: + meta_hash over every other key (robrep.torch_io); /1 files are refused


class PolicyCheckpointError(ValueError):
    """A policy checkpoint is missing, unreadable, damaged, or does not match its encoder."""


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
