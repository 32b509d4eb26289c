"""DemoWriter / DemoFile: layout, masks, atomic writes and error messages (synthetic data, no simulator)."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest

from robrep.data import DemoFile, DemoFileError, DemoWriter, split_masks

ENV_ARGS = {"env_name": "robrep/Reach-v0", "type": 2, "env_kwargs": {"image_size": 16}}
H = 16


def fake_episode(T: int, rng: np.random.Generator) -> dict:
    rewards = np.zeros(T, np.float32)
    rewards[-1] = 1.0
    dones = np.zeros(T, np.uint8)
    dones[-1] = 1
    return {
        "obs": {
            "image": rng.integers(0, 256, (T, H, H, 3), dtype=np.uint8),
            "proprio": rng.normal(size=(T, 4)).astype(np.float32),
            "state": rng.normal(size=(T, 7)).astype(np.float32),
        },
        "actions": rng.uniform(-1, 1, (T, 4)).astype(np.float32),
        "rewards": rewards,
        "dones": dones,
        "states": rng.normal(size=(T, 20)),
    }


def write_file(path, n: int = 10, **kwargs) -> list[dict]:
    rng = np.random.default_rng(0)
    eps = [fake_episode(int(rng.integers(3, 9)), rng) for _ in range(n)]
    kwargs = {"subset_sizes": (2, 5), "subset_seeds": (0, 1), **kwargs}
    with DemoWriter(path, ENV_ARGS, **kwargs) as w:
        for i, ep in enumerate(eps):
            w.add_episode(**ep, seed=100 + i, ep_meta={"instruction": "reach", "i": i})
    return eps


@pytest.fixture
def demo_path(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_file(path)
    return path


def test_round_trip(tmp_path):
    path = tmp_path / "demos.hdf5"
    eps = write_file(path)
    assert sorted(os.listdir(tmp_path)) == ["demos.hdf5"]
    with DemoFile(path) as f:
        assert len(f) == 10
        assert f.env_args == ENV_ARGS
        assert f.demo_names() == [f"demo_{i}" for i in range(10)]
        assert f.demo_seeds == list(range(100, 110))
        assert f.obs_keys == ["image", "proprio", "state"]
        assert int(f.attrs["total"]) == sum(len(e["actions"]) for e in eps)
        for i, ep in enumerate(eps):
            got = f.episode(f"demo_{i}")
            assert f.num_samples(f"demo_{i}") == len(ep["actions"]) == got["attrs"]["num_samples"]
            assert got["attrs"]["ep_meta"] == {"instruction": "reach", "i": i}
            for k in ("actions", "rewards", "dones", "states"):
                np.testing.assert_array_equal(got[k], ep[k])
            for k in ep["obs"]:
                np.testing.assert_array_equal(got["obs"][k], ep["obs"][k])
        assert got["obs"]["image"].dtype == np.uint8 and got["states"].dtype == np.float64
        assert got["actions"].dtype == np.float32 and got["obs"]["proprio"].dtype == np.float32
    with h5py.File(path, "r") as h:
        img = h["data/demo_0/obs/image"]
        assert img.chunks == (1, H, H, 3) and img.compression == "gzip"
        assert h["mask/train"].dtype.kind == "S" and h["mask/train"][0] == b"demo_0"
        assert bool(h["data"].attrs["complete"])


def test_masks_split_and_nesting(demo_path):
    with DemoFile(demo_path) as f:
        train, valid = f.demo_names("train"), f.demo_names("valid")
        assert valid == ["demo_9"]  # last max(1, round(0.1 * 10)) demos
        assert set(train) | set(valid) == set(f.demo_names()) and not set(train) & set(valid)
        # sizes above the 9 train demos are skipped; two seeds x two sizes
        assert sorted(k for k in f.filter_keys if k.startswith("train_n")) == [
            "train_n2_seed0", "train_n2_seed1", "train_n5_seed0", "train_n5_seed1"]
        for s in (0, 1):
            small, big = f.subset(2, s), f.subset(5, s)
            assert len(small) == 2 and len(big) == 5 and set(small) < set(big) < set(train)
        assert f.subset(5, 0) != f.subset(5, 1)


def test_split_masks_rules():
    names = [f"demo_{i}" for i in range(25)]
    m = split_masks(names, 0.2, (1, 5, 20, 21), (3,))
    assert m["valid"] == names[20:] and m["train"] == names[:20]
    assert "train_n21_seed3" not in m and set(m["train_n20_seed3"]) == set(m["train"])
    perm = np.random.default_rng(3).permutation(20)
    assert set(m["train_n5_seed3"]) == {names[i] for i in perm[:5]}
    assert split_masks(names, 0.0, (), ())["valid"] == []
    with pytest.raises(ValueError, match="no train demos"):
        split_masks(names[:1], 0.1, (), ())


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_writer_leaves_no_file(tmp_path, exc):
    path = tmp_path / "demos.hdf5"
    rng = np.random.default_rng(0)
    with pytest.raises(exc):
        with DemoWriter(path, ENV_ARGS) as w:
            w.add_episode(**fake_episode(4, rng), seed=0)
            w.add_episode(**fake_episode(4, rng), seed=1)
            assert w.tmp_path.exists() and ".tmp-" in w.tmp_path.name
            raise exc("interrupted")
    assert os.listdir(tmp_path) == []


def test_aborted_rewrite_keeps_old_file(demo_path):
    before = demo_path.read_bytes()
    with pytest.raises(RuntimeError):
        with DemoWriter(demo_path, ENV_ARGS) as w:
            w.add_episode(**fake_episode(4, np.random.default_rng(1)), seed=0)
            raise RuntimeError("boom")
    assert demo_path.read_bytes() == before
    assert os.listdir(demo_path.parent) == [demo_path.name]


def test_failing_close_leaves_no_file(tmp_path):
    path = tmp_path / "one.hdf5"
    with pytest.raises(ValueError, match="no train demos"):
        with DemoWriter(path, ENV_ARGS, valid_fraction=0.1) as w:
            w.add_episode(**fake_episode(3, np.random.default_rng(0)), seed=0)
    assert os.listdir(tmp_path) == []


def test_writer_rejects_inconsistent_episode(tmp_path):
    ep = fake_episode(5, np.random.default_rng(0))
    ep["rewards"] = ep["rewards"][:4]
    with pytest.raises(ValueError, match="rewards"):
        with DemoWriter(tmp_path / "x.hdf5", ENV_ARGS) as w:
            w.add_episode(**ep, seed=0)
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(DemoFileError, match="not found.*nope.hdf5"):
        DemoFile(tmp_path / "nope.hdf5")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.hdf5"
    path.write_bytes(b"this is not an HDF5 file" * 100)
    with pytest.raises(DemoFileError, match="garbage.hdf5.*not a valid HDF5"):
        DemoFile(path)


def test_truncated_file(demo_path, tmp_path):
    path = tmp_path / "truncated.hdf5"
    shutil.copy(demo_path, path)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(DemoFileError, match="truncated.hdf5.*truncated/corrupt"):
        DemoFile(path)


def test_corrupt_bytes_inside_data(demo_path):
    with h5py.File(demo_path, "r") as h:
        chunk = h["data/demo_4/obs/image"].id.get_chunk_info(2)
        states_offset = h["data/demo_6/states"].id.get_chunk_info(0).byte_offset
    with open(demo_path, "r+b") as fh:
        for offset in (chunk.byte_offset + chunk.size // 2, states_offset + 8):
            fh.seek(offset)
            fh.write(b"\xff" * 16)
    with DemoFile(demo_path) as f:
        f.episode("demo_3")
        for name in ("demo_4", "demo_6"):  # the fletcher32 checksums catch damaged images and floats
            with pytest.raises(DemoFileError, match=f"demos.hdf5: cannot read {name}, the file is corrupt"):
                f.episode(name)


def test_missing_key(demo_path):
    with h5py.File(demo_path, "a") as h:
        del h["data/demo_3/actions"]
    with pytest.raises(DemoFileError, match="demo_3 is missing key 'actions'"):
        DemoFile(demo_path)


def test_missing_obs_key(demo_path):
    with h5py.File(demo_path, "a") as h:
        del h["data/demo_7/obs/image"]
    with pytest.raises(DemoFileError, match="demo_7 is missing key 'obs/image'"):
        DemoFile(demo_path)


def test_length_mismatch(demo_path):
    with h5py.File(demo_path, "a") as h:
        h["data/demo_2"].attrs["num_samples"] = 99
    with pytest.raises(DemoFileError, match="demo_2/obs/image has .* rows but num_samples is 99"):
        DemoFile(demo_path)


def test_incomplete_file(demo_path):
    with h5py.File(demo_path, "a") as h:
        del h["data"].attrs["complete"]
    with pytest.raises(DemoFileError, match="not marked complete"):
        DemoFile(demo_path)


def test_unknown_filter_key(demo_path):
    with DemoFile(demo_path) as f, pytest.raises(DemoFileError) as e:
        f.demo_names("training")
    assert "unknown filter key 'training'" in str(e.value) and "'train'" in str(e.value) and "'valid'" in str(e.value)


def test_subset_too_large(demo_path):
    with DemoFile(demo_path) as f:
        with pytest.raises(DemoFileError, match="N=50 demos requested but only 9 train demos are available"):
            f.subset(50, 0)
        with pytest.raises(DemoFileError, match="no subset 'train_n3_seed0'.*train_n2_seed0"):
            f.subset(3, 0)


def test_unknown_demo(demo_path):
    with DemoFile(demo_path) as f, pytest.raises(DemoFileError, match="no demo 'demo_10'"):
        f.episode("demo_10")
