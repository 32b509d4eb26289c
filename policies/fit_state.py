"""Resume state of a behaviour-cloning fit (:func:`policies.train.fit`), so a killed training run continues where it
was instead of starting over — what lets a sweep's long cells (the CNN at N = 500 trains for over an hour) span
sessions that end by killing every process.

The state is everything the loop's next step depends on: weights, AdamW moments, the LR schedule, both RNGs (the
batch generator and torch's global one, which draws the CNN's random shifts and dropout), the best weights so far and
early stopping's counters. Saved at validation points (at most every ``every_s`` seconds), so a resumed fit runs the
same arithmetic as one that was never stopped: same threads, same weights bit for bit. A state made for other
settings (another config, data subset or seed: :attr:`FitResume.fingerprint`) or damaged is not used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robrep.torch_io import load_checked, save_atomic

#: Format tag of a fit's resume state.
FORMAT = "robrep-fit-state/1"


@dataclass
class FitResume:
    """Where and how often :func:`policies.train.fit` keeps its resume state.

    ``fingerprint``: what the state must have been made for (a hash of the policy config, data subset, encoder and
    seed; :func:`policies.train.train_policy` derives it); a state with another one is ignored."""

    path: Path
    fingerprint: str
    every_s: float = 120.0
    _last: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none usable (absent, damaged, or made for other settings)."""
        if not self.path.is_file():
            return None
        try:
            return load_checked(self.path, FORMAT, lambda _: self.fingerprint, "fit resume state")
        except ValueError:
            return None

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        save_atomic({**state, "format": FORMAT, "hash": self.fingerprint}, self.path)
        self._last = time.monotonic()

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
