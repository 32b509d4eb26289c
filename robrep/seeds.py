"""Disjoint seed ranges for demonstrations, evaluation and play (exploration) data.

Every episode's layout is drawn from ``env.reset(seed=s)``, so a policy evaluated on a seed it was
trained on sees a layout it has memorised. To make that impossible by construction:

* demonstration episodes use seeds in ``DEMO_SEEDS = [0, 1_000_000)``;
* evaluation episodes use seeds in ``EVAL_SEEDS = [1_000_000, 2_000_000)``;
* play episodes (exploration data for pretraining and world models, :mod:`robrep.data.play`) use seeds
  in ``PLAY_SEEDS = [2_000_000, 3_000_000)``, so no pretraining frame shows an evaluation layout
  (nor a demo layout).

Collectors call :func:`check_demo_seed` / :func:`check_play_seed`, evaluators take their seeds
from :func:`eval_seeds`, and :func:`check_disjoint` verifies a concrete pair of seed lists (e.g. a
demo file's ``data.attrs["demo_seeds"]`` against an evaluation run's seeds).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

#: Seeds of demonstration (training / validation) episodes.
DEMO_SEEDS = range(0, 1_000_000)
#: Seeds of evaluation episodes; disjoint from :data:`DEMO_SEEDS`.
EVAL_SEEDS = range(1_000_000, 2_000_000)
#: Seeds of play (exploration) episodes; disjoint from :data:`DEMO_SEEDS` and :data:`EVAL_SEEDS`.
PLAY_SEEDS = range(2_000_000, 3_000_000)

#: Every seed range with the phrase naming one of its seeds in error messages.
_RANGES: dict[str, tuple[range, str]] = {
    "demo": (DEMO_SEEDS, "a demo"),
    "evaluation": (EVAL_SEEDS, "an evaluation"),
    "play": (PLAY_SEEDS, "a play"),
}


def eval_seeds(n: int, start: int = 0) -> list[int]:
    """The ``n`` evaluation seeds ``EVAL_SEEDS[start : start + n]``.

    Raises:
        ValueError: ``n`` or ``start`` negative, or the slice runs past the end of the range.
    """
    n, start = operator.index(n), operator.index(start)
    if n < 0 or start < 0:
        raise ValueError(f"eval_seeds needs n >= 0 and start >= 0, got n={n}, start={start}")
    if start + n > len(EVAL_SEEDS):
        raise ValueError(f"eval_seeds(n={n}, start={start}) runs past the {len(EVAL_SEEDS)} evaluation seeds")
    return list(EVAL_SEEDS[start : start + n])


def _check_seed(seed: int, label: str) -> int:
    s = operator.index(seed)
    allowed = _RANGES[label][0]
    if s not in allowed:
        other = next((phrase for name, (r, phrase) in _RANGES.items() if name != label and s in r), None)
        raise ValueError(
            f"seed {s} is outside the {label} seed range [{allowed.start}, {allowed.stop})"
            + (f" (it is {other} seed)" if other else "")
        )
    return s


def check_demo_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ``ValueError`` if it is outside :data:`DEMO_SEEDS`."""
    return _check_seed(seed, "demo")


def check_eval_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ``ValueError`` if it is outside :data:`EVAL_SEEDS`."""
    return _check_seed(seed, "evaluation")


def check_play_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ``ValueError`` if it is outside :data:`PLAY_SEEDS`."""
    return _check_seed(seed, "play")


def check_disjoint(demo_seeds: Iterable[int], eval_seeds: Iterable[int]) -> None:
    """Raise ``ValueError`` naming the seeds that occur in both ``demo_seeds`` and ``eval_seeds``."""
    overlap = sorted({operator.index(s) for s in demo_seeds} & {operator.index(s) for s in eval_seeds})
    if overlap:
        shown = ", ".join(map(str, overlap[:20])) + (", ..." if len(overlap) > 20 else "")
        raise ValueError(f"{len(overlap)} seed(s) used for both demonstrations and evaluation: {shown}")
