"""``robrep export-dataset``: a robrep demo file as a LeRobot v2.1 dataset directory
(:func:`robrep.data.lerobot.write_lerobot`; read it back anywhere with ``dataset=lerobot:<dir>``)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from robrep.data.lerobot import write_lerobot

log = logging.getLogger(__name__)

FORMATS = ("lerobot",)


def run(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS:
        raise ValueError(f"robrep export-dataset: format={cfg.format!r}; known formats: {list(FORMATS)}")
    out = Path(cfg.out) if cfg.out else Path("runs/lerobot") / Path(str(cfg.dataset)).stem
    summary = write_lerobot(cfg.dataset, out, fps=cfg.fps, crf=int(cfg.video.crf), gop=int(cfg.video.gop),
                            pix_fmt=str(cfg.video.pix_fmt), robot_type=cfg.robot_type, overwrite=bool(cfg.overwrite),
                            progress=bool(cfg.progress))
    log.info(f"LeRobot v2.1 dataset: {summary['episodes']} episodes, {summary['frames']} frames at {summary['fps']:g} Hz, "
          f"{len(summary['tasks'])} task(s); {summary['bytes'] / 1e6:.2f} MB ({summary['video_bytes'] / 1e6:.2f} MB "
          f"video) from a {summary['source_bytes'] / 1e6:.2f} MB demo file")
    log.info(f"dataset: {summary['path']}  (read back with dataset=lerobot:{summary['path']})")
