"""robrep reads demo files it did not write: a small file in robomimic's own layout (``agentview_image``,
``robot0_eef_pos``, ``robot0_gripper_qpos``, 7-D actions, ``next_obs``, ``train``/``valid`` masks, no ``complete``)
opens, says what is missing by name, is encoded and trained on through ``obs_keys`` with 7-D actions, and the
policy's evaluation in a robrep env stops with a clear error. robrep's own files keep their strict checks and now
carry ``next_obs``, which robomimic's ``SequenceDataset(load_next_obs=True)`` reads."""

import json

import h5py
import numpy as np
import pytest
import torch

from policies import load_policy
from policies.checkpoint import read_policy_checkpoint
from robrep.cli import main
from robrep.config import compose
from robrep.data.demo_file import DemoFile, DemoFileError, DemoWriter
from robrep.data.feature_cache import FeatureCache
from robrep.data.obs_keys import ObsKeys
from robrep.encoders import load_encoder, save_checkpoint

ARCH = dict(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
TINY_ARCH = [f"encoder.arch.{k}={v}" for k, v in ARCH.items()]
MAPPING = ["obs_keys.image=agentview_image", "obs_keys.proprio=[robot0_eef_pos,robot0_gripper_qpos]"]
ROBOMIMIC_KEYS = ObsKeys("agentview_image", ("robot0_eef_pos", "robot0_gripper_qpos"))
H = 32


def write_robomimic_file(path, n: int = 6, states: bool = True, num_samples: bool = True) -> None:
    """``n`` demos of 5..8 steps laid out as robomimic's image datasets are (its keys, float64 low-dim obs, 7-D
    actions, next_obs, masks train/valid, env_args naming a robosuite env); nothing robrep writes."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(n):
            T = int(rng.integers(5, 9))
            g = data.create_group(f"demo_{i}")
            if num_samples:
                g.attrs["num_samples"] = T
            obs = {"agentview_image": rng.integers(0, 256, (T + 1, H, H, 3), dtype=np.uint8),
                   "robot0_eef_pos": rng.normal(size=(T + 1, 3)), "robot0_gripper_qpos": rng.normal(size=(T + 1, 2)),
                   "object": rng.normal(size=(T + 1, 10))}
            for k, v in obs.items():
                g.create_dataset(f"obs/{k}", data=v[:-1])
                g.create_dataset(f"next_obs/{k}", data=v[1:])
            g.create_dataset("actions", data=rng.uniform(-1, 1, (T, 7)))
            g.create_dataset("rewards", data=np.zeros(T))
            g.create_dataset("dones", data=np.eye(1, T, T - 1, dtype=np.int64)[0])
            if states:
                g.create_dataset("states", data=rng.normal(size=(T, 32)))
            total += T
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1,
                                             "env_kwargs": {"robots": ["Panda"], "camera_heights": H}})
        f.create_dataset("mask/train", data=np.array([f"demo_{i}" for i in range(n - 1)], dtype="S"))
        f.create_dataset("mask/valid", data=np.array([f"demo_{n - 1}"], dtype="S"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    path = tmp_path_factory.mktemp("foreign") / "lift_image.hdf5"
    write_robomimic_file(path)
    return path


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "mae_tiny.pt"
    save_checkpoint(load_encoder("mae", **ARCH), path)
    return path


@pytest.fixture(scope="module")
def trained(foreign, encoder_ckpt, tmp_path_factory):
    """``robrep train`` on the robomimic file with the key mapping (tiny MAE, a few steps): the checkpoint path."""
    root = tmp_path_factory.mktemp("train")
    out = root / "lift_mlp.pt"
    main(["train", "policy=mlp", "encoder=mae", f"weights={encoder_ckpt}", f"dataset={foreign}", "n=3", "seed=0",
          f"out={out}", f"cache_dir={root / 'cache'}", "policy.train.steps=6", "policy.train.eval_every=3",
          "progress=false", *MAPPING, *TINY_ARCH])
    return out


def test_a_robomimic_file_opens(foreign):
    with DemoFile(foreign) as f:
        assert not f.written_by_robrep and f.has_next_obs
        assert f.obs_keys == ["agentview_image", "object", "robot0_eef_pos", "robot0_gripper_qpos"]
        assert f.env_args["env_name"] == "Lift" and f.demo_names("valid") == ["demo_5"]
        ep = f.episode("demo_0", next_obs=True)
        assert ep["actions"].shape == (f.num_samples("demo_0"), 7) and "states" in ep
        np.testing.assert_array_equal(ep["next_obs"]["robot0_eef_pos"][:-1], ep["obs"]["robot0_eef_pos"][1:])
        assert "next_obs" not in f.episode("demo_0")  # only on request
        f.require("states", "rewards")
        # no train_n*_seed* masks: the nested subset is drawn from mask/train by the masks' own rule
        three, four = f.subset(3, 0), f.subset(4, 0)
        assert len(three) == 3 and set(three) < set(four) <= set(f.demo_names("train"))
        with pytest.raises(DemoFileError, match="N=9 demos requested but only 5 train demos"):
            f.subset(9, 0)


def test_a_foreign_file_needs_only_obs_and_actions(tmp_path):
    path = tmp_path / "bare.hdf5"
    write_robomimic_file(path, n=3, states=False, num_samples=False)
    with h5py.File(path, "a") as h:
        del h["data"].attrs["env_args"]
    with DemoFile(path) as f:
        assert f.env_args == {} and f.num_samples("demo_1") == len(f.episode("demo_1")["actions"])
        assert "states" not in f.episode("demo_1")
        with pytest.raises(DemoFileError, match=r"bare.hdf5: its demos have no 'states' \(sim-state replay needs "
                                                r"them\); they hold \['actions', 'dones', 'rewards'\]"):
            f.require("states", purpose="sim-state replay")
    with h5py.File(path, "a") as h:
        del h["data/demo_1/actions"]
    with pytest.raises(DemoFileError, match=r"demo_1 is missing key 'actions' \(it has \['dones', 'next_obs', 'obs', "
                                            r"'rewards'\]\)"):
        DemoFile(path)


def test_missing_obs_keys_are_named_with_the_fix(foreign, encoder_ckpt, tmp_path, capsys):
    with DemoFile(foreign) as f:
        with pytest.raises(DemoFileError) as e:
            f.require_obs_keys(ObsKeys(), purpose="policy 'mlp'")
        msg = str(e.value)
        assert "no obs/image/proprio in its demos (policy 'mlp' needs them)" in msg
        assert "'agentview_image', 'object', 'robot0_eef_pos'" in msg
        assert "obs_keys.image=agentview_image obs_keys.proprio=[object,robot0_eef_pos,robot0_gripper_qpos]" in msg
        with pytest.raises(DemoFileError, match=r"obs/robot0_eef_pos is float64 \(\d+, 3\), not an image"):
            f.require_obs_keys(ObsKeys("robot0_eef_pos", ("object",)))
        f.require_obs_keys(ROBOMIMIC_KEYS)
    with pytest.raises(SystemExit):  # the CLI without the mapping: the same message, no bare KeyError
        main(["features", "encoder=mae", f"weights={encoder_ckpt}", f"dataset={foreign}", f"cache_dir={tmp_path}",
              "progress=false", *TINY_ARCH])
    assert "no obs/image in its demos (encoding with" in capsys.readouterr().err


def test_obs_keys_defaults_and_presets():
    assert ObsKeys.from_cfg(compose("train")) == ObsKeys() == ObsKeys.from_cfg(None)
    assert ObsKeys.from_cfg(compose("features", ["obs_keys=robomimic"])) == ROBOMIMIC_KEYS
    assert ObsKeys.from_cfg(compose("train", MAPPING)) == ROBOMIMIC_KEYS
    assert ObsKeys.from_cfg({"image": "rgb", "proprio": "eef"}).proprio == ("eef",)
    with pytest.raises(KeyError, match=r"unknown obs_keys entry \['imag'\]"):
        ObsKeys.from_cfg({"imag": "x", "proprio": ["y"]})
    obs = {"robot0_eef_pos": np.ones((2, 3)), "robot0_gripper_qpos": np.zeros((2, 2))}
    assert ROBOMIMIC_KEYS.proprio_of(obs).tolist() == [[1, 1, 1, 0, 0]] * 2


def test_features_cli_encodes_the_mapped_image(foreign, encoder_ckpt, tmp_path, capsys):
    main(["features", "encoder=mae", f"weights={encoder_ckpt}", f"dataset={foreign}", f"cache_dir={tmp_path}",
          "progress=false", "obs_keys=robomimic", "encoder_precision=float32", *TINY_ARCH])
    assert "features of 6 demos" in capsys.readouterr().out
    (path,) = tmp_path.glob("lift_image.*.features.hdf5")
    enc = load_encoder("mae", weights=str(encoder_ckpt), **ARCH)
    with FeatureCache(path, enc) as cache, DemoFile(foreign) as demos:
        assert cache._f.attrs["image_key"] == "agentview_image"
        images = demos.episode("demo_2")["obs"]["agentview_image"]
        expected = enc.encode_images(images).tokens.float()
        torch.testing.assert_close(cache.features("demo_2").tokens, expected, atol=2e-2, rtol=1e-2)


def test_train_on_a_robomimic_file_with_7d_actions(trained, foreign):
    ckpt = read_policy_checkpoint(trained)
    assert ckpt["obs_keys"] == ROBOMIMIC_KEYS.to_dict()
    assert ckpt["shape_meta"]["action_dim"] == 7 and ckpt["shape_meta"]["proprio_dim"] == 5
    assert ckpt["task"] == "Lift" and len(ckpt["dataset"]["train_demos"]) == 3
    policy = load_policy(trained)
    assert policy.action_dim == 7 and policy.obs_keys == ROBOMIMIC_KEYS
    with DemoFile(foreign) as f:
        obs = f.episode("demo_5")["obs"]
    batch = {k: v[:3] for k, v in obs.items()}
    policy.reset(3)
    actions = policy.act(batch)
    assert actions.shape == (3, 7) and actions.dtype == np.float32 and np.all(np.abs(actions) <= 1)
    policy.reset(1)
    assert policy.act({k: v[0] for k, v in obs.items()}).shape == (7,)
    with pytest.raises(KeyError, match=r"needs obs\['agentview_image', 'robot0_eef_pos', 'robot0_gripper_qpos'\]"):
        policy.act({"image": obs["agentview_image"][:1], "proprio": np.zeros((1, 4), np.float32)})


def test_closed_loop_eval_of_a_foreign_policy_is_refused_clearly(trained, capsys):
    from robrep.eval.rollouts import evaluate

    with pytest.raises(SystemExit):  # `robrep eval`: the policy's env (robosuite's Lift) is not a robrep env
        main(["eval", f"checkpoint={trained}", "episodes=1", "num_envs=1", "progress=false"])
    assert "cannot build the policy's env 'Lift'" in capsys.readouterr().err
    policy = load_policy(trained)
    policy.meta.update(task="reach", env_kwargs={"image_size": 32})  # as if its demos named a robrep env
    with pytest.raises(ValueError, match=r"predicts 7-D actions .* 'reach' env takes 4-D actions"):
        evaluate(policy, 1, num_envs=1, progress=False)


def test_a_robrep_file_marked_incomplete_is_an_interrupted_write(tmp_path):
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(0)
    ep = {"obs": {"image": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), "proprio": rng.normal(size=(4, 4))},
          "actions": np.zeros((4, 4)), "rewards": np.zeros(4), "dones": np.eye(1, 4, 3)[0], "states": np.zeros((4, 5))}
    with DemoWriter(path, {"env_name": "robrep/Reach-v0"}, valid_fraction=0.0) as w:
        w.add_episode(**ep, seed=0)
    with DemoFile(path) as f:
        assert f.written_by_robrep
        # next_obs without a final observation: shifted by one, the last observation repeated
        nxt = f.episode("demo_0", next_obs=True)["next_obs"]["proprio"]
        np.testing.assert_allclose(nxt, np.concatenate([ep["obs"]["proprio"][1:], ep["obs"]["proprio"][-1:]]), rtol=1e-6)
    with h5py.File(path, "a") as h:
        del h["data"].attrs["complete"]
    with pytest.raises(DemoFileError, match="written by robrep's DemoWriter but not marked complete.*interrupted"):
        DemoFile(path)
    with h5py.File(path, "a") as h:  # still strict on robrep's files: every required key
        h["data"].attrs["complete"] = True
        del h["data/demo_0/states"]
    with pytest.raises(DemoFileError, match="demo_0 is missing key 'states'"):
        DemoFile(path)
    temp = tmp_path / "demos.hdf5.tmp-123-abcd1234"  # a temp file of an older writer (no mark): named as such
    write_robomimic_file(temp, n=2)
    with pytest.raises(DemoFileError, match="temp file left by an interrupted robrep write"):
        DemoFile(temp)


def test_robrep_files_carry_next_obs_that_robomimic_loads(tmp_path):
    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    from robrep.data.collect import collect_demos

    path = tmp_path / "reach.hdf5"
    collect_demos("reach", 2, path, image_size=16, subset_sizes=(), subset_seeds=(), valid_fraction=0.0,
                  progress=False)
    with DemoFile(path) as f:
        assert f.has_next_obs
        ep = f.episode("demo_0", next_obs=True)
        for k in ("image", "proprio", "state"):
            np.testing.assert_array_equal(ep["next_obs"][k][:-1], ep["obs"][k][1:])
        # the last row is the observation after the last action, not a copy of the one before it
        assert not np.array_equal(ep["next_obs"]["proprio"][-1], ep["obs"]["proprio"][-1])
    ObsUtils.initialize_obs_modality_mapping_from_dict({"rgb": ["image"], "low_dim": ["proprio"]})
    data = SequenceDataset(hdf5_path=str(path), obs_keys=("image", "proprio"), dataset_keys=("actions",),
                           load_next_obs=True, hdf5_cache_mode=None, seq_length=1)
    try:
        item = data[0]
        np.testing.assert_allclose(item["next_obs"]["proprio"][0], ep["next_obs"]["proprio"][0], rtol=1e-6)
        assert item["next_obs"]["image"].shape == item["obs"]["image"].shape
    finally:
        data.close_and_delete_hdf5_handle()
