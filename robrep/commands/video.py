"""``robrep video``: roll the scripted expert out and write a video."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from robrep.data.collect import expert_frames
from robrep.video import write_video

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    frames = expert_frames(cfg.task.name, cfg.episodes, cfg.seed_start, image_size=cfg.task.image_size,
                           visuals=cfg.task.get("visuals", "clean"))
    path = write_video(frames, cfg.out, fps=cfg.fps)
    log.info(f"wrote {len(frames)} frames of the '{cfg.task.name}' expert to {path}")
