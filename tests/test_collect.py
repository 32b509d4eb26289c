"""collect_demos end to end (tiny "reach" runs at 32 px), robomimic compatibility, and seed ranges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import robrep.data.collect as collect
from envs import make_env
from robrep.data import DemoFile
from robrep.data.collect import collect_demos, rollout_episode
from robrep.seeds import DEMO_SEEDS, EVAL_SEEDS, check_demo_seed, check_disjoint, check_eval_seed, eval_seeds

SIZE = 32


@pytest.fixture(scope="module")
def reach_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("collect") / "reach.hdf5"
    summary = collect_demos("reach", 12, path, image_size=SIZE, subset_sizes=(2, 5, 10, 50), subset_seeds=(0, 1),
                            progress=False)
    return path, summary


def sabotage(monkeypatch, bad_seed) -> None:
    """Make the expert output zero actions (so reach fails) in episodes whose seed satisfies ``bad_seed``."""
    real = collect.make_expert

    def fake_make_expert(env, noise_std=0.0, seed=None):
        expert, base = real(env, noise_std=noise_std, seed=seed), env.unwrapped

        class Policy:
            def reset(self):
                expert.reset()

            def __call__(self, obs):
                return np.zeros(4, np.float32) if bad_seed(base.episode_meta["seed"]) else expert(obs)

        return Policy()

    monkeypatch.setattr(collect, "make_expert", fake_make_expert)


def test_round_trip(reach_file):
    path, summary = reach_file
    assert summary["num_demos"] == 12 and summary["attempts"] == 12 and summary["expert_success_rate"] == 1.0
    assert summary["path"] == str(path) and summary["seconds"] > 0
    assert sorted(os.listdir(path.parent)) == [".reach.hdf5.lock", "reach.hdf5"]  # the lock file stays (see robrep.locks)
    with DemoFile(path) as f:
        assert len(f) == 12 and f.env_args["env_name"] == "robrep/Reach-v0"
        assert f.env_args["env_kwargs"]["image_size"] == SIZE
        total = 0
        for name in f.demo_names():
            ep = f.episode(name)
            T = f.num_samples(name)
            total += T
            assert ep["obs"]["image"].shape == (T, SIZE, SIZE, 3) and ep["obs"]["image"].dtype == np.uint8
            assert ep["obs"]["proprio"].shape == (T, 4) and ep["obs"]["state"].shape == (T, 7)
            assert ep["actions"].shape == (T, 4) and ep["actions"].dtype == np.float32
            assert ep["states"].ndim == 2 and len(ep["states"]) == T and ep["states"].dtype == np.float64
            # only successful episodes: success reward exactly at the (terminal) last step
            assert ep["rewards"][-1] == 1.0 and not ep["rewards"][:-1].any()
            assert ep["dones"][-1] == 1 and not ep["dones"][:-1].any()
            assert ep["attrs"]["ep_meta"]["seed"] == ep["attrs"]["seed"]
            assert ep["attrs"]["ep_meta"]["instruction"] == "reach the red ball"
        assert int(f.attrs["total"]) == total == summary["frames"]
        assert f.demo_seeds == list(f.attrs["demo_seeds"]) == list(range(12))
        assert all(s in DEMO_SEEDS for s in f.demo_seeds)
        check_disjoint(f.demo_seeds, eval_seeds(100))

        train, valid = f.demo_names("train"), f.demo_names("valid")
        assert valid == ["demo_11"] and not set(train) & set(valid) and len(train) == 11
        assert "train_n50_seed0" not in f.filter_keys  # larger than the 11 train demos
        for s in (0, 1):
            n2, n5, n10 = f.subset(2, s), f.subset(5, s), f.subset(10, s)
            assert (len(n2), len(n5), len(n10)) == (2, 5, 10)
            assert set(n2) < set(n5) < set(n10) < set(train)


def test_states_are_before_each_action(reach_file):
    """Replaying the actions from ``states[0]`` reproduces every stored state and observation."""
    path, _ = reach_file
    with DemoFile(path) as f:
        ep = f.episode("demo_3")
    env = make_env("reach", image_size=SIZE)
    try:
        obs, _ = env.reset(options={"state": ep["states"][0]})
        for t in range(len(ep["actions"])):
            np.testing.assert_allclose(env.unwrapped.get_sim_state(), ep["states"][t], atol=1e-9)
            np.testing.assert_allclose(obs["proprio"], ep["obs"]["proprio"][t], atol=1e-6)
            obs, reward, terminated, truncated, info = env.step(ep["actions"][t])
        assert info["success"] and terminated
    finally:
        env.close()


def test_robomimic_sequence_dataset_loads(reach_file):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    path, _ = reach_file
    ObsUtils.initialize_obs_modality_mapping_from_dict({"rgb": ["image"], "low_dim": ["proprio", "state"]})
    with DemoFile(path) as f:
        train = f.demo_names("train")
        n_train_frames = sum(f.num_samples(n) for n in train)
        subset = f.subset(5, 0)
    common = dict(hdf5_path=str(path), obs_keys=("image", "proprio", "state"),
                  dataset_keys=("actions", "rewards", "dones"), load_next_obs=False, hdf5_cache_mode=None)
    ds = SequenceDataset(**common, seq_length=4, filter_by_attribute="train")
    assert ds.demos == train and len(ds) == n_train_frames
    item = ds[len(ds) - 1]  # last step of the last train demo: padded to length 4
    assert item["obs"]["image"].shape == (4, SIZE, SIZE, 3) and item["obs"]["image"].dtype == np.uint8
    assert item["obs"]["proprio"].shape == (4, 4) and item["obs"]["state"].shape == (4, 7)
    assert item["actions"].shape == (4, 4) and item["rewards"][0] == 1.0
    ds.close_and_delete_hdf5_handle()
    small = SequenceDataset(**common, filter_by_attribute="train_n5_seed0")
    assert small.demos == subset and small[0]["actions"].shape == (1, 4)
    small.close_and_delete_hdf5_handle()


def test_rollout_episode_shapes():
    env = make_env("reach", image_size=SIZE)
    try:
        ep = rollout_episode(env, lambda obs: np.zeros(4, np.float32), seed=5)
    finally:
        env.close()
    T = env.unwrapped.max_episode_steps
    assert not ep["success"] and ep["seed"] == 5 and ep["ep_meta"]["seed"] == 5
    assert ep["obs"]["image"].shape == (T, SIZE, SIZE, 3) and ep["actions"].shape == (T, 4)
    assert ep["rewards"].shape == ep["dones"].shape == (T,) and ep["dones"][-1] == 1 and ep["states"].shape[0] == T


def test_failed_episodes_are_skipped(tmp_path, monkeypatch):
    sabotage(monkeypatch, lambda s: s % 3 == 1)
    path = tmp_path / "reach.hdf5"
    summary = collect_demos("reach", 6, path, image_size=SIZE, seed_start=10, subset_sizes=(2,), subset_seeds=(0,),
                            valid_fraction=0.2, progress=False)
    assert summary["attempts"] == 9 and summary["expert_success_rate"] == pytest.approx(6 / 9)
    with DemoFile(path) as f:
        assert f.demo_seeds == [s for s in range(10, 19) if s % 3 != 1]
        assert int(f.attrs["attempts"]) == 9
        for name in f.demo_names():
            assert f.episode(name)["rewards"][-1] == 1.0


def test_exhausted_attempts_write_nothing(tmp_path, monkeypatch):
    sabotage(monkeypatch, lambda s: True)
    with pytest.raises(RuntimeError, match=r"only 0 of 3 reach episodes succeeded in 4 attempts \(seeds 0..3\)"):
        collect_demos("reach", 3, tmp_path / "reach.hdf5", image_size=SIZE, max_attempts=4, subset_sizes=(),
                      progress=False)
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_collection_leaves_no_file(tmp_path, sig):
    """Ctrl-C / SIGTERM mid-collection (a real child process) removes the temp file; no final file appears."""
    # the child installs Python's Ctrl-C handler itself: a parent started in the background may pass SIGINT on ignored
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from robrep.data.collect import collect_demos; "
            f"collect_demos('reach', 100000, {str(tmp_path / 'reach.hdf5')!r}, image_size={SIZE}, progress=False)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "MUJOCO_GL": "egl"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180  # a fresh interpreter importing torch and MuJoCo: slow on a shared CPU
        while not any(".tmp-" in n for n in os.listdir(tmp_path)):
            assert child.poll() is None and time.monotonic() < deadline, "collection did not start"
            time.sleep(0.05)
        time.sleep(0.3)  # some demos written
        child.send_signal(sig)
        _, err = child.communicate(timeout=120)  # generous: teardown is slow when the CPU is shared
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode in (-sig, 128 + sig), err[-2000:]
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


def test_noisy_collection_is_reproducible(tmp_path):
    kw = dict(image_size=SIZE, noise_std=0.3, subset_sizes=(), subset_seeds=(), valid_fraction=0.25, progress=False)
    collect_demos("reach", 4, tmp_path / "a.hdf5", **kw)
    collect_demos("reach", 4, tmp_path / "b.hdf5", **kw)
    with DemoFile(tmp_path / "a.hdf5") as a, DemoFile(tmp_path / "b.hdf5") as b:
        assert a.demo_seeds == b.demo_seeds
        for name in a.demo_names():
            np.testing.assert_array_equal(a.episode(name)["actions"], b.episode(name)["actions"])
            np.testing.assert_array_equal(a.episode(name)["obs"]["image"], b.episode(name)["obs"]["image"])


def test_collect_rejects_seeds_outside_demo_range(tmp_path):
    with pytest.raises(ValueError, match="1000000 is outside the demo seed range.*evaluation seed"):
        collect_demos("reach", 2, tmp_path / "x.hdf5", seed_start=EVAL_SEEDS.start, progress=False)
    with pytest.raises(ValueError, match=r"seeds 999998..1000003 would leave the demo seed range"):
        collect_demos("reach", 2, tmp_path / "x.hdf5", seed_start=999_998, progress=False)
    with pytest.raises(ValueError, match="valid_fraction"):
        collect_demos("reach", 2, tmp_path / "x.hdf5", valid_fraction=1.5, progress=False)
    assert [n for n in os.listdir(tmp_path) if not n.endswith(".lock")] == []


def test_seed_ranges():
    assert DEMO_SEEDS == range(0, 1_000_000) and EVAL_SEEDS == range(1_000_000, 2_000_000)
    assert eval_seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    assert eval_seeds(2, start=10) == [1_000_010, 1_000_011]
    with pytest.raises(ValueError, match="runs past"):
        eval_seeds(2, start=len(EVAL_SEEDS) - 1)
    assert check_demo_seed(np.int64(999_999)) == 999_999
    for bad in (-1, 1_000_000):
        with pytest.raises(ValueError, match=f"seed {bad} is outside the demo seed range"):
            check_demo_seed(bad)
    with pytest.raises(ValueError, match="demo seed"):
        check_eval_seed(5)
    check_disjoint(range(100), eval_seeds(100))
    with pytest.raises(ValueError, match=r"2 seed\(s\) used for both demonstrations and evaluation: 7, 1000000"):
        check_disjoint([1, 7, 1_000_000], [1_000_000, 7, 3])


def test_development_and_test_layouts_are_disjoint_halves_of_the_evaluation_seeds():
    from robrep.seeds import DEV_SEEDS, PLAY_SEEDS, TEST_LAYOUTS, TEST_SEEDS, check_ranges

    check_ranges()
    assert DEV_SEEDS.stop == TEST_SEEDS.start and (DEV_SEEDS.start, TEST_SEEDS.stop) == (EVAL_SEEDS.start, EVAL_SEEDS.stop)
    for a, b in [(DEMO_SEEDS, DEV_SEEDS), (DEMO_SEEDS, TEST_SEEDS), (DEV_SEEDS, TEST_SEEDS), (TEST_SEEDS, PLAY_SEEDS)]:
        assert not set(a[-1000:]) & set(b[:1000]) and a.stop <= b.start
    assert eval_seeds(3) == [1_000_000, 1_000_001, 1_000_002]  # dev: the layouts of every earlier result
    assert eval_seeds(2, split="test") == [1_500_000, 1_500_001]
    assert len(eval_seeds(TEST_LAYOUTS, split="test")) == 100
    with pytest.raises(ValueError, match="the test split has 100 layouts"):
        eval_seeds(101, split="test")
    with pytest.raises(ValueError, match="unknown evaluation split 'val'"):
        eval_seeds(1, split="val")
