"""How well did it work? Success statistics (:mod:`.stats`, numpy/scipy only) and batched policy
rollouts on fixed evaluation seeds (:mod:`.rollouts`, imported on first use: it loads the MuJoCo envs)."""

from __future__ import annotations

from typing import Any

from robrep.eval.stats import (auc_log_n, holm, noise_floor, paired_bootstrap_diff, paired_seed_diff, seed_diff_test,
                               seed_interval, wilson_interval)

_ROLLOUTS = ("EpisodeRecord", "EvalPolicy", "EvalResult", "evaluate", "recorded_demo_seeds")

__all__ = ["auc_log_n", "holm", "noise_floor", "paired_bootstrap_diff", "paired_seed_diff", "seed_diff_test",
           "seed_interval", "wilson_interval", *_ROLLOUTS]


def __getattr__(name: str) -> Any:
    if name in _ROLLOUTS:
        from robrep.eval import rollouts

        return getattr(rollouts, name)
    raise AttributeError(f"module 'robrep.eval' has no attribute {name!r}")
