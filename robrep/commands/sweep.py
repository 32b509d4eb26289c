"""``robrep sweep``: the data-efficiency sweep (arms × N × seeds) end to end, resumable
(:func:`robrep.sweep.run.run_sweep`; see its module docstring for the steps and the files written)."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.sweep.run import run_sweep


def run(cfg: DictConfig) -> None:
    run_sweep(cfg)
