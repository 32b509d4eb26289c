"""``robrep quickstart``: the README's main job on its embedded default (``configs/quickstart.yaml``): the quick
sweep, a one-line verdict with its caveat, and where the full sweep is (:func:`robrep.sweep.quickstart.run_quickstart`)."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.sweep.quickstart import run_quickstart


def run(cfg: DictConfig) -> None:
    run_quickstart(cfg)
