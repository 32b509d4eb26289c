"""``robrep quickstart``: the README's main job on its embedded default — the quick data-efficiency sweep
(``configs/quickstart.yaml`` = ``robrep sweep preset=quick`` plus one rollout video per cell)."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.commands import sweep


def run(cfg: DictConfig) -> None:
    sweep.run(cfg)
    print(f"videos: {cfg.sweep_dir}/videos/")
