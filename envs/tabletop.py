"""Base class of the MuJoCo tabletop tasks (gymnasium API).

Action: float32 ``(4,)`` in [-1, 1] — end-effector displacement (x, y, z) scaled by
``max_delta`` metres per control step in the world frame, and a gripper command
(+1 closes, -1 opens; intermediate values set a proportional finger opening).

Observation (dict):
  * ``image``   uint8 ``(H, W, 3)`` from the fixed ``front`` camera (upright).
  * ``wrist_image`` uint8 ``(H, W, 3)`` from the hand camera (only if ``wrist_camera``).
  * ``proprio`` float32 ``(4,)``: TCP position (m, world frame) and finger opening
    (m per side, 0 = closed).
  * ``state``   float32 ``(D,)``: privileged task state (layout in ``state_spec``) for
    experts and probes; policies do not read it by default.

Appearance: ``visuals`` = ``"clean"`` (fixed scene), ``"varied"`` or ``"heldout"`` (table texture,
colours, lighting, distractors and camera pose redrawn per episode from disjoint pools, seeded by
the reset seed; see :mod:`envs.visuals`). The drawn parameters are in ``episode_meta["visuals"]``.
"""

from __future__ import annotations

import atexit
import json
import weakref
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.rendering import make_renderer
from envs.scene import FINGER_TRAVEL, WORKSPACE_XY, WORKSPACE_Z, CameraPose, build_scene_xml
from envs.state import split_state
from envs.visuals import SceneVisuals, check_setting, scene_xml, visual_rng

#: Initial TCP position (m) before the per-episode jitter.
HOME = np.array([0.0, -0.05, 0.15])
#: Uniform jitter half-range (m) of the initial TCP xy position.
HOME_JITTER = 0.03
#: MuJoCo state components stored in demos (``states``) and accepted by ``reset(options={"state": ...})``.
STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION

_LIVE_ENVS: "weakref.WeakSet[TabletopEnv]" = weakref.WeakSet()


def _close_live_envs() -> None:
    """Free GL contexts before MuJoCo's own exit hook terminates EGL (errors at shutdown otherwise)."""
    for env in list(_LIVE_ENVS):
        env.close()


def track_renderer_owner(env) -> None:
    """Close ``env`` at interpreter exit. Call after creating its first renderer: exit hooks run
    last-in first-out, so ours then runs before the one ``mujoco.egl`` registers on first use."""
    if not _LIVE_ENVS:
        atexit.unregister(_close_live_envs)
        atexit.register(_close_live_envs)
    _LIVE_ENVS.add(env)


class TabletopEnv(gym.Env):
    """Shared gripper, camera, stepping and observation logic; subclasses define the task.

    Subclasses set ``task_name``, ``instruction_template``, ``max_episode_steps`` and implement
    :meth:`objects_xml`, :meth:`sample_layout`, :meth:`task_state` and :meth:`is_success`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}
    task_name: str = "base"
    max_episode_steps: int = 100
    #: Extra MJCF ``<contact>`` entries (e.g. excluded body pairs) of the task.
    contact_xml: str = ""

    def __init__(
        self,
        image_size: int = 96,
        wrist_camera: bool = False,
        render_mode: str | None = "rgb_array",
        frame_skip: int = 20,
        max_delta: float = 0.02,
        terminate_on_success: bool = True,
        camera: CameraPose | None = None,
        visuals: str = "clean",
        observe_sim_state: bool = False,
    ) -> None:
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.image_size = int(image_size)
        self.wrist_camera = bool(wrist_camera)
        self.render_mode = render_mode
        self.frame_skip = int(frame_skip)
        self.max_delta = float(max_delta)
        self.terminate_on_success = bool(terminate_on_success)
        self.visuals = check_setting(visuals)
        self.observe_sim_state = bool(observe_sim_state)
        objects, assets = self.objects_xml()
        extra_assets, extra_objects = scene_xml(self.visuals)
        xml = build_scene_xml(objects=objects + extra_objects, assets=assets + extra_assets, contact=self.contact_xml,
                              camera=camera or CameraPose())
        self.model = mujoco.MjModel.from_xml_string(xml)
        # Shadows and multisampling off before the renderer exists: ~30x faster on a CPU (Mesa EGL).
        self.model.vis.quality.shadowsize = 0
        self.model.vis.quality.offsamples = 0
        self.data = mujoco.MjData(self.model)
        self._scene_visuals = SceneVisuals(self.model, self.visuals)
        self._visual_rng = visual_rng(None)
        self._renderer = make_renderer(self.model, self.image_size, self.image_size)
        track_renderer_owner(self)
        self._hand_qpos = np.array([self.model.joint(n).qposadr[0] for n in ("hand_x", "hand_y", "hand_z")])
        self._finger_qpos = np.array([self.model.joint(n).qposadr[0] for n in ("finger_left", "finger_right")])
        self._tcp_site = self.model.site("tcp").id
        self.state_spec = [("gripper_pos", 3), ("gripper_opening", 1), *self.task_state_spec()]
        state_dim = sum(d for _, d in self.state_spec)
        img = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        spaces = {
            "image": img,
            "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
        }
        if self.wrist_camera:
            spaces["wrist_image"] = img
        if self.observe_sim_state:  # for planners that use the simulator as their model (planners/sim_model.py)
            size = mujoco.mj_stateSize(self.model, STATE_SPEC)
            spaces["sim_state"] = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.episode_meta: dict[str, Any] = {}
        self._success = False
        self._skip_images = False                    # the next step reuses the last images (skip_next_images)
        self._last_images: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------- task hooks
    def objects_xml(self) -> tuple[str, str]:
        """Return (worldbody XML of the task's bodies, asset XML)."""
        raise NotImplementedError

    def task_state_spec(self) -> list[tuple[str, int]]:
        """Names and sizes of the task's privileged state entries, in :meth:`task_state` order."""
        raise NotImplementedError

    def sample_layout(self, rng: np.random.Generator) -> None:
        """Place objects and goals for a new episode (writes ``self.data``); may fill ``episode_meta``."""
        raise NotImplementedError

    def task_state(self) -> list[np.ndarray]:
        """Privileged task state in the order of :meth:`task_state_spec`."""
        raise NotImplementedError

    def is_success(self) -> bool:
        """The task's documented success predicate on the current simulator state."""
        raise NotImplementedError

    @property
    def instruction(self) -> str:
        """Natural-language instruction of the current episode."""
        return self.episode_meta.get("instruction", "")

    # ----------------------------------------------------------------- helpers for tasks
    def body_pos(self, name: str) -> np.ndarray:
        """World position (m) of body ``name``, ``(3,)``."""
        return self.data.body(name).xpos.copy()

    def set_free_body(self, joint: str, pos: np.ndarray, yaw: float = 0.0) -> None:
        """Place a free-jointed body at ``pos`` (m) with rotation ``yaw`` (rad) about z, at rest."""
        j = self.model.joint(joint)
        a, v = j.qposadr[0], j.dofadr[0]
        self.data.qpos[a : a + 3] = pos
        self.data.qpos[a + 3 : a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        self.data.qvel[v : v + 6] = 0.0

    def set_mocap(self, body: str, pos: np.ndarray) -> None:
        """Move mocap body ``body`` (a goal marker) to ``pos`` (m)."""
        self.data.mocap_pos[self.model.body(body).mocapid[0]] = pos

    # ----------------------------------------------------------------- gymnasium API
    @property
    def tcp(self) -> np.ndarray:
        """Tool-centre-point position (m, world frame), ``(3,)``."""
        return self.data.site_xpos[self._tcp_site].copy()

    @property
    def finger_opening(self) -> float:
        """Mean finger travel from closed (m per side)."""
        return float(self.data.qpos[self._finger_qpos].mean())

    def _hold(self, target: np.ndarray, opening: float) -> None:
        self.data.ctrl[:3] = target
        self.data.ctrl[3:5] = opening

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._visual_rng = visual_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        options = options or {}
        self.episode_meta = {}
        if "state" in options:
            self.set_sim_state(np.asarray(options["state"], dtype=np.float64))
            self.episode_meta = dict(options.get("episode_meta", {}))
            visuals = self.episode_meta.get("visuals")
            if visuals is None:  # recorded before visual variation: redraw from the episode's seed
                recorded = self.episode_meta.get("seed")
                rng = self._visual_rng if recorded is None else visual_rng(recorded)
                visuals = self._scene_visuals.sample(rng, self.data)
        else:
            home = HOME.copy()
            home[:2] += self.np_random.uniform(-HOME_JITTER, HOME_JITTER, 2)
            self.data.qpos[self._hand_qpos] = home
            self.data.qpos[self._finger_qpos] = FINGER_TRAVEL
            self._hold(home, FINGER_TRAVEL)
            self.sample_layout(self.np_random)
            mujoco.mj_forward(self.model, self.data)
            self._simulate()  # let objects settle on the table
            visuals = self._scene_visuals.sample(self._visual_rng, self.data)
        self._scene_visuals.apply(visuals)
        mujoco.mj_kinematics(self.model, self.data)  # camera, distractor and light poses of the new model
        mujoco.mj_camlight(self.model, self.data)
        self.episode_meta["visuals"] = visuals
        self.episode_meta.setdefault("instruction", self.instruction_for_episode())
        self.episode_meta["seed"] = seed
        self._success = self.is_success()
        self._skip_images = False
        return self._obs(), self._info()

    def instruction_for_episode(self) -> str:
        """Instruction text; tasks whose wording varies per episode override this."""
        return getattr(self, "instruction_template", "")

    def step(self, action):
        self.advance(action)
        self._success = self.is_success()
        obs = self._obs()
        terminated = bool(self._success and self.terminate_on_success)
        return obs, float(self._success), terminated, False, self._info()

    def advance(self, action: np.ndarray) -> None:
        """One control step of ``action`` (4,) in [-1, 1] (TCP displacement in units of ``max_delta`` m per axis,
        gripper: -1 open ... 1 closed) without observing: the physics of :meth:`step`, for planners that roll
        candidate actions out in a private copy of the env (no rendering, no success bookkeeping)."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(4), -1.0, 1.0)
        target = self.tcp + a[:3] * self.max_delta
        target[:2] = np.clip(target[:2], -WORKSPACE_XY, WORKSPACE_XY)
        target[2] = np.clip(target[2], *WORKSPACE_Z)
        self._hold(target, FINGER_TRAVEL * (1.0 - a[3]) / 2.0)
        self._simulate()

    def _simulate(self) -> None:
        """Advance one control step; then recompute kinematics so observations match ``qpos``."""
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        mujoco.mj_forward(self.model, self.data)

    def _info(self) -> dict[str, Any]:
        return {"success": bool(self._success), "instruction": self.instruction}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.render_camera("front")

    def render_camera(self, camera: str) -> np.ndarray:
        """uint8 ``(H, W, 3)`` image from ``camera`` at ``image_size`` pixels."""
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def privileged_state(self) -> np.ndarray:
        """The privileged state vector laid out by ``state_spec`` (gripper xyz m, opening m, task entries), float32
        ``(D,)``: ``obs["state"]``, without rendering."""
        return np.concatenate([self.tcp, [self.finger_opening],
                               *[np.ravel(x) for x in self.task_state()]]).astype(np.float32)

    def skip_next_images(self) -> None:
        """Let the next :meth:`step` return the previous observation's images (the same arrays) instead of rendering.
        For callers that will not read that observation's images, e.g. an evaluation loop whose policy executes an
        open-loop action chunk (:meth:`policies.policy.Policy.observation_needed`); rendering is ~60 % of a step at
        96 px. The physics, proprio, state and success are unaffected; :meth:`reset` always renders."""
        self._skip_images = bool(self._last_images)

    def _obs(self) -> dict[str, np.ndarray]:
        state = self.privileged_state()
        if self._skip_images:
            images, self._skip_images = self._last_images, False
        else:
            images = {"image": self.render_camera("front")}
            if self.wrist_camera:
                images["wrist_image"] = self.render_camera("wrist")
            self._last_images = images
        obs = {
            "image": images["image"],
            "proprio": state[:4].copy(),
            "state": state,
        }
        if self.wrist_camera:
            obs["wrist_image"] = images["wrist_image"]
        if self.observe_sim_state:
            obs["sim_state"] = self.get_sim_state()
        return obs

    def state_dict(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Split a privileged ``state`` vector ``(..., D)`` into named parts by ``state_spec``."""
        return split_state(state, self.state_spec)

    # ----------------------------------------------------------------- simulator state
    def get_sim_state(self) -> np.ndarray:
        """Flattened MuJoCo integration state (qpos, qvel, ctrl, mocap, ...), float64 ``(S,)``."""
        out = np.empty(mujoco.mj_stateSize(self.model, STATE_SPEC))
        mujoco.mj_getState(self.model, self.data, out, STATE_SPEC)
        return out

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a state from :meth:`get_sim_state`."""
        size = mujoco.mj_stateSize(self.model, STATE_SPEC)
        if state.shape != (size,):
            raise ValueError(f"sim state must have shape ({size},) for {self.task_name}, got {state.shape}")
        mujoco.mj_setState(self.model, self.data, state, STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)

    def env_args(self) -> dict[str, Any]:
        """JSON-able description sufficient to rebuild this env (robomimic ``env_args``)."""
        return {
            "env_name": self.spec.id if self.spec is not None else self.task_name,
            "type": 2,  # robomimic EnvType.GYM_TYPE
            "env_kwargs": {
                "image_size": self.image_size,
                "wrist_camera": self.wrist_camera,
                "frame_skip": self.frame_skip,
                "max_delta": self.max_delta,
                "terminate_on_success": self.terminate_on_success,
                "visuals": self.visuals,
            },
            "task": self.task_name,
            "state_spec": self.state_spec,
            "max_episode_steps": self.max_episode_steps,
        }

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
        _LIVE_ENVS.discard(self)


def env_args_json(env: gym.Env) -> str:
    """robomimic ``data.attrs['env_args']`` JSON for a (possibly wrapped) tabletop env."""
    return json.dumps(env.unwrapped.env_args())
