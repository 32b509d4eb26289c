"""LeRobot v2.1 datasets (format only, no ``lerobot`` package): ``robrep export-dataset format=lerobot`` writes the
documented layout (metadata, parquet schema, H.264 videos, per-episode stats), deterministically and atomically, and
``dataset=lerobot:<dir>`` reads it back through the path training uses: actions, proprio, rewards, dones and states
bit-identical, frames within the codec's tolerance, lengths, tasks and masks equal. Damaged datasets fail clearly."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.checkpoint import read_policy_checkpoint
from robrep.cli import main
from robrep.data.collect import collect_demos
from robrep.data.demo_file import DemoFile
from robrep.data.lerobot import (LeRobotFormatError, cached_demo_file, control_fps, read_lerobot, stats_sample_indices,
                                 write_lerobot)
from robrep.data.sources import resolve_dataset
from robrep.encoders import load_encoder, save_checkpoint

ARCH = dict(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """6 push demos at 32 px (train demo_0..4 with subsets N=2 seed 0, valid demo_5)."""
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    collect_demos("push", 6, path, image_size=32, subset_sizes=(2,), subset_seeds=(0,), progress=False)
    return path


@pytest.fixture(scope="module")
def exported(demos, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "push_lerobot"
    summary = write_lerobot(demos, out)
    return out, summary


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_metadata_and_parquet_schema(demos, exported):
    import pyarrow.parquet as pq

    root, summary = exported
    with DemoFile(demos) as f:
        lengths = [f.num_samples(n) for n in f.demo_names()]
        instructions = {f.episode(n)["attrs"]["ep_meta"]["instruction"] for n in f.demo_names()}
        env_args = f.env_args
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["chunks_size"] == 1000 and info["total_chunks"] == 1
    assert (info["total_episodes"], info["total_frames"], info["total_videos"]) == (6, sum(lengths), 6)
    assert info["fps"] == 25 == control_fps(env_args)  # frame_skip 20 x 2 ms
    assert info["splits"] == {"train": "0:5", "valid": "5:6"}
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    feats = info["features"]
    cam = feats["observation.images.image"]
    assert cam["dtype"] == "video" and cam["shape"] == [32, 32, 3]
    assert cam["info"]["video.codec"] == "h264" and cam["info"]["video.pix_fmt"] == "yuv420p"
    assert cam["info"]["video.fps"] == 25
    assert feats["action"] == {"dtype": "float32", "shape": [4], "names": ["delta_x", "delta_y", "delta_z", "gripper"]}
    assert feats["observation.state"]["shape"] == [4] and feats["next.done"]["dtype"] == "bool"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[key]["shape"] == [1]
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    assert [e["length"] for e in episodes] == lengths and [e["episode_index"] for e in episodes] == list(range(6))
    tasks = [json.loads(line) for line in (root / "meta/tasks.jsonl").read_text().splitlines()]
    assert {t["task"] for t in tasks} == instructions == set(summary["tasks"])
    assert all(e["tasks"][0] in instructions for e in episodes)

    index = 0
    for e, T in enumerate(lengths):
        data = root / f"data/chunk-000/episode_{e:06d}.parquet"
        assert (root / f"videos/chunk-000/observation.images.image/episode_{e:06d}.mp4").stat().st_size > 0
        table = pq.read_table(data)
        schema = table.schema
        assert set(schema.names) == {k for k, ft in feats.items() if ft["dtype"] != "video"}
        assert str(schema.field("action").type) == "fixed_size_list<element: float>[4]"
        assert str(schema.field("next.done").type) == "bool" and str(schema.field("index").type) == "int64"
        hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert hf["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"}
        cols = table.to_pydict()
        assert cols["frame_index"] == list(range(T)) and cols["episode_index"] == [e] * T
        assert cols["index"] == list(range(index, index + T))
        np.testing.assert_allclose(cols["timestamp"], np.arange(T) / 25.0, atol=1e-6)
        assert cols["next.done"] == [False] * (T - 1) + [True]
        index += T

    stats = [json.loads(line) for line in (root / "meta/episodes_stats.jsonl").read_text().splitlines()]
    assert [s["episode_index"] for s in stats] == list(range(6))
    with DemoFile(demos) as f:
        ep = f.episode("demo_0")
    img = stats[0]["stats"]["observation.images.image"]
    assert np.array(img["mean"]).shape == (3, 1, 1) and img["count"] == [lengths[0]]
    frames = ep["obs"]["image"] / 255.0
    np.testing.assert_allclose(np.array(img["mean"]).ravel(), frames.mean((0, 1, 2)), rtol=1e-9)
    assert 0.0 <= np.min(img["min"]) <= np.max(img["max"]) <= 1.0
    act = stats[0]["stats"]["action"]
    np.testing.assert_allclose(act["mean"], ep["actions"].astype(np.float64).mean(0), rtol=1e-9)
    np.testing.assert_allclose(act["std"], ep["actions"].astype(np.float64).std(0), rtol=1e-9)
    assert act["count"] == [lengths[0]] and np.array(act["min"]).shape == (4,)
    assert stats[0]["stats"]["next.reward"]["count"] == [lengths[0]]
    assert len(stats_sample_indices(50)) == 50 and len(stats_sample_indices(1000)) == 177


def test_round_trip_is_exact_except_the_frames(demos, exported, tmp_path):
    root, _ = exported
    back = resolve_dataset(f"lerobot:{root}", cache_dir=tmp_path / "cache")
    assert back.parent == tmp_path / "cache" and back.name.startswith("push_lerobot-")
    errors = []
    with DemoFile(demos) as a, DemoFile(back) as b:
        assert a.demo_names() == b.demo_names() and a.obs_keys == b.obs_keys
        assert a.env_args == b.env_args and a.demo_seeds == b.demo_seeds
        assert {k: a.demo_names(k) for k in a.filter_keys} == {k: b.demo_names(k) for k in b.filter_keys}
        for name in a.demo_names():
            x, y = a.episode(name), b.episode(name)
            assert x["attrs"]["num_samples"] == y["attrs"]["num_samples"]
            assert x["attrs"]["ep_meta"] == y["attrs"]["ep_meta"]  # the instruction (task string) included
            for key in ("actions", "rewards", "dones", "states"):
                assert x[key].dtype == y[key].dtype and x[key].tobytes() == y[key].tobytes(), key
            for key in ("proprio", "state"):
                assert x["obs"][key].tobytes() == y["obs"][key].tobytes(), key
            assert y["obs"]["image"].shape == x["obs"]["image"].shape and y["obs"]["image"].dtype == np.uint8
            errors.append(np.abs(x["obs"]["image"].astype(np.int16) - y["obs"]["image"].astype(np.int16)).ravel())
    err = np.concatenate(errors)
    print(f"frame round trip (H.264 crf 18, yuv420p, 32 px): mean abs error {err.mean():.2f}, max {err.max()}, "
          f"99th percentile {np.percentile(err, 99):.0f} (of 255)")
    # measured 3.8 on these 32 px frames: yuv420p keeps one colour sample per 2x2 pixels, and at 32 px a large
    # share of the pixels lies on a sharp coloured edge (96 px frames: below, 2.1)
    assert err.mean() <= 4.5


def frame_error(demo_path: Path, out: Path, **video) -> np.ndarray:
    """Absolute pixel errors (flat, of 255) of every frame of ``demo_path`` exported to ``out`` and read back."""
    write_lerobot(demo_path, out, **video)
    with DemoFile(demo_path) as a, DemoFile(resolve_dataset(f"lerobot:{out}", cache_dir=out.parent / "cache")) as b:
        return np.concatenate([np.abs(a.episode(n)["obs"]["image"].astype(np.int16)
                                      - b.episode(n)["obs"]["image"].astype(np.int16)).ravel() for n in a.demo_names()])


def test_frames_at_the_task_resolution_and_near_lossless_video(demos, tmp_path):
    native = tmp_path / "push96.hdf5"  # the tasks' default 96 px frames
    collect_demos("push", 2, native, image_size=96, subset_sizes=(), subset_seeds=(), progress=False)
    err = frame_error(native, tmp_path / "p96")
    print(f"96 px, crf 18, yuv420p: mean abs error {err.mean():.2f}, max {err.max()}")
    assert err.mean() <= 3.0  # measured 2.1
    err = frame_error(demos, tmp_path / "p444", crf=0, pix_fmt="yuv444p")  # lossless H.264 at full chroma resolution
    print(f"32 px, crf 0, yuv444p: mean abs error {err.mean():.2f}, max {err.max()}")
    assert err.max() <= 2  # what remains is the rounding of RGB -> YUV -> RGB (measured max 1)


def test_export_is_deterministic_and_refuses_to_overwrite(demos, exported, tmp_path):
    root, _ = exported
    out = tmp_path / "again"
    write_lerobot(demos, out)
    first = tree_bytes(out)
    assert first.keys() == tree_bytes(root).keys()
    assert all(first[k] == v for k, v in tree_bytes(root).items() if k != "meta/robrep.json")  # source path differs
    with pytest.raises(LeRobotFormatError, match="exists and is not empty; pass overwrite=true"):
        write_lerobot(demos, out)
    assert tree_bytes(out) == first
    write_lerobot(demos, out, overwrite=True)
    assert tree_bytes(out) == first
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temp directory left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    write_lerobot(demos, empty, pix_fmt="yuv444p")  # an existing empty directory is fine
    info = json.loads((empty / "meta/info.json").read_text())
    assert info["features"]["observation.images.image"]["info"]["video.pix_fmt"] == "yuv444p"


def test_damaged_dataset_fails_clearly(exported, tmp_path):
    root, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    parquet = bad / "data/chunk-000/episode_000002.parquet"
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])
    with pytest.raises(LeRobotFormatError, match="episode_000002.parquet: cannot read the parquet file, it is truncated"):
        resolve_dataset(f"lerobot:{bad}", cache_dir=tmp_path / "cache")
    parquet.unlink()
    with pytest.raises(LeRobotFormatError, match="data/chunk-000/episode_000002.parquet is missing"):
        resolve_dataset(f"lerobot:{bad}", cache_dir=tmp_path / "cache")
    video = bad / "videos/chunk-000/observation.images.image/episode_000001.mp4"
    shutil.copy(root / "data/chunk-000/episode_000002.parquet", parquet)
    video.write_bytes(video.read_bytes()[:200])
    with pytest.raises(LeRobotFormatError, match="episode_000001.mp4"):
        resolve_dataset(f"lerobot:{bad}", cache_dir=tmp_path / "cache")
    (bad / "meta/info.json").unlink()
    with pytest.raises(LeRobotFormatError, match="missing meta/info.json"):
        resolve_dataset(f"lerobot:{bad}")
    with pytest.raises(LeRobotFormatError, match="not found"):
        resolve_dataset(f"lerobot:{tmp_path / 'nowhere'}")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing half-written


def test_conversion_is_cached_by_content(exported, tmp_path):
    root, _ = exported
    copy = tmp_path / "push_lerobot"
    shutil.copytree(root, copy)
    first = cached_demo_file(copy, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert cached_demo_file(copy, tmp_path / "cache") == first and first.stat().st_mtime_ns == stamp  # reused
    tasks = copy / "meta/tasks.jsonl"
    tasks.write_text(tasks.read_text().replace("push the red block", "shove the red block"))
    second = cached_demo_file(copy, tmp_path / "cache")
    assert second != first  # an edited dataset is converted again
    with DemoFile(second) as f:
        assert f.episode("demo_0")["attrs"]["ep_meta"]["instruction"].startswith("push")  # robrep.json wins


def test_foreign_dataset_without_robrep_metadata(demos, exported, tmp_path):
    """A LeRobot dataset robrep did not write: no meta/robrep.json, no robrep.* columns, only a train split."""
    import pyarrow.parquet as pq

    root, _ = exported
    foreign = tmp_path / "foreign"
    shutil.copytree(root, foreign)
    (foreign / "meta/robrep.json").unlink()
    info = json.loads((foreign / "meta/info.json").read_text())
    info["splits"] = {"train": "0:6"}
    (foreign / "meta/info.json").write_text(json.dumps(info))
    for path in (foreign / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["robrep.state", "robrep.sim_state"]), path)
    back = resolve_dataset(f"lerobot:{foreign}", cache_dir=tmp_path / "cache")
    with DemoFile(demos) as a, DemoFile(back) as b:
        assert b.obs_keys == ["image", "proprio"] and len(b) == 6
        assert b.demo_names("valid") == ["demo_5"] and b.demo_names("train") == [f"demo_{i}" for i in range(5)]
        assert "train_n2_seed0" in b.filter_keys
        x, y = a.episode("demo_3"), b.episode("demo_3")
        assert x["actions"].tobytes() == y["actions"].tobytes() and y["states"].shape == (len(x["actions"]), 0)
        assert y["attrs"]["ep_meta"] == {"instruction": x["attrs"]["ep_meta"]["instruction"]}
        assert b.env_args["fps"] == 25.0


def test_export_dataset_cli_and_training_on_lerobot(demos, tmp_path, capsys, monkeypatch):
    """``robrep export-dataset`` (default out under runs/lerobot/) and ``robrep train dataset=lerobot:<dir>``."""
    monkeypatch.chdir(tmp_path)
    main(["export-dataset", f"dataset={demos}", "format=lerobot", "progress=false"])
    out = capsys.readouterr().out
    root = Path("runs/lerobot/push")
    assert "6 episodes" in out and f"dataset=lerobot:{root}" in out and read_lerobot(root).fps == 25
    with pytest.raises(SystemExit):  # Hydra reports the refusal and exits
        main(["export-dataset", f"dataset={demos}", "progress=false"])
    assert "exists and is not empty" in capsys.readouterr().err
    main(["export-dataset", f"dataset={demos}", "progress=false", "overwrite=true"])
    with pytest.raises(SystemExit):
        main(["export-dataset", f"dataset={demos}", "format=rlds", "out=runs/x", "progress=false"])
    assert "format='rlds'" in capsys.readouterr().err

    torch.manual_seed(0)
    save_checkpoint(load_encoder("mae", **ARCH), tmp_path / "mae.pt")
    main(["train", "policy=mlp", "encoder=mae", f"weights={tmp_path / 'mae.pt'}", f"dataset=lerobot:{root}", "n=2",
          "seed=0", "out=p.pt", "cache_dir=cache/features", "policy.train.steps=3", "policy.train.eval_every=3",
          "progress=false", *[f"encoder.arch.{k}={v}" for k, v in ARCH.items()]])
    assert "policy: p.pt" in capsys.readouterr().out
    ckpt = read_policy_checkpoint("p.pt")
    cached = list(Path("cache/lerobot").glob("push-*.hdf5"))  # converted once, beside the feature caches
    assert len(cached) == 1 and Path(ckpt["dataset"]["path"]) == cached[0]
    with DemoFile(demos) as f:
        assert ckpt["dataset"]["train_demos"] == f.subset(2, 0) and ckpt["dataset"]["valid_demos"] == ["demo_5"]
    assert ckpt["instruction"] == "push the red block onto the yellow circle"
