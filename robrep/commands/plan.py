"""``robrep plan``: latent world model + CEM imagination planner on a task, evaluated in simulation
(:func:`planners.experiment.run_plan`; see its module docstring for the steps and the files written). With
``planner.prior=<BC policy .pt>`` the policy is loaded here and rung (c) plans around it (:mod:`planners.prior`)."""

from __future__ import annotations

from omegaconf import DictConfig

from planners.experiment import run_plan


def run(cfg: DictConfig) -> None:
    prior = cfg.planner.get("prior")
    policy = None
    if prior:
        from policies.policy import load_policy

        policy = load_policy(prior, device=str(cfg.device))
    run_plan(cfg, prior_policy=policy)
