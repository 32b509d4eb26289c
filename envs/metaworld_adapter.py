"""Meta-World v3 tasks behind the tabletop env contract (see :mod:`envs.tabletop`).

Action: float32 ``(4,)`` in [-1, 1] — Meta-World's own: hand (mocap) displacement x, y, z of
1 cm per unit per step in the world frame, and a gripper effort (+1 closes, -1 opens).

Observation (dict):
  * ``image``   uint8 ``(H, W, 3)`` from the fixed ``camera`` (default ``"corner"``; ``fovy``
    degrees overrides its field of view), upright.
  * ``wrist_image`` uint8 ``(H, W, 3)`` from the ``gripperPOV`` camera (only if ``wrist_camera``).
  * ``proprio`` float32 ``(4,)``: hand position (m, world frame) and finger separation
    (0 = closed, 1 = 0.1 m apart), i.e. ``state[:4]``.
  * ``state``   float32 ``(39,)``: Meta-World's raw observation (goal visible), named by
    :data:`STATE_SPEC` — the current frame, the previous frame, and the goal position.

Layouts are Meta-World's own randomisation (``_random_reset_space``), drawn from the env's
``np_random``, so ``reset(seed=s)`` is reproducible. Success is Meta-World's ``info["success"]``;
the reward is ``float(success)`` (Meta-World's dense reward and metrics are in ``info``: ``mw_reward``, ...).
There is no visual variation: ``visuals`` must be ``"clean"`` (:mod:`envs.visuals` is tabletop-only).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.rendering import make_renderer
from envs.state import split_state

#: Per-task instructions; other tasks get their name in words ("button press topdown").
INSTRUCTIONS: dict[str, str] = {
    "reach-v3": "reach the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
}
#: Default episode limit: the noise-free experts need at most ~75 steps on the three main tasks.
MAX_EPISODE_STEPS = 150
_FRAME = [("hand_pos", 3), ("gripper_opening", 1), ("obj1_pos", 3), ("obj1_quat", 4), ("obj2_pos", 3), ("obj2_quat", 4)]
#: Names and sizes of the 39-dim raw observation. Unused object slots are zero; quaternion
#: order is whatever the task reports (scipy (x, y, z, w) for push/pick-place, MuJoCo (w, x, y, z) elsewhere).
STATE_SPEC: list[tuple[str, int]] = [*_FRAME, *[(f"prev_{n}", d) for n, d in _FRAME], ("goal_pos", 3)]
_SIM_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


class MetaWorldExpert:
    """Meta-World's scripted policy for the task, run on ``obs["state"]`` (the raw observation),
    plus seeded Gaussian action noise; actions are float32 ``(4,)`` clipped to [-1, 1]."""

    def __init__(self, task: str, noise_std: float = 0.0, seed: int | None = None) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if task not in ENV_POLICY_MAP:
            raise KeyError(f"Meta-World ships no scripted policy for {task!r}")
        self.policy = ENV_POLICY_MAP[task]()
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Start a new episode (Meta-World's policies are stateless)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action ``(4,)`` float32 in [-1, 1] for one observation dict."""
        with warnings.catch_warnings():  # its P-controllers warn whenever they saturate
            warnings.simplefilter("ignore")
            action = np.asarray(self.policy.get_action(np.asarray(obs["state"], dtype=np.float64)), dtype=np.float64)
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, 4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    __call__ = act


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task (e.g. ``"push-v3"``) with the tabletop observation dict and API.

    ``get_sim_state()`` is float64 ``(S,)``: the layout vector (object/goal placement, ``k``), the
    previous observation frame (18) and the MuJoCo integration state (qpos, qvel, mocap, ...).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task: str = "push-v3",
        image_size: int = 96,
        camera: str = "corner",
        fovy: float | None = None,
        wrist_camera: bool = False,
        render_mode: str | None = "rgb_array",
        terminate_on_success: bool = True,
        max_episode_steps: int = MAX_EPISODE_STEPS,
        visuals: str = "clean",
    ) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if visuals != "clean":
            raise ValueError(f"visuals={visuals!r}: Meta-World tasks render their own scene only (visuals='clean'); "
                             f"visual variation (envs/visuals.py) exists for the robrep tabletop tasks")

        if task not in ALL_V3_ENVIRONMENTS:
            raise KeyError(f"unknown Meta-World task {task!r}; known: {sorted(ALL_V3_ENVIRONMENTS)}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.mw_task, self.task_name = task, f"metaworld/{task}"
        self.image_size, self.camera, self.wrist_camera = int(image_size), camera, bool(wrist_camera)
        self.fovy = None if fovy is None else float(fovy)
        self.render_mode = render_mode
        self.terminate_on_success = bool(terminate_on_success)
        self.max_episode_steps = int(max_episode_steps)
        mw = self._mw = ALL_V3_ENVIRONMENTS[task]()
        mw._partially_observable = False  # goal position in the observation
        mw.__dict__.pop("sawyer_observation_space", None)  # cached with the goal hidden
        mw._set_task_called = True  # layouts come from the seeded random vector, not set_task
        mw._freeze_rand_vec, mw.seeded_rand_vec = False, True
        mw.max_path_length = 2**62  # episode limits are the TimeLimit wrapper's job
        self.model, self.data = mw.model, mw.data
        self._rand_dim = int(mw._random_reset_space.low.size)
        # Shadows, multisampling and reflections off before the renderer exists: ~30x faster on a CPU.
        self.model.vis.quality.shadowsize = 0
        self.model.vis.quality.offsamples = 0
        mujoco.mj_kinematics(self.model, self.data)
        cam = self.model.camera(camera).id
        up = self.data.cam_xmat[cam].reshape(3, 3)[:, 1]
        if self.model.cam_mode[cam] == mujoco.mjtCamLight.mjCAMLIGHT_FIXED and up[2] < 0:
            # Meta-World's corner cameras look at the scene upside down: turn them 180° about the view axis.
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, self.model.cam_quat[cam].copy(), np.array([0.0, 0.0, 0.0, 1.0]))
            self.model.cam_quat[cam] = quat
            mujoco.mj_kinematics(self.model, self.data)
        if self.fovy is not None:  # zoom in: the objects are only a few pixels wide at 96 px
            self.model.cam_fovy[cam] = self.fovy
        self._renderer = make_renderer(self.model, self.image_size, self.image_size)
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        img = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        spaces = {
            "image": img,
            "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "state": gym.spaces.Box(-np.inf, np.inf, (39,), np.float32),
        }
        if self.wrist_camera:
            spaces["wrist_image"] = img
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.state_spec = list(STATE_SPEC)
        self.episode_meta: dict[str, Any] = {}
        self._raw = np.zeros(39)
        self._success = False
        self._mw_info: dict[str, Any] = {}
        self._skip_images = False                            # the next step reuses the last images
        self._last_images: dict[str, np.ndarray] | None = None

    @property
    def instruction(self) -> str:
        """Natural-language instruction of the current episode."""
        return self.episode_meta.get("instruction", "")

    def state_dict(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Split a ``state`` vector ``(..., 39)`` into named parts by ``state_spec``."""
        return split_state(state, self.state_spec)

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        self.episode_meta, self._skip_images = {}, False  # a reset always renders
        if "state" in options:
            state = self._check_state(options["state"])
            self._layout(state[: self._rand_dim])
            self.set_sim_state(state)
            self.episode_meta = dict(options.get("episode_meta", {}))
        else:
            self._mw.np_random = self.np_random  # layouts follow the reset seed
            self._raw, _ = self._mw.reset()
            # Meta-World's reset leaves body and site positions of the new layout uncomputed on several tasks
            # (push-v3, reach-v3, pick-place-v3): without this the first frame shows the previous layout's
            # kinematics, and set_sim_state(get_sim_state()) would not reproduce it
            mujoco.mj_forward(self.model, self.data)
            self._evaluate()
        self.episode_meta.setdefault("instruction", INSTRUCTIONS.get(self.mw_task, self.mw_task[:-3].replace("-", " ")))
        self.episode_meta["seed"] = seed
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        self._raw, reward, _, _, info = self._mw.step(a)
        self._record(reward, info)
        terminated = bool(self._success and self.terminate_on_success)
        return self._obs(), float(self._success), terminated, False, self._info()

    def _evaluate(self) -> None:
        self._record(*self._mw.evaluate_state(self._raw, np.zeros(4, dtype=np.float32)))

    def _record(self, reward: float, info: dict[str, Any]) -> None:
        self._success = bool(info["success"])
        self._mw_info = {"mw_reward": float(reward), **{k: float(v) for k, v in info.items() if k != "success"}}

    def _info(self) -> dict[str, Any]:
        return {"success": self._success, "instruction": self.instruction, **self._mw_info}

    def render(self) -> np.ndarray | None:
        return self.render_camera(self.camera) if self.render_mode == "rgb_array" else None

    def render_camera(self, camera: str) -> np.ndarray:
        """uint8 ``(H, W, 3)`` image from ``camera`` at ``image_size`` pixels."""
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render()

    def skip_next_images(self) -> None:
        """Let the next :meth:`step` return the previous observation's images (the same arrays) instead of rendering:
        for an evaluation loop whose policy will not read them (an open-loop action chunk,
        :meth:`policies.policy.Policy.observation_needed`). Physics, proprio, state and success are unaffected;
        :meth:`reset` always renders."""
        self._skip_images = self._last_images is not None

    def _obs(self) -> dict[str, np.ndarray]:
        state = self._raw.astype(np.float32)
        if self._skip_images:
            images, self._skip_images = self._last_images, False
        else:
            images = {"image": self.render_camera(self.camera)}
            if self.wrist_camera:
                images["wrist_image"] = self.render_camera("gripperPOV")
            self._last_images = images
        return {**images, "proprio": state[:4].copy(), "state": state}

    # ----------------------------------------------------------------- simulator state
    def _check_state(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, dtype=np.float64)
        size = self._rand_dim + 18 + mujoco.mj_stateSize(self.model, _SIM_SPEC)
        if state.shape != (size,):
            raise ValueError(f"sim state must have shape ({size},) for {self.task_name}, got {state.shape}")
        return state

    def _layout(self, rand_vec: np.ndarray) -> None:
        """Re-run Meta-World's reset with a fixed layout vector (sets goal site, object, internals)."""
        mw = self._mw
        mw._freeze_rand_vec, mw._last_rand_vec = True, np.array(rand_vec, dtype=np.float64)
        try:
            mw.reset()
        finally:
            mw._freeze_rand_vec = False

    def get_sim_state(self) -> np.ndarray:
        """Layout vector, previous frame and MuJoCo integration state, float64 ``(S,)``."""
        sim = np.empty(mujoco.mj_stateSize(self.model, _SIM_SPEC))
        mujoco.mj_getState(self.model, self.data, sim, _SIM_SPEC)
        return np.concatenate([self._mw._last_rand_vec, self._raw[18:36], sim])

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a state from :meth:`get_sim_state` (re-laying out the scene if it differs)."""
        state = self._check_state(state)
        k = self._rand_dim
        if self._mw._last_rand_vec is None or not np.array_equal(state[:k], self._mw._last_rand_vec):
            self._layout(state[:k])
        mujoco.mj_setState(self.model, self.data, state[k + 18 :], _SIM_SPEC)
        mujoco.mj_forward(self.model, self.data)
        cur = self._mw._get_curr_obs_combined_no_goal()
        self._mw._prev_obs = cur.copy()
        space = self._mw.sawyer_observation_space
        self._raw = np.clip(np.hstack([cur, state[k : k + 18], self._mw._get_pos_goal()]), space.low, space.high)
        self._evaluate()

    # ----------------------------------------------------------------- ground truth for the encoder diagnostics
    #: Diagnostic keypoints (robrep.probe.correspondence): name → geom; a name's prefix is its group (the task's
    #: object counts as a ``block``). The goal is a site, not drawn, so it has no keypoint.
    KEYPOINTS = {"block_obj": "objGeom", "gripper_pad_right": "rightpad_geom", "gripper_pad_left": "leftpad_geom"}
    _HAND_GEOMS = ("rightpad_geom", "leftpad_geom", "rightclaw_it", "leftclaw_it")

    def keypoint_geoms(self) -> dict[str, int]:
        """Keypoint name → geom id of the parts this task's model has (:data:`KEYPOINTS`)."""
        ids = {k: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, g) for k, g in self.KEYPOINTS.items()}
        return {k: int(g) for k, g in ids.items() if g >= 0}

    def probe_labels(self) -> dict[str, float | int]:
        """Probe targets harder than positions of the current state: ``block_to_goal_x`` / ``_y`` (m, object minus
        goal, world x and y) and ``contact`` (1 when a finger pad or claw touches the object)."""
        parts = self.state_dict(self._raw)
        delta = parts["obj1_pos"] - parts["goal_pos"]
        hand = {mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, g) for g in self._HAND_GEOMS} - {-1}
        obj = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, "objGeom")
        touching = any({int(c.geom1), int(c.geom2)} & hand and obj in (int(c.geom1), int(c.geom2))
                       for c in self.data.contact[:self.data.ncon])
        return {"block_to_goal_x": float(delta[0]), "block_to_goal_y": float(delta[1]), "contact": int(touching)}

    def env_args(self) -> dict[str, Any]:
        """JSON-able description sufficient to rebuild this env with :func:`envs.make_env`."""
        return {
            "env_name": self.task_name,
            "type": 2,  # robomimic EnvType.GYM_TYPE
            "env_kwargs": {
                "image_size": self.image_size,
                "camera": self.camera,
                "fovy": self.fovy,
                "wrist_camera": self.wrist_camera,
                "terminate_on_success": self.terminate_on_success,
                "max_episode_steps": self.max_episode_steps,
            },
            "task": self.task_name,
            "state_spec": self.state_spec,
            "max_episode_steps": self.max_episode_steps,
        }

    def scripted_expert(self, noise_std: float = 0.0, seed: int | None = None) -> MetaWorldExpert:
        """Meta-World's scripted policy for this task (see :class:`MetaWorldExpert`)."""
        return MetaWorldExpert(self.mw_task, noise_std=noise_std, seed=seed)

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
        self._mw.close()


def make_metaworld_env(name: str, **kwargs: Any) -> gym.Env:
    """``MetaWorldEnv(name, **kwargs)`` (``name`` like ``"push-v3"``) under a ``TimeLimit`` of
    ``max_episode_steps`` (default :data:`MAX_EPISODE_STEPS`)."""
    env = MetaWorldEnv(name, **kwargs)
    return gym.wrappers.TimeLimit(env, max_episode_steps=env.max_episode_steps)
