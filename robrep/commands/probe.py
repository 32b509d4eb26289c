"""``robrep probe``: ridge/MLP state probes of frozen features and the gate
(:func:`robrep.probe.experiment.run_probe`; see its module docstring for what is fitted and written)."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.probe.experiment import run_probe


def run(cfg: DictConfig) -> None:
    run_probe(cfg)
