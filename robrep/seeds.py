"""Disjoint seed ranges for demonstrations and evaluation.

Every episode's layout is drawn from ``env.reset(seed=s)``, so a policy evaluated on a seed it was
trained on sees a layout it has memorised. To make that impossible by construction:

* demonstration episodes use seeds in ``DEMO_SEEDS = [0, 1_000_000)``;
* evaluation episodes use seeds in ``EVAL_SEEDS = [1_000_000, 2_000_000)``.

Collectors call :func:`check_demo_seed`, evaluators take their seeds from :func:`eval_seeds`, and
:func:`check_disjoint` verifies a concrete pair of seed lists (e.g. a demo file's
``data.attrs["demo_seeds"]`` against an evaluation run's seeds).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

#: Seeds of demonstration (training / validation) episodes.
DEMO_SEEDS = range(0, 1_000_000)
#: Seeds of evaluation episodes; disjoint from :data:`DEMO_SEEDS`.
EVAL_SEEDS = range(1_000_000, 2_000_000)


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


def _check_seed(seed: int, allowed: range, label: str, other: range, other_label: str) -> int:
    s = operator.index(seed)
    if s not in allowed:
        raise ValueError(
            f"seed {s} is outside the {label} seed range [{allowed.start}, {allowed.stop})"
            + (f" (it is {other_label} seed)" if s in other else "")
        )
    return s


def check_demo_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ``ValueError`` if it is outside :data:`DEMO_SEEDS`."""
    return _check_seed(seed, DEMO_SEEDS, "demo", EVAL_SEEDS, "an evaluation")


def check_eval_seed(seed: int) -> int:
    """Return ``seed`` as an int; raise ``ValueError`` if it is outside :data:`EVAL_SEEDS`."""
    return _check_seed(seed, EVAL_SEEDS, "evaluation", DEMO_SEEDS, "a demo")


def check_disjoint(demo_seeds: Iterable[int], eval_seeds: Iterable[int]) -> None:
    """Raise ``ValueError`` naming the seeds that occur in both ``demo_seeds`` and ``eval_seeds``."""
    overlap = sorted({operator.index(s) for s in demo_seeds} & {operator.index(s) for s in eval_seeds})
    if overlap:
        shown = ", ".join(map(str, overlap[:20])) + (", ..." if len(overlap) > 20 else "")
        raise ValueError(f"{len(overlap)} seed(s) used for both demonstrations and evaluation: {shown}")
