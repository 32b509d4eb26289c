"""Text about a frame generated from privileged simulator state, for image-text objectives.

A caption names where each object and the gripper are on a coarse 3×3 table grid, how high the
gripper is and whether it is open, then the task instruction — so that captions differ between
frames of one episode and a contrastive objective has to read the layout.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from envs.state import split_state

_COLS = ("left", "centre", "right")  # world x < -5 cm, |x| ≤ 5 cm, x > 5 cm
_ROWS = ("near", "middle", "far")  # world y < -5 cm, |y| ≤ 5 cm, y > 5 cm (camera looks along +y)


def where(xy: np.ndarray) -> str:
    """Coarse table cell of a world (x, y) in metres, e.g. ``"far left"``."""
    col = _COLS[int(np.digitize(xy[0], [-0.05, 0.05]))]
    row = _ROWS[int(np.digitize(xy[1], [-0.05, 0.05]))]
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def caption(state: np.ndarray, state_spec: Sequence[tuple[str, int]], instruction: str = "") -> str:
    """One caption for a privileged ``state (D,)`` laid out by ``state_spec``."""
    parts = split_state(np.asarray(state), state_spec)
    words = []
    for name, value in parts.items():
        if name.endswith("_pos") and name != "gripper_pos" and len(value) == 3:
            obj = name[: -len("_pos")]
            obj = f"{obj[len('block_'):]} block" if obj.startswith("block_") else obj.replace("_", " ")
            words.append(f"the {obj} is {where(value)}")
    if "gripper_pos" in parts:
        g = parts["gripper_pos"]
        height = "low" if g[2] < 0.05 else "high"
        opening = parts.get("gripper_opening", np.array([0.0]))[0]
        state_word = "open" if opening > 0.02 else "closed"
        words.append(f"the {state_word} gripper is {height} over the {where(g)}")
    text = ", ".join(words)
    return f"{text}. {instruction}".strip() if instruction else text
