"""Scripted experts: privileged-state controllers, one per task, with optional action noise.

An expert reads only ``obs["state"]`` (named by the env's ``state_spec``) and returns a
float32 action ``(4,)`` in [-1, 1]. Experts are small phase machines: call :meth:`Expert.reset`
at each episode start.
"""

from __future__ import annotations

import numpy as np

from envs.tabletop import TabletopEnv
from envs.tasks import BLOCK_HALF

OPEN, CLOSE = -1.0, 1.0
#: Hover height (m) of the TCP when moving above objects.
HOVER_Z = 0.08


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


class Expert:
    """Base expert: P-control of the TCP towards a target, plus Gaussian action noise."""

    gain = 1.0

    def __init__(self, env: TabletopEnv, noise_std: float = 0.0, seed: int | None = None) -> None:
        self.env = env
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """Start a new episode."""
        self.phase = 0
        self.timer = 0

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.act(obs)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action ``(4,)`` float32 in [-1, 1] for one observation dict."""
        s = self.env.state_dict(np.asarray(obs["state"], dtype=np.float64))
        target, grip = self.plan(s)
        move = np.clip((target - s["gripper_pos"]) * self.gain / self.env.max_delta, -1.0, 1.0)
        action = np.array([*move, grip])
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, 4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def plan(self, s: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
        """Return (TCP target position (m), gripper command) for the named state ``s``."""
        raise NotImplementedError


class ReachExpert(Expert):
    def plan(self, s):
        return s["goal_pos"], OPEN


class PushExpert(Expert):
    """Go behind the block on the goal line (lifting over it if needed), then push along the line."""

    block_key = "block_pos"
    #: TCP distance behind the block centre before pushing (m): half block diagonal + pusher half diagonal + margin.
    standoff = BLOCK_HALF * 1.42 + 0.017 + 0.01  # clears a block rotated by 45°
    push_z = 0.012

    def block(self, s):
        return s[self.block_key]

    def plan(self, s):
        p, b, g = s["gripper_pos"], self.block(s)[:2], s["goal_pos"][:2]
        d = g - b
        dist = float(np.linalg.norm(d))
        d /= max(dist, 1e-6)
        rel = p[:2] - b
        along = float(rel @ d)
        lateral = rel - along * d
        # Hysteresis: start pushing only when well aligned, keep pushing while roughly aligned.
        tolerance = 0.02 if self.phase == 1 else 0.01
        if along < -0.03 and np.linalg.norm(lateral) < tolerance and p[2] < 0.03:
            self.phase = 1
            xy = p[:2] + d * min(0.03, dist + 0.01) - lateral * 0.8
            return np.array([*xy, self.push_z]), CLOSE
        self.phase = 0
        behind = b - d * self.standoff
        if np.linalg.norm(p[:2] - behind) > 0.01:
            blocked = _segment_distance(b, p[:2], behind) < BLOCK_HALF + 0.03
            if p[2] < 0.06 and blocked:
                return np.array([*p[:2], HOVER_Z]), CLOSE
            z = HOVER_Z if blocked or p[2] > 0.06 else self.push_z
            return np.array([*behind, z]), CLOSE
        return np.array([*behind, self.push_z]), CLOSE


class PushColorExpert(PushExpert):
    """Push the block that ``target_onehot`` names."""

    def block(self, s):
        colours = self.env.colours
        return s[f"block_{colours[int(np.argmax(s['target_onehot']))]}_pos"]


class PickPlaceExpert(Expert):
    """Approach, descend, grasp, lift, carry, lower, release."""

    grasp_z = 0.008

    def plan(self, s):
        p, b, g = s["gripper_pos"], s["block_pos"], s["goal_pos"]
        self.timer += 1
        if self.phase in (3, 4) and b[2] < 0.035 and np.linalg.norm(b - p - [0, 0, 0.017]) > 0.04:
            self.phase, self.timer = 0, 0  # dropped: start over
        if self.phase == 0:  # above the block
            if np.linalg.norm(p[:2] - b[:2]) < 0.006 and p[2] > 0.04:
                self.phase, self.timer = 1, 0
            return np.array([*b[:2], HOVER_Z]), OPEN
        if self.phase == 1:  # descend around it
            if p[2] < self.grasp_z + 0.004:
                self.phase, self.timer = 2, 0
            return np.array([*b[:2], self.grasp_z]), OPEN
        if self.phase == 2:  # close
            if self.timer >= 4:
                self.phase, self.timer = 3, 0
            return np.array([*b[:2], self.grasp_z]), CLOSE
        if self.phase == 3:  # lift and carry
            if p[2] < 0.06:
                return np.array([*p[:2], HOVER_Z + 0.01]), CLOSE
            if np.linalg.norm(p[:2] - g[:2]) < 0.006:
                self.phase, self.timer = 4, 0
            return np.array([*g[:2], HOVER_Z + 0.01]), CLOSE
        if self.phase == 4:  # lower onto the goal
            if p[2] < self.grasp_z + 0.004:
                self.phase, self.timer = 5, 0
            return np.array([*g[:2], self.grasp_z]), CLOSE
        if self.phase == 5:  # release
            if self.timer >= 3:
                self.phase, self.timer = 6, 0
            return np.array([*g[:2], self.grasp_z]), OPEN
        return np.array([*p[:2], HOVER_Z]), OPEN  # retreat


class ButtonExpert(Expert):
    """Hover above the button, then press straight down."""

    def plan(self, s):
        p, c = s["gripper_pos"], s["button_pos"]
        if np.linalg.norm(p[:2] - c[:2]) > 0.008:
            z = HOVER_Z + 0.04 if np.linalg.norm(p[:2] - c[:2]) > 0.02 or p[2] > c[2] else p[2] + 0.02
            return np.array([*c[:2], z]), CLOSE
        return np.array([*c[:2], c[2] - 0.03]), CLOSE


EXPERTS: dict[str, type[Expert]] = {
    "reach": ReachExpert,
    "push": PushExpert,
    "pick_place": PickPlaceExpert,
    "button": ButtonExpert,
    "push_color": PushColorExpert,
}


def make_expert(env, noise_std: float = 0.0, seed: int | None = None) -> Expert:
    """The scripted expert for a (possibly wrapped) tabletop env."""
    base = env.unwrapped
    if hasattr(base, "scripted_expert"):  # adapters (Meta-World) wrap their own scripted policies
        return base.scripted_expert(noise_std=noise_std, seed=seed)
    if base.task_name not in EXPERTS:
        raise KeyError(f"no scripted expert for task {base.task_name!r}; known: {sorted(EXPERTS)}")
    return EXPERTS[base.task_name](base, noise_std=noise_std, seed=seed)
