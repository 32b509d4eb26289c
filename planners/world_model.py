"""World-model checkpoints: one file = latent map + transition model (configs and weights) + the frozen
encoder's identity and hash + training record, content-hashed (:mod:`robrep.torch_io`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from planners.dynamics import LatentDynamics, build_dynamics
from planners.latent import LatentMap
from robrep.encoders.base import content_hash
from robrep.torch_io import load_checked, save_atomic

FORMAT = "robrep-world-model/2"  # /2: + meta_hash (robrep.torch_io)


def _hash(payload: Mapping[str, Any]) -> str:
    meta = {"latent": payload["latent"], "dynamics": payload["dynamics"], "encoder": payload["encoder"]["identity"]}
    state = {**{f"latent.{k}": v for k, v in payload["latent_state"].items()},
             **{f"dynamics.{k}": v for k, v in payload["dynamics_state"].items()}}
    return content_hash(meta, state)


def save_world_model(latent: LatentMap, dynamics: LatentDynamics, encoder: Mapping[str, Any],
                     record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically; ``encoder`` = ``EncoderSpec.to_dict()`` + ``identity`` (family, config, weights hash)."""
    payload = {"format": FORMAT, "latent": latent.config(), "latent_state": {k: v.cpu() for k, v in latent.state_dict().items()},
               "dynamics": dict(dynamics.config),
               "dynamics_state": {k: v.detach().cpu() for k, v in dynamics.state_dict().items()},
               "encoder": dict(encoder), "record": dict(record)}
    payload["hash"] = _hash(payload)
    return save_atomic(payload, path)


def load_world_model(path: str | os.PathLike, weights_hash: str | None = None
                     ) -> tuple[LatentMap, LatentDynamics, dict[str, Any]]:
    """``(latent map, transition model, payload)``; with ``weights_hash``, refuse a model built on other encoder weights."""
    payload = load_checked(path, FORMAT, _hash, "robrep world model")
    got = payload["encoder"]["identity"]["weights_hash"]
    if weights_hash is not None and got != weights_hash:
        raise ValueError(f"{path} was trained on features of encoder weights {got}, not {weights_hash}")
    latent = LatentMap(**payload["latent"])
    latent.load_state_dict(payload["latent_state"])
    cfg = dict(payload["dynamics"])
    dynamics = build_dynamics(cfg.pop("name"), tuple(cfg.pop("latent_shape")), cfg.pop("action_dim"), **cfg)
    dynamics.load_state_dict(payload["dynamics_state"])
    return latent.eval(), dynamics.eval(), payload


PROGRESS_FORMAT = "robrep-progress-model/1"


def _progress_hash(payload: Mapping[str, Any]) -> str:
    return content_hash({"config": payload["config"], "world_model": payload["world_model"]}, payload["state"])


def progress_path(world_model_path: str | os.PathLike) -> Path:
    """Where the progress model of a world model lives: beside it, ``<stem>.progress.pt``."""
    p = Path(world_model_path)
    return p.with_name(f"{p.stem}.progress.pt")


def save_progress_model(model: Any, world_model_hash: str, record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a :class:`planners.reward.ProgressModel` bound to the world model (hash) whose latents it reads."""
    payload = {"format": PROGRESS_FORMAT, "config": dict(model.config), "world_model": str(world_model_hash),
               "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "record": dict(record)}
    payload["hash"] = _progress_hash(payload)
    return save_atomic(payload, path)


def load_progress_model(path: str | os.PathLike, world_model_hash: str) -> tuple[Any, dict[str, Any]]:
    """``(progress model, payload)``; refused when it was trained on another world model's latents."""
    from planners.reward import ProgressModel

    payload = load_checked(path, PROGRESS_FORMAT, _progress_hash, "robrep progress model")
    if payload["world_model"] != str(world_model_hash):
        raise ValueError(f"{path} reads the latents of world model {payload['world_model']}, not {world_model_hash}")
    cfg = dict(payload["config"])
    model = ProgressModel(tuple(cfg.pop("latent_shape")), **cfg)
    model.load_state_dict(payload["state"])
    return model.eval(), payload
