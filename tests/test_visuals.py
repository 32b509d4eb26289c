"""Visual variation (envs/visuals.py): seeding, clean = today's scene, disjoint pools, named colours, replay."""

import colorsys
import json

import mujoco
import numpy as np
import pytest
from omegaconf import OmegaConf

from envs import TASK_IDS, make_env
from envs.experts import make_expert
from envs.visuals import (CAMERA_POS_JITTER, DISTRACTOR_CLEARANCE, NEUTRAL_SATURATION, POOLS, hue_family,
                          jitter_named)
from robrep.data.collect import run_episode

SIZE = 48


@pytest.fixture(scope="module")
def envs_by_setting():
    """One push env per setting (built once: env construction dominates these tests)."""
    made = {s: make_env("push", image_size=SIZE, visuals=s) for s in ("clean", "varied", "heldout")}
    yield made
    for env in made.values():
        env.close()


def test_same_seed_same_image_other_seed_other_image(envs_by_setting):
    for setting in ("varied", "heldout"):
        env = envs_by_setting[setting]
        a, _ = env.reset(seed=11)
        meta = json.dumps(env.unwrapped.episode_meta["visuals"])
        b, _ = env.reset(seed=11)
        c, _ = env.reset(seed=12)
        np.testing.assert_array_equal(a["image"], b["image"])
        assert json.dumps(env.unwrapped.episode_meta["visuals"]) != meta
        env.reset(seed=11)
        assert json.dumps(env.unwrapped.episode_meta["visuals"]) == meta
        assert np.abs(a["image"].astype(int) - c["image"]).mean() > 5


def test_clean_is_bitwise_the_default_scene(envs_by_setting):
    default = make_env("push", image_size=SIZE)
    try:
        assert default.unwrapped.visuals == "clean"
        clean = envs_by_setting["clean"]
        for seed in (0, 3):
            a, _ = default.reset(seed=seed)
            b, _ = clean.reset(seed=seed)
            for _ in range(3):
                np.testing.assert_array_equal(a["image"], b["image"])
                np.testing.assert_array_equal(a["state"], b["state"])
                action = np.array([0.5, -0.3, -0.2, 1.0], np.float32)
                a, *_ = default.step(action)
                b, *_ = clean.step(action)
        assert clean.unwrapped.episode_meta["visuals"] == {"setting": "clean"}
    finally:
        default.close()


def test_appearance_changes_but_layout_and_physics_do_not(envs_by_setting):
    obs = {s: env.reset(seed=5)[0] for s, env in envs_by_setting.items()}
    for s in ("varied", "heldout"):
        np.testing.assert_array_equal(obs[s]["state"], obs["clean"]["state"])
        assert np.abs(obs[s]["image"].astype(int) - obs["clean"]["image"]).mean() > 5
    action = np.array([0.7, 0.4, -0.5, 1.0], np.float32)
    for _ in range(4):
        obs = {s: env.step(action)[0] for s, env in envs_by_setting.items()}
        for s in ("varied", "heldout"):
            np.testing.assert_array_equal(obs[s]["state"], obs["clean"]["state"])


def test_pools_are_disjoint_and_avoid_named_hues():
    varied, heldout = POOLS["varied"], POOLS["heldout"]
    specs = lambda pool: {(t.builtin, t.rgb1, t.rgb2, t.repeat, t.random) for t in pool.textures}  # noqa: E731
    assert not specs(varied) & specs(heldout)
    assert not {t.name for t in varied.textures} & {t.name for t in heldout.textures}
    colours = lambda pool: {*pool.palette, *(c for t in pool.textures for c in (t.rgb1, t.rgb2))}  # noqa: E731
    assert not colours(varied) & colours(heldout)
    for name, span in varied.spans().items():
        assert not span.overlaps(heldout.spans()[name]), name
    for rgb in colours(varied) | colours(heldout):
        assert hue_family(rgb) is None or colorsys.rgb_to_hsv(*rgb)[1] < NEUTRAL_SATURATION, rgb


@pytest.mark.parametrize("task", list(TASK_IDS))
def test_named_colours_keep_their_hue_family(task):
    env = make_env(task, image_size=16, visuals="heldout")
    try:
        base = env.unwrapped
        named = [label for label in base._scene_visuals._targets if base._scene_visuals.named(label)]
        assert named  # every task names a coloured object
        for seed in range(4):
            env.reset(seed=seed)
            colours = base.episode_meta["visuals"]["colours"]
            for label in named:
                field, i = base._scene_visuals._targets[label]
                nominal = base._scene_visuals._nominal[field][i][:3]
                assert hue_family(colours[label]) == hue_family(nominal) is not None, (label, colours[label])
                assert colorsys.rgb_to_hsv(*colours[label][:3])[1] >= 0.5
            for label in set(colours) - set(named):
                assert hue_family(colours[label]) is None or colorsys.rgb_to_hsv(*colours[label][:3])[1] < 0.4
    finally:
        env.close()
    assert jitter_named([0.85, 0.15, 0.12], 1.0, 1.0) == pytest.approx([0.85, 0.15, 0.12])


def test_rendered_block_stays_red(envs_by_setting):
    for setting in ("varied", "heldout"):
        base = envs_by_setting[setting].unwrapped
        block = base.model.geom("block").id
        with mujoco.Renderer(base.model, SIZE, SIZE) as seg:
            seg.enable_segmentation_rendering()
            for seed in range(3):
                obs, _ = base.reset(seed=seed)
                seg.update_scene(base.data, camera="front")
                mask = seg.render()[..., 0] == block
                assert mask.sum() >= 4, (setting, seed)
                r, g, b = obs["image"][mask].astype(float).mean(0)
                assert r > 1.5 * g and r > 1.5 * b, (setting, seed, (r, g, b))


def test_distractors_and_camera_within_bounds():
    env = make_env("push_color", image_size=16, visuals="varied")
    try:
        base = env.unwrapped
        slots = {n: base.model.geom(n).id for n in ("distractor_box", "distractor_cylinder", "distractor_sphere")}
        counts = set()
        for seed in range(12):
            env.reset(seed=seed)
            vis = base.episode_meta["visuals"]
            counts.add(len(vis["distractors"]))
            used = {d["slot"] for d in vis["distractors"]}
            assert all((base.model.geom_rgba[g, 3] > 0) == (n in used) for n, g in slots.items())  # hidden = alpha 0
            objects = [base.body_pos(f"block_{c}")[:2] for c in base.colours] + [base.body_pos("goal")[:2]]
            for d in vis["distractors"]:
                g = base.model.geom(d["slot"]).id
                assert base.model.geom_contype[g] == base.model.geom_conaffinity[g] == 0
                assert np.all(np.abs(d["pos"][:2]) <= 0.25)
                assert min(np.linalg.norm(np.array(d["pos"][:2]) - p) for p in objects) >= DISTRACTOR_CLEARANCE
            nominal = base._scene_visuals._nominal["cam_pos"][base.model.camera("front").id]
            assert np.all(np.abs(np.array(vis["camera"]["pos"]) - nominal) <= CAMERA_POS_JITTER)
        assert counts >= {0, 1, 2}
    finally:
        env.close()


def test_replay_from_state_and_meta_reproduces_the_image(envs_by_setting):
    env = envs_by_setting["varied"]
    base = env.unwrapped
    obs, _ = env.reset(seed=21)
    for _ in range(3):
        obs, *_ = env.step(np.array([0.3, 0.2, -0.4, 0.0], np.float32))
    state, meta = base.get_sim_state(), json.loads(json.dumps(base.episode_meta))
    env.reset(seed=99)  # another appearance in between
    restored, _ = env.reset(options={"state": state, "episode_meta": meta})
    np.testing.assert_array_equal(restored["image"], obs["image"])
    with pytest.raises(ValueError, match="drawn for setting 'varied'"):
        envs_by_setting["heldout"].reset(options={"state": state, "episode_meta": meta})


def test_push_expert_succeeds_in_varied_and_heldout(envs_by_setting):
    for setting in ("varied", "heldout"):
        env = envs_by_setting[setting]
        expert = make_expert(env)
        assert all(run_episode(env, expert, seed)["success"] for seed in (100, 101)), setting


def test_invalid_setting_and_metaworld():
    with pytest.raises(ValueError, match=r"visuals must be one of \['clean', 'varied', 'heldout'\]"):
        make_env("push", image_size=16, visuals="shiny")
    with pytest.raises(ValueError, match="Meta-World"):
        make_env("metaworld/push-v3", image_size=16, visuals="varied")


def test_env_args_round_trip(envs_by_setting):
    base = envs_by_setting["heldout"].unwrapped
    args = json.loads(json.dumps(base.env_args()))
    assert args["env_kwargs"]["visuals"] == "heldout"
    rebuilt = make_env(args["task"], **args["env_kwargs"])
    try:
        np.testing.assert_array_equal(rebuilt.reset(seed=4)[0]["image"], base.reset(seed=4)[0]["image"])
    finally:
        rebuilt.close()


def test_eval_visuals_override():
    from robrep.commands.eval import env_overrides

    task = OmegaConf.create({"name": "push", "image_size": 64, "wrist_camera": False, "visuals": "clean"})
    assert env_overrides(OmegaConf.create({"task": task, "visuals": None}), "push") == {"image_size": 64,
                                                                                       "wrist_camera": False}
    assert env_overrides(OmegaConf.create({"task": None, "visuals": "heldout"}), "push") == {"visuals": "heldout"}
