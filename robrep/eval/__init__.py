"""How well did it work? Success statistics (:mod:`.stats`, numpy/scipy only) and batched policy
rollouts on fixed evaluation seeds (:mod:`.rollouts`, imported on first use: it loads the MuJoCo envs)."""

from __future__ import annotations

from typing import Any

from robrep.eval.stats import noise_floor, paired_bootstrap_diff, wilson_interval

_ROLLOUTS = ("EpisodeRecord", "EvalPolicy", "EvalResult", "evaluate", "recorded_demo_seeds")

__all__ = ["noise_floor", "paired_bootstrap_diff", "wilson_interval", *_ROLLOUTS]


def __getattr__(name: str) -> Any:
    if name in _ROLLOUTS:
        from robrep.eval import rollouts

        return getattr(rollouts, name)
    raise AttributeError(f"module 'robrep.eval' has no attribute {name!r}")
