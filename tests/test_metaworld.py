"""Meta-World adapter: gymnasium compliance, observation contract, seeding, upright images,
sim-state round trips and Meta-World's scripted experts."""

import json

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import make_env
from envs.experts import make_expert
from robrep.data.collect import run_episode

MW_TASKS = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]


@pytest.fixture
def push():
    env = make_env("metaworld/push-v3", image_size=64)
    yield env
    env.close()


def test_check_env(push):
    check_env(push.unwrapped, skip_render_check=True)


def test_observation_contract():
    env = make_env("metaworld/pick-place-v3", image_size=64, wrist_camera=True)
    obs, info = env.reset(seed=1)
    base = env.unwrapped
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["wrist_image"].shape == (64, 64, 3) and obs["wrist_image"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    assert obs["state"].shape == (39,) and obs["state"].dtype == np.float32
    assert sum(d for _, d in base.state_spec) == 39
    assert obs in env.observation_space
    np.testing.assert_array_equal(obs["state"][:4], obs["proprio"])
    named = base.state_dict(obs["state"])
    np.testing.assert_allclose(named["goal_pos"], base._mw._target_pos, atol=1e-6)
    np.testing.assert_allclose(named["obj1_pos"], base.data.body("obj").xpos, atol=1e-6)
    assert 0.0 <= named["gripper_opening"][0] <= 1.0
    assert info["success"] is False
    assert info["instruction"] == base.instruction == "pick up the puck and place it at the goal"
    assert base.episode_meta["seed"] == 1 and base.task_name == "metaworld/pick-place-v3"
    assert obs["image"].std() > 5 and np.array_equal(base.render(), obs["image"])
    args = json.loads(json.dumps(base.env_args()))
    assert args["env_name"] == "metaworld/pick-place-v3" and args["type"] == 2
    assert args["max_episode_steps"] == base.max_episode_steps == 150
    env.close()
    rebuilt = make_env(args["env_name"], **args["env_kwargs"])
    again, _ = rebuilt.reset(seed=1)
    np.testing.assert_array_equal(again["state"], obs["state"])
    rebuilt.close()


def test_seeded_reset_is_reproducible_and_varies(push):
    a, _ = push.reset(seed=7)
    push.step(push.action_space.sample())
    b, _ = push.reset(seed=7)
    c, _ = push.reset(seed=8)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["state"], b["state"])
    named_a, named_c = push.unwrapped.state_dict(a["state"]), push.unwrapped.state_dict(c["state"])
    assert np.linalg.norm(named_a["obj1_pos"] - named_c["obj1_pos"]) > 1e-3
    assert np.linalg.norm(named_a["goal_pos"] - named_c["goal_pos"]) > 1e-3
    assert not np.array_equal(a["image"], c["image"])


def test_image_is_upright_and_not_mirrored():
    """Move the (visible) goal sphere in the world: raising it moves its pixels up, and its pixel
    centroid matches a pinhole projection through the camera pose (which a flipped or mirrored
    image would not)."""
    env = make_env("metaworld/reach-v3", image_size=64)
    env.reset(seed=0)
    base = env.unwrapped
    model, data, size = base.model, base.data, base.image_size
    goal = model.site("goal")
    model.site_size[goal.id, 0] = 0.04  # a 2 cm sphere is only ~2 px at 64 px
    cam = model.camera(base.camera).id

    def render_with_goal(pos, alpha=1.0):
        goal.pos[:] = pos
        model.site_rgba[goal.id, 3] = alpha
        mujoco.mj_forward(model, data)
        return base.render().astype(int)

    empty = render_with_goal([0.0, 0.7, 0.1], alpha=0.0)
    centroids = {}
    for name, pos in {"low": [-0.1, 0.75, 0.05], "high": [-0.1, 0.75, 0.3], "right": [0.1, 0.6, 0.05]}.items():
        mask = np.abs(render_with_goal(pos) - empty).sum(-1) > 40
        assert mask.sum() >= 6, f"goal at {pos} is not visible"
        observed = np.argwhere(mask).mean(0)[::-1]  # (u, v) = (column, row)
        rot = data.cam_xmat[cam].reshape(3, 3)
        x, y, z = rot.T @ (np.asarray(pos) - data.cam_xpos[cam])
        f = size / 2 / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
        expected = np.array([size / 2 + f * x / -z, size / 2 - f * y / -z])
        np.testing.assert_allclose(observed, expected, atol=2.0, err_msg=name)
        centroids[name] = observed
    assert centroids["high"][1] < centroids["low"][1] - 5  # world up is image up
    assert centroids["right"][0] > centroids["low"][0] + 5  # +x (and -y) is image right from this corner
    env.close()


def test_sim_state_round_trip(push):
    base = push.unwrapped
    obs, _ = push.reset(seed=3)
    expert = make_expert(push)
    for _ in range(8):
        obs, *_ = push.step(expert(obs))
    state, meta = base.get_sim_state(), dict(base.episode_meta)
    assert state.dtype == np.float64 and state.ndim == 1
    base.set_sim_state(base.get_sim_state())
    np.testing.assert_allclose(base.get_sim_state(), state, atol=1e-9)  # forward re-derives the warm start
    np.testing.assert_array_equal(base.render(), obs["image"])
    actions = [expert(obs)]
    after, *_ = push.step(actions[0])
    push.reset(seed=99)  # another layout: restoring must bring the goal and puck back
    restored, info = push.reset(options={"state": state, "episode_meta": meta})
    np.testing.assert_array_equal(restored["state"], obs["state"])
    np.testing.assert_array_equal(restored["image"], obs["image"])
    assert info["instruction"] == meta["instruction"]
    again, *_ = push.step(actions[0])  # dynamics continue identically
    np.testing.assert_allclose(again["state"], after["state"], atol=1e-6)
    with pytest.raises(ValueError, match="sim state must have shape"):
        base.set_sim_state(state[:-1])


@pytest.mark.parametrize("task", MW_TASKS)
def test_scripted_expert_succeeds(task):
    env = make_env(task, image_size=64)
    expert = make_expert(env)
    wins, lengths = 0, []
    for seed in range(100, 105):
        expert.reset()
        result = run_episode(env, expert, seed)
        wins += result["success"]
        lengths.append(result["length"])
    env.close()
    assert wins >= 4, f"{task} expert solved {wins}/5 (lengths {lengths})"


def test_noisy_expert_is_seeded_and_clipped(push):
    obs, _ = push.reset(seed=0)
    a1 = make_expert(push, noise_std=0.5, seed=4).act(obs)
    a2 = make_expert(push, noise_std=0.5, seed=4)(obs)
    a3 = make_expert(push).act(obs)
    assert a1.dtype == np.float32 and a1.shape == (4,)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a3) and np.all(np.abs(a1) <= 1)


def test_time_limit_and_unknown_task():
    env = make_env("metaworld/reach-v3", image_size=32, max_episode_steps=5)
    env.reset(seed=0)
    for t in range(5):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
    assert truncated and not terminated
    env.close()
    with pytest.raises(KeyError, match="unknown Meta-World task"):
        make_env("metaworld/pushh-v3")


@pytest.mark.parametrize("task", ["push-v3", "reach-v3", "pick-place-v3"])
def test_first_frame_is_rendered_from_the_reset_state(task):
    """Meta-World's reset leaves the new layout's kinematics uncomputed on these tasks: the first frame must
    already show it, so that restoring the recorded first state re-renders the recorded first image."""
    env = make_env(f"metaworld/{task}")
    try:
        obs, _ = env.reset(seed=3)
        u = env.unwrapped
        u.set_sim_state(u.get_sim_state())
        np.testing.assert_array_equal(u.render_camera(u.camera), obs["image"])
    finally:
        env.close()


def test_ground_truth_for_the_encoder_diagnostics():
    """The adapter's keypoints (the object as a block, the finger pads) project into its own camera and are visible in
    most frames; its probe labels are the object-to-goal vector of the raw observation and pad-object contact."""
    from robrep.probe.correspondence import frame_labels, keypoint_frames

    frames = keypoint_frames("metaworld/push-v3", [1_000_000, 1_000_001, 1_000_002, 1_000_003], image_size=64)
    assert frames.names == ["block_obj", "gripper_pad_right", "gripper_pad_left"]
    assert frames.visible.mean() > 0.5 and ((frames.points >= 0) & (frames.points < 64)).all(-1)[frames.visible].all()
    assert set(frames.labels) == {"block_to_goal_x", "block_to_goal_y", "contact"}
    env = make_env("metaworld/push-v3", image_size=64)
    obs, _ = env.reset(seed=3)
    parts = env.unwrapped.state_dict(obs["state"])
    labels = frame_labels(env.unwrapped)
    np.testing.assert_allclose([labels["block_to_goal_x"], labels["block_to_goal_y"]],
                               (parts["obj1_pos"] - parts["goal_pos"])[:2], atol=1e-6)
    assert labels["contact"] == 0  # the hand starts away from the puck
    env.close()


def test_skipped_images_change_nothing_but_the_rendering():
    """``skip_next_images``: the next step returns the previous images (the same arrays, no render) while physics,
    proprio, state and success follow a twin env that renders every step; the step after renders again, equal to
    the twin's image, and a reset always renders."""
    envs = [make_env("metaworld/push-v3", image_size=32, wrist_camera=True) for _ in range(2)]
    try:
        skipping, twin = (e.unwrapped for e in envs)
        a, _ = envs[0].reset(seed=5)
        b, _ = envs[1].reset(seed=5)
        action = np.array([0.5, -0.3, 0.2, 1.0], np.float32)
        for step in range(4):
            if step % 2 == 0:
                skipping.skip_next_images()
            prev = a
            a, _, _, _, ia = envs[0].step(action)
            b, _, _, _, ib = envs[1].step(action)
            np.testing.assert_array_equal(a["state"], b["state"])
            assert ia["success"] == ib["success"]
            if step % 2 == 0:
                assert a["image"] is prev["image"] and a["wrist_image"] is prev["wrist_image"]
            else:
                np.testing.assert_array_equal(a["image"], b["image"])
                np.testing.assert_array_equal(a["wrist_image"], b["wrist_image"])
        skipping.skip_next_images()
        a, _ = envs[0].reset(seed=6)
        b, _ = envs[1].reset(seed=6)
        np.testing.assert_array_equal(a["image"], b["image"])
    finally:
        for e in envs:
            e.close()
