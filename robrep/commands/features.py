"""``robrep features``: encode every frame of a demo file once into the float16 feature cache (the frames are
``obs/<obs_keys.image>``: ``image`` in robrep's files, e.g. ``obs_keys.image=agentview_image`` for robomimic's)."""

from __future__ import annotations

import logging
import time

import torch
from omegaconf import DictConfig

from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.data.obs_keys import ObsKeys
from robrep.encoders.spec import EncoderSpec

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    spec = EncoderSpec.from_cfg(cfg)
    encoder = spec.load(cfg.device)
    start = time.perf_counter()
    with torch.inference_mode():
        path = compute_features(encoder, cfg.dataset, cfg.cache_dir, encoder_name=spec.label,
                                batch_size=cfg.batch_size, use_language=cfg.use_language, progress=cfg.progress,
                                obs_keys=ObsKeys.from_cfg(cfg))
    with FeatureCache(path, encoder) as cache:
        first = cache.features(cache.demo_names[0])
        log.info(f"features of {len(cache.demo_names)} demos -> {path} ({time.perf_counter() - start:.1f} s); "
                 f"tokens per frame {tuple(first.tokens.shape[1:])} on grid {cache.grid}, "
                 f"global token {'yes' if first.global_token is not None else 'no'}")
