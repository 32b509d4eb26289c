"""Disjoint seed ranges for demonstrations, evaluation and play (exploration) data.

Every episode's layout is drawn from ``env.reset(seed=s)``, so a policy evaluated on a seed it was
trained on sees a layout it has memorised. To make that impossible by construction:

* demonstration episodes use seeds in ``DEMO_SEEDS = [0, 1_000_000)``;
* evaluation episodes use seeds in ``EVAL_SEEDS = [1_000_000, 2_000_000)``, split in two: the *development*
  layouts ``DEV_SEEDS = [1_000_000, 1_500_000)``, which any choice (by hand or by code) may look at, and the
  *test* layouts ``TEST_SEEDS = [1_500_000, 2_000_000)``, of which only a final table reads the first
  :data:`TEST_LAYOUTS` (``eval_split=test``); every result before the split was on development layouts;
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
#: The two halves of :data:`EVAL_SEEDS`: development layouts (tuning, diagnostics, every earlier result) and test
#: layouts (final tables only).
EVAL_SPLITS: dict[str, range] = {"dev": range(1_000_000, 1_500_000), "test": range(1_500_000, 2_000_000)}
DEV_SEEDS, TEST_SEEDS = EVAL_SPLITS["dev"], EVAL_SPLITS["test"]
#: Test layouts a final table reads: ``TEST_SEEDS[:TEST_LAYOUTS]``.
TEST_LAYOUTS = 100


def check_ranges() -> None:
    """Raise ``AssertionError`` unless demo, development, test and play seeds are pairwise disjoint and the two
    evaluation splits tile :data:`EVAL_SEEDS` (called by :func:`eval_seeds`; cheap: ranges, not sets)."""
    ranges = {"demo": DEMO_SEEDS, "dev": DEV_SEEDS, "test": TEST_SEEDS, "play": PLAY_SEEDS}
    names = sorted(ranges, key=lambda k: ranges[k].start)
    for a, b in zip(names, names[1:]):
        if ranges[a].stop > ranges[b].start:
            raise AssertionError(f"seed ranges {a} {ranges[a]} and {b} {ranges[b]} overlap")
    if (DEV_SEEDS.start, DEV_SEEDS.stop, TEST_SEEDS.stop) != (EVAL_SEEDS.start, TEST_SEEDS.start, EVAL_SEEDS.stop):
        raise AssertionError("the development and test splits must tile EVAL_SEEDS")

#: Every seed range with the phrase naming one of its seeds in error messages.
_RANGES: dict[str, tuple[range, str]] = {
    "demo": (DEMO_SEEDS, "a demo"),
    "evaluation": (EVAL_SEEDS, "an evaluation"),
    "play": (PLAY_SEEDS, "a play"),
}


def eval_seeds(n: int, start: int = 0, split: str = "dev") -> list[int]:
    """The ``n`` evaluation seeds ``EVAL_SPLITS[split][start : start + n]`` (``dev``: development layouts, the
    default; ``test``: the held-back test layouts, at most the first :data:`TEST_LAYOUTS`).

    Raises:
        ValueError: ``n`` or ``start`` negative, an unknown split, the slice runs past the split's range, or a test
        slice beyond the first :data:`TEST_LAYOUTS` layouts.
    """
    check_ranges()
    n, start = operator.index(n), operator.index(start)
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r} (dev | test)")
    seeds = EVAL_SPLITS[split]
    if n < 0 or start < 0:
        raise ValueError(f"eval_seeds needs n >= 0 and start >= 0, got n={n}, start={start}")
    if start + n > len(seeds):
        raise ValueError(f"eval_seeds(n={n}, start={start}) runs past the {len(seeds)} {split} evaluation seeds")
    if split == "test" and start + n > TEST_LAYOUTS:
        raise ValueError(f"the test split has {TEST_LAYOUTS} layouts (TEST_SEEDS[:{TEST_LAYOUTS}]); asked for "
                         f"{start}..{start + n - 1}")
    return list(seeds[start : start + n])


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
