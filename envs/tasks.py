"""The five tabletop tasks. Layout ranges and success predicates are documented per class.

All positions are metres in the world frame (table top at z = 0). Blocks are 5 cm cubes with
yaw 0 (aligned with the fingers), mass 0.1 kg.
"""

from __future__ import annotations

import numpy as np

from envs.tabletop import TabletopEnv

BLOCK_HALF = 0.025
COLOURS = {"red": "0.85 0.15 0.12 1", "green": "0.15 0.7 0.2 1", "blue": "0.15 0.3 0.9 1"}


def block_xml(name: str, rgba: str) -> str:
    """A free 5 cm cube called ``name`` with joint ``name``."""
    return (
        f'<body name="{name}" pos="0 0 {BLOCK_HALF}"><joint name="{name}" type="free" damping="0.001"/>'
        f'<geom name="{name}" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}" mass="0.1" rgba="{rgba}"/></body>'
    )


def goal_disc_xml(name: str = "goal", radius: float = 0.04, rgba: str = "0.95 0.85 0.1 1") -> str:
    """A flat visual-only disc on the table, movable as a mocap body."""
    return (
        f'<body name="{name}" mocap="true" pos="0 0 0.0005">'
        f'<geom type="cylinder" size="{radius} 0.0005" rgba="{rgba}" class="visual"/></body>'
    )


def sample_separated(rng: np.random.Generator, n: int, low: float, high: float, min_dist: float) -> np.ndarray:
    """``n`` xy points uniform in ``[low, high]^2`` with pairwise distance ≥ ``min_dist``, ``(n, 2)``."""
    for _ in range(1000):
        pts = rng.uniform(low, high, (n, 2))
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(n) * 1e9
        if d.min() >= min_dist:
            return pts
    raise RuntimeError("could not sample a separated layout")


class ReachEnv(TabletopEnv):
    """Move the TCP to a red sphere. Goal xy ∈ [-0.15, 0.15]², z ∈ [0.04, 0.2].

    Success: ‖TCP − goal‖ < 3 cm.
    """

    task_name = "reach"
    instruction_template = "reach the red ball"
    max_episode_steps = 60

    def objects_xml(self):
        return ('<body name="goal" mocap="true" pos="0 0 0.1">'
                '<geom type="sphere" size="0.02" rgba="0.9 0.1 0.1 1" class="visual"/></body>'), ""

    def task_state_spec(self):
        return [("goal_pos", 3)]

    def sample_layout(self, rng):
        self.set_mocap("goal", np.array([*rng.uniform(-0.15, 0.15, 2), rng.uniform(0.04, 0.2)]))

    def task_state(self):
        return [self.body_pos("goal")]

    def is_success(self):
        return bool(np.linalg.norm(self.tcp - self.body_pos("goal")) < 0.03)


class PushEnv(TabletopEnv):
    """Push the red block onto the yellow goal disc. Block and goal xy ∈ [-0.15, 0.15]², ≥ 10 cm apart.

    Success: block centre within 4 cm (xy) of the goal centre.
    """

    task_name = "push"
    instruction_template = "push the red block onto the yellow circle"
    max_episode_steps = 150
    goal_tolerance = 0.04

    def objects_xml(self):
        return block_xml("block", COLOURS["red"]) + goal_disc_xml(), ""

    def task_state_spec(self):
        return [("block_pos", 3), ("goal_pos", 3)]

    def sample_layout(self, rng):
        block, goal = sample_separated(rng, 2, -0.15, 0.15, 0.10)
        self.set_free_body("block", [*block, BLOCK_HALF])
        self.set_mocap("goal", [*goal, 0.0005])

    def task_state(self):
        return [self.body_pos("block"), self.body_pos("goal")]

    def is_success(self):
        return bool(np.linalg.norm(self.body_pos("block")[:2] - self.body_pos("goal")[:2]) < self.goal_tolerance)


class PickPlaceEnv(TabletopEnv):
    """Pick the red block up and place it on the yellow disc. Block, goal xy ∈ [-0.15, 0.15]², ≥ 12 cm apart.

    Success: block centre within 3 cm (xy) of the goal, resting on the table (z < 3.5 cm),
    and released (fingers open beyond 3 cm per side).
    """

    task_name = "pick_place"
    instruction_template = "pick up the red block and place it on the yellow circle"
    max_episode_steps = 150

    def objects_xml(self):
        return block_xml("block", COLOURS["red"]) + goal_disc_xml(), ""

    def task_state_spec(self):
        return [("block_pos", 3), ("goal_pos", 3)]

    def sample_layout(self, rng):
        block, goal = sample_separated(rng, 2, -0.15, 0.15, 0.12)
        self.set_free_body("block", [*block, BLOCK_HALF])
        self.set_mocap("goal", [*goal, 0.0005])

    def task_state(self):
        return [self.body_pos("block"), self.body_pos("goal")]

    def is_success(self):
        b, g = self.body_pos("block"), self.body_pos("goal")
        return bool(np.linalg.norm(b[:2] - g[:2]) < 0.03 and b[2] < 0.035 and self.finger_opening > 0.03)


class ButtonEnv(TabletopEnv):
    """Press the red button down. Button housing xy ∈ [-0.15, 0.15]²; the cap is spring-loaded (slide joint).

    Success: cap pressed ≥ 1.2 cm below its rest height.
    """

    task_name = "button"
    instruction_template = "press the red button"
    max_episode_steps = 60
    contact_xml = '<exclude body1="button_base" body2="button"/>'

    def objects_xml(self):
        return (
            '<body name="button_base" mocap="true" pos="0 0 0">'
            '<geom type="box" size="0.04 0.04 0.02" pos="0 0 0.02" rgba="0.3 0.3 0.35 1"/>'
            '<body name="button" pos="0 0 0.05">'
            '<joint name="button" type="slide" axis="0 0 1" range="-0.02 0" stiffness="40" damping="2" springref="0"/>'
            '<geom type="cylinder" size="0.022 0.01" rgba="0.9 0.1 0.1 1" mass="0.02"/></body></body>'
        ), ""

    def task_state_spec(self):
        return [("button_pos", 3), ("button_depth", 1)]

    def sample_layout(self, rng):
        self.set_mocap("button_base", [*rng.uniform(-0.15, 0.15, 2), 0.0])

    def depth(self) -> float:
        """How far the cap is pressed (m, ≥ 0)."""
        return float(-self.data.qpos[self.model.joint("button").qposadr[0]])

    def task_state(self):
        return [self.body_pos("button_base") + [0.0, 0.0, 0.06], [self.depth()]]

    def is_success(self):
        return self.depth() >= 0.012


class PushColorEnv(TabletopEnv):
    """Three coloured blocks; the instruction names which one to push onto the yellow disc.

    Layout: blocks and goal xy ∈ [-0.15, 0.15]² with ≥ 9 cm between any two; the two other
    blocks lie ≥ 8 cm from the segment from 7 cm behind the named block to the goal (a clear
    path for pushing).
    Success: the named block's centre within 4 cm (xy) of the goal.
    """

    task_name = "push_color"
    max_episode_steps = 150
    colours = tuple(COLOURS)

    def objects_xml(self):
        return "".join(block_xml(f"block_{c}", COLOURS[c]) for c in self.colours) + goal_disc_xml(), ""

    def task_state_spec(self):
        return [*[(f"block_{c}_pos", 3) for c in self.colours], ("goal_pos", 3), ("target_onehot", len(self.colours))]

    def sample_layout(self, rng):
        target = int(rng.integers(len(self.colours)))
        for _ in range(1000):
            pts = sample_separated(rng, len(self.colours) + 1, -0.15, 0.15, 0.09)
            a, b = pts[target], pts[-1]
            a = a - (b - a) / max(np.linalg.norm(b - a), 1e-6) * 0.07  # include the pusher's approach point
            others = [p for i, p in enumerate(pts[:-1]) if i != target]
            if all(_point_segment_distance(p, a, b) >= 0.08 for p in others):
                break
        for c, p in zip(self.colours, pts[:-1]):
            self.set_free_body(f"block_{c}", [*p, BLOCK_HALF])
        self.set_mocap("goal", [*pts[-1], 0.0005])
        self.episode_meta["target"] = self.colours[target]

    def instruction_for_episode(self):
        return f"push the {self.episode_meta['target']} block onto the yellow circle"

    @property
    def target(self) -> str:
        return self.episode_meta.get("target", self.colours[0])

    def task_state(self):
        onehot = np.array([c == self.target for c in self.colours], dtype=float)
        return [*[self.body_pos(f"block_{c}") for c in self.colours], self.body_pos("goal"), onehot]

    def is_success(self):
        b = self.body_pos(f"block_{self.target}")
        return bool(np.linalg.norm(b[:2] - self.body_pos("goal")[:2]) < 0.04)


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


TASKS: dict[str, type[TabletopEnv]] = {
    cls.task_name: cls for cls in (ReachEnv, PushEnv, PickPlaceEnv, ButtonEnv, PushColorEnv)
}
