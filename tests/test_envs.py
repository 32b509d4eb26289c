"""Task suite: gymnasium compliance, seeding, observations, physics and experts — driven by TASK_IDS."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import TASK_IDS, make_env, make_vector_env
from envs.experts import make_expert
from envs.tasks import PushColorEnv
from robrep.data.collect import run_episode

TASKS = list(TASK_IDS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env(task):
    env = make_env(task, image_size=32)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_observation_contract(task):
    env = make_env(task, image_size=48, wrist_camera=True)
    obs, info = env.reset(seed=1)
    assert obs["image"].shape == (48, 48, 3) and obs["image"].dtype == np.uint8
    assert obs["wrist_image"].shape == (48, 48, 3)
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    spec = env.unwrapped.state_spec
    assert obs["state"].shape == (sum(d for _, d in spec),)
    np.testing.assert_allclose(obs["state"][:4], obs["proprio"], atol=1e-6)
    assert isinstance(info["instruction"], str) and info["instruction"]
    assert obs["image"].std() > 5  # a real rendered scene, not a blank frame
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_seeded_reset_is_reproducible_and_varies(task):
    env = make_env(task, image_size=32)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["state"], b["state"])
    assert not np.allclose(a["state"], c["state"])
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_sim_state_round_trip(task):
    env = make_env(task, image_size=32)
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    base = env.unwrapped
    state, meta = base.get_sim_state(), dict(base.episode_meta)
    restored, _ = env.reset(options={"state": state, "episode_meta": meta})
    np.testing.assert_allclose(restored["state"], obs["state"], atol=1e-6)
    np.testing.assert_array_equal(restored["image"], obs["image"])
    with pytest.raises(ValueError, match="sim state must have shape"):
        base.set_sim_state(state[:-1])
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_scripted_expert_succeeds(task):
    env = make_env(task, image_size=32)
    expert = make_expert(env)
    wins = 0
    for seed in range(100, 108):
        expert.reset()
        wins += run_episode(env, expert, seed)["success"]
    assert wins >= 7, f"{task} expert solved {wins}/8"
    env.close()


def test_noisy_expert_is_seeded():
    env = make_env("reach", image_size=32)
    obs, _ = env.reset(seed=0)
    a1 = make_expert(env, noise_std=0.3, seed=4).act(obs)
    a2 = make_expert(env, noise_std=0.3, seed=4).act(obs)
    a3 = make_expert(env, noise_std=0.0).act(obs)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a3) and np.all(np.abs(a1) <= 1)
    env.close()


def test_actions_move_the_gripper_in_world_frame_and_are_clipped():
    env = make_env("reach", image_size=32)
    env.reset(seed=0)
    start = env.unwrapped.tcp
    for _ in range(5):
        env.step(np.array([5.0, 0.0, 0.0, -1.0]))  # out-of-range command is clipped to +1
    moved = env.unwrapped.tcp - start
    assert 0.06 < moved[0] <= 5 * env.unwrapped.max_delta + 1e-3
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    env.close()


def test_gripper_grasps_and_lifts_block():
    """Physical grasp: closing on the block and lifting raises it off the table."""
    env = make_env("pick_place", image_size=32)
    expert = make_expert(env)
    obs, _ = env.reset(seed=0)
    peak = 0.0
    for _ in range(60):
        obs, *_ = env.step(expert(obs))
        peak = max(peak, env.unwrapped.body_pos("block")[2])
    assert peak > 0.06  # block centre rests at 0.025 m
    env.close()


def test_image_is_upright():
    """Raising the gripper moves its pixels up in the image (row index decreases)."""
    env = make_env("reach", image_size=64)
    env.reset(seed=0)
    for _ in range(6):
        low, *_ = env.step(np.array([0, 0, -1.0, 0]))
    for _ in range(4):
        high, *_ = env.step(np.array([0, 0, 1.0, 0]))
    env.close()
    diff_low = np.abs(low["image"].astype(int) - high["image"].astype(int)).sum(-1)
    rows = np.nonzero(diff_low > 30)[0]
    assert rows.size > 0
    # pixels only in the high frame (gripper now there) lie above pixels only in the low frame
    dark_low = (low["image"].mean(-1) < 80) & (diff_low > 30)
    dark_high = (high["image"].mean(-1) < 80) & (diff_low > 30)
    assert np.nonzero(dark_high)[0].mean() < np.nonzero(dark_low)[0].mean()


def test_push_color_instruction_names_the_target():
    env = PushColorEnv(image_size=32)
    seen = set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        target = env.episode_meta["target"]
        assert target in info["instruction"]
        assert obs["state"][-3:][env.colours.index(target)] == 1
        seen.add(target)
    assert seen == set(env.colours)
    env.close()


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown task 'pushh'"):
        make_env("pushh")


def test_vector_env_batches_observations():
    venv = make_vector_env("push", 2, image_size=32)
    obs, info = venv.reset(seed=[0, 1])
    assert obs["image"].shape == (2, 32, 32, 3) and obs["state"].shape[0] == 2
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert reward.shape == (2,) and info["success"].shape == (2,)
    venv.close()


def test_renderer_failure_names_mujoco_gl(monkeypatch):
    """A failing OpenGL context (MUJOCO_GL unset on a headless machine) raises a clear error at the first env."""
    import mujoco

    from envs.rendering import RenderingUnavailableError

    def no_context(*args, **kwargs):
        raise mujoco.FatalError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    with pytest.raises(RenderingUnavailableError, match=r"MUJOCO_GL=egl.*before importing mujoco") as info:
        make_env("reach", image_size=32)
    assert isinstance(info.value.__cause__, mujoco.FatalError)


@pytest.mark.skipif(sys.platform != "linux", reason="GLFW without a display fails on Linux only")
def test_headless_without_mujoco_gl_raises_the_clear_error():
    """Importing envs sets nothing: with MUJOCO_GL and the display unset, MuJoCo falls back to GLFW and the
    first env fails with RenderingUnavailableError (not a crash inside GLFW)."""
    drop = ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY", "PYOPENGL_PLATFORM")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    code = ("import os\n"
            "from envs import make_env\n"
            "from envs.rendering import RenderingUnavailableError, gl_backend\n"
            "assert 'MUJOCO_GL' not in os.environ\n"
            "try:\n"
            "    make_env('reach', image_size=32)\n"
            "except RenderingUnavailableError as e:\n"
            "    print('BACKEND', gl_backend()); print('ERROR', e)\n"
            "else:\n"
            "    print('RENDERED', gl_backend())\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BACKEND mujoco.glfw" in result.stdout, result.stdout
    assert "MUJOCO_GL=egl" in result.stdout and "robrep CLI sets it" in result.stdout
