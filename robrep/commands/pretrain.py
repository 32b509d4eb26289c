"""``robrep pretrain``: in-domain pretraining of one encoder family within a wall-clock budget
(:func:`robrep.pretrain.run.run_pretrain`). Saves ``out`` (``runs/weights/`` by default; the committed
``weights/`` only when ``out=weights/...`` is given) plus ``<out>.loss.csv`` / ``<out>.loss.png``."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.pretrain.run import run_pretrain


def run(cfg: DictConfig) -> None:
    run_pretrain(cfg)
