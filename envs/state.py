"""Privileged state vectors laid out by a ``state_spec`` (list of ``(name, size)``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def split_state(state: np.ndarray, spec: Sequence[tuple[str, int]]) -> dict[str, np.ndarray]:
    """Split ``state (..., D)`` into its named parts ``{name: (..., size)}`` in ``spec`` order."""
    out, i = {}, 0
    for name, d in spec:
        out[name] = state[..., i : i + d]
        i += d
    return out
