"""``robrep plan``: latent world model + CEM imagination planner on a task, evaluated in simulation
(:func:`planners.experiment.run_plan`; see its module docstring for the steps and the files written)."""

from __future__ import annotations

from omegaconf import DictConfig

from planners.experiment import run_plan


def run(cfg: DictConfig) -> None:
    run_plan(cfg)
