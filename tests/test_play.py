"""Play corpus (robrep/data/play.py): tiny 2-task x 2-episode runs at 32 px, seeds, behaviour, resume, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs import make_env
from envs.experts import make_expert
from robrep.data import DemoFile
from robrep.data.collect import rollout_episode
from robrep.data.frames import FrameDataset
from robrep.data.play import (PlayBehaviour, PlayInterrupted, PlayPolicy, collect_play, collect_play_task, play_files,
                         task_path)
from robrep.seeds import DEMO_SEEDS, EVAL_SEEDS, PLAY_SEEDS, check_demo_seed, check_play_seed

SIZE = 32
TASKS = ["reach", "push"]
#: Random segments often (and one whole random episode in two) so 2 episodes exercise both kinds.
BEHAVIOUR = PlayBehaviour(noise_std=0.1, random_prob=0.5, segment_steps=5, random_episode_fraction=0.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("play") / "varied"
    summary = collect_play(TASKS, 2, out, BEHAVIOUR, image_size=SIZE, visuals="varied", jobs=1, progress=False)
    return out, summary


def test_file_format(corpus):
    out, summary = corpus
    assert sorted(os.listdir(out)) == ["push.hdf5", "reach.hdf5"]
    assert summary["paths"] == [str(out / "reach.hdf5"), str(out / "push.hdf5")]
    total = 0
    for task, result in zip(TASKS, summary["tasks"]):
        assert result["task"] == task and not result["skipped"] and result["episodes"] == 2
        with DemoFile(out / f"{task}.hdf5") as f:
            assert len(f) == 2  # every episode kept, successful or not
            attrs = f.attrs
            assert attrs["kind"] == "play" and attrs["task"] == task and attrs["visuals"] == "varied"
            assert json.loads(attrs["behaviour"]) == {"noise_std": 0.1, "random_prob": 0.5, "segment_steps": 5,
                                                      "random_episode_fraction": 0.5}
            assert f.env_args["env_kwargs"]["visuals"] == "varied" and f.env_args["env_kwargs"]["image_size"] == SIZE
            assert f.demo_names("train") == ["demo_0"] and f.demo_names("valid") == ["demo_1"]
            max_steps = f.env_args["max_episode_steps"]
            frames = 0
            for name in f.demo_names():
                ep, T = f.episode(name), f.num_samples(name)
                frames += T
                assert ep["obs"]["image"].shape == (T, SIZE, SIZE, 3) and ep["obs"]["image"].dtype == np.uint8
                assert ep["actions"].shape == (T, 4) and ep["actions"].dtype == np.float32
                assert np.all(np.abs(ep["actions"]) <= 1.0)
                assert ep["dones"][-1] == 1 and not ep["dones"][:-1].any()
                assert T == max_steps or ep["rewards"][-1] == 1.0  # full length unless it succeeded
                meta = ep["attrs"]["ep_meta"]
                assert meta["visuals"]["setting"] == "varied" and meta["seed"] == ep["attrs"]["seed"]
                assert isinstance(meta["play_fully_random"], bool) and isinstance(meta["play_random_segments"], list)
            assert int(attrs["total"]) == frames == result["frames"]
            total += frames
    assert summary["frames"] == summary["new_frames"] == total and summary["frames_per_s"] > 0


def test_seeds_are_play_seeds_and_ranges_disjoint(corpus):
    out, _ = corpus
    for task in TASKS:
        with DemoFile(out / f"{task}.hdf5") as f:
            assert f.demo_seeds == [PLAY_SEEDS.start, PLAY_SEEDS.start + 1]
    assert PLAY_SEEDS == range(2_000_000, 3_000_000)
    ranges = [set(DEMO_SEEDS), set(EVAL_SEEDS), set(PLAY_SEEDS)]
    assert not (ranges[0] & ranges[1] or ranges[0] & ranges[2] or ranges[1] & ranges[2])
    assert check_play_seed(np.int64(2_000_000)) == 2_000_000
    with pytest.raises(ValueError, match="outside the play seed range.*it is an evaluation seed"):
        check_play_seed(1_500_000)
    with pytest.raises(ValueError, match="outside the demo seed range.*it is a play seed"):
        check_demo_seed(2_000_000)
    with pytest.raises(ValueError, match="outside the play seed range"):
        collect_play(TASKS, 2, out, seed_start=0, progress=False)
    with pytest.raises(ValueError, match="would leave the play seed range"):
        collect_play(TASKS, 2, out, seed_start=PLAY_SEEDS.stop - 1, progress=False)


def test_deterministic(corpus, tmp_path):
    out, _ = corpus
    again = collect_play_task("push", 2, tmp_path / "push.hdf5", BEHAVIOUR, image_size=SIZE, visuals="varied")
    assert not again["skipped"]
    with DemoFile(out / "push.hdf5") as a, DemoFile(tmp_path / "push.hdf5") as b:
        for name in a.demo_names():
            ea, eb = a.episode(name), b.episode(name)
            np.testing.assert_array_equal(ea["actions"], eb["actions"])
            np.testing.assert_array_equal(ea["obs"]["image"], eb["obs"]["image"])
            assert ea["attrs"]["ep_meta"] == eb["attrs"]["ep_meta"]


def _rollout(task: str, seed: int, behaviour: PlayBehaviour | None) -> tuple[dict, PlayPolicy | None]:
    env = make_env(task, image_size=SIZE)
    try:
        policy = PlayPolicy(env, behaviour, seed, task) if behaviour else make_expert(env)
        return rollout_episode(env, policy, seed), (policy if behaviour else None)
    finally:
        env.close()


def test_random_segments_replace_the_expert():
    seed, seg = PLAY_SEEDS.start + 7, 5
    expert, _ = _rollout("push", seed, None)
    # without noise or random segments the behaviour is exactly the noise-free expert
    plain, _ = _rollout("push", seed, PlayBehaviour(noise_std=0.0, random_prob=0.0, random_episode_fraction=0.0))
    np.testing.assert_array_equal(plain["actions"], expert["actions"])
    ep, policy = _rollout("push", seed, PlayBehaviour(noise_std=0.0, random_prob=0.5, segment_steps=seg,
                                                      random_episode_fraction=0.0))
    assert not policy.fully_random and policy.random_segments
    first = policy.random_segments[0]
    start = first * seg
    np.testing.assert_array_equal(ep["actions"][:start], expert["actions"][:start])  # expert before it
    block = ep["actions"][start:start + seg]
    assert np.all(block == block[0])  # one random action held over the segment
    assert not np.allclose(block, expert["actions"][start:start + seg])
    # a fully random episode: every segment random, constant within each
    ep, policy = _rollout("reach", seed, PlayBehaviour(segment_steps=seg, random_episode_fraction=1.0))
    T = len(ep["actions"])
    assert policy.fully_random and policy.random_segments == list(range(-(-T // seg)))
    for s in range(0, T, seg):
        assert np.all(ep["actions"][s:s + seg] == ep["actions"][s])


def test_resume_skips_complete_files(corpus):
    out, summary = corpus
    mtimes = {p: os.stat(p).st_mtime_ns for p in summary["paths"]}
    again = collect_play(TASKS, 2, out, BEHAVIOUR, image_size=SIZE, visuals="varied", jobs=1, progress=False)
    assert [r["skipped"] for r in again["tasks"]] == [True, True] and again["new_frames"] == 0
    assert again["frames"] == summary["frames"]
    assert {p: os.stat(p).st_mtime_ns for p in summary["paths"]} == mtimes
    with pytest.raises(ValueError, match="exists but was made with other settings"):
        collect_play(TASKS, 3, out, BEHAVIOUR, image_size=SIZE, visuals="varied", progress=False)
    with pytest.raises(ValueError, match="other settings.*visuals"):
        collect_play(TASKS, 2, out, BEHAVIOUR, image_size=SIZE, visuals="clean", progress=False)


def test_damaged_file_is_recollected_and_stop_leaves_nothing(tmp_path):
    path = task_path(tmp_path, "reach")
    path.write_bytes(b"not hdf5")
    with pytest.warns(UserWarning, match="re-collecting"):
        result = collect_play_task("reach", 2, path, image_size=SIZE)
    assert not result["skipped"] and len(DemoFile(path)) == 2
    calls = []
    with pytest.raises(PlayInterrupted):
        collect_play_task("button", 3, tmp_path / "button.hdf5", image_size=SIZE, on_episode=calls.append,
                          should_stop=lambda: len(calls) >= 1)
    assert sorted(os.listdir(tmp_path)) == ["reach.hdf5"]  # no partial file, no temp file


def test_leave_one_task_out_and_frame_dataset(corpus, tmp_path):
    out, summary = corpus
    assert play_files(out, tasks=TASKS) == [out / "reach.hdf5", out / "push.hdf5"]
    assert play_files(out, tasks=TASKS, exclude=["push"]) == [out / "reach.hdf5"]
    with pytest.raises(ValueError, match="not among tasks"):
        play_files(out, tasks=TASKS, exclude=["psuh"])
    with pytest.raises(FileNotFoundError, match="button.hdf5"):
        play_files(out)  # default five tasks: three are missing
    assert len(play_files(tmp_path, check=False)) == 5
    frames = FrameDataset.from_files(play_files(out, tasks=TASKS))
    assert len(frames) == summary["frames"] and frames.images.shape[1:] == (SIZE, SIZE, 3)
    assert frames.episode.max() == 3 and frames.instructions[0] == "reach the red ball"


@pytest.mark.parametrize("kwargs, match", [
    (dict(tasks=["reach", "fly"]), r"unknown task\(s\) \['fly'\]"),
    (dict(tasks=["reach", "reach"]), "without repeats"),
    (dict(episodes_per_task=0), "episodes per task must be >= 1"),
    (dict(jobs=0), "jobs must be an integer >= 1"),
    (dict(visuals="foggy"), "foggy"),
])
def test_bad_arguments(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        collect_play(**{"tasks": TASKS, "episodes_per_task": 2, "out_dir": tmp_path, **kwargs}, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("field, value", [("random_prob", 1.5), ("random_episode_fraction", -0.1),
                                          ("noise_std", -1.0), ("segment_steps", 0)])
def test_bad_behaviour(field, value):
    with pytest.raises(ValueError, match=field):
        PlayBehaviour(**{field: value})


def robrep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robrep.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_play_end_to_end(tmp_path):
    """``robrep collect mode=play`` with two worker processes; a re-run keeps the complete files."""
    args = ("collect", "mode=play", "play.tasks=[reach,button]", "play.episodes_per_task=2", "play.jobs=2",
            "task.image_size=32", "task.visuals=varied", f"play.out_dir={tmp_path}/play/${{task.visuals}}",
            "progress=false")
    result = robrep(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "play" / "varied"
    assert sorted(os.listdir(out)) == ["button.hdf5", "reach.hdf5"]
    assert "frames/s" in result.stdout and str(out / "button.hdf5") in result.stdout
    for task in ("reach", "button"):
        with DemoFile(out / f"{task}.hdf5") as f:
            assert len(f) == 2 and f.attrs["kind"] == "play" and f.env_args["env_kwargs"]["visuals"] == "varied"
    again = robrep(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already complete") == 2


def test_cli_demos_mode_passes_visuals(tmp_path):
    out = tmp_path / "reach.hdf5"
    result = robrep("collect", "task=reach", "num_demos=2", f"out={out}", "task.image_size=32", "task.visuals=varied",
                    "subset_sizes=[]", "subset_seeds=[]", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with DemoFile(out) as f:
        assert f.env_args["env_kwargs"]["visuals"] == "varied" and "kind" not in f.attrs
    bad = robrep("collect", "mode=plya", cwd=tmp_path)
    assert bad.returncode != 0 and "unknown collect mode 'plya'" in bad.stderr


def test_pretraining_defaults_to_the_play_corpus_minus_excluded_tasks(corpus, tmp_path):
    from omegaconf import OmegaConf

    from robrep.pretrain.run import pretraining_files
    from robrep.encoders.checkpoint import read_checkpoint

    out, _ = corpus
    cfg = OmegaConf.load(Path(__file__).resolve().parent.parent / "configs" / "pretrain.yaml")
    assert cfg.data is None and cfg.corpus.dir == "data/play/varied" and list(cfg.corpus.exclude) == []
    cfg.corpus.dir, cfg.corpus.tasks = str(out), TASKS
    assert pretraining_files(cfg) == [str(out / "reach.hdf5"), str(out / "push.hdf5")]
    cfg.corpus.exclude = ["push"]  # leave-one-task-out for push
    assert pretraining_files(cfg) == [str(out / "reach.hdf5")]
    cfg.data = ["a.hdf5"]  # an explicit list wins
    assert pretraining_files(cfg) == ["a.hdf5"]
    # end to end: three steps on the corpus without push; the checkpoint names its files and how to re-make it
    ckpt = tmp_path / "enc.pt"
    result = robrep("pretrain", "encoder=mae", f"corpus.dir={out}", f"corpus.tasks=[{','.join(TASKS)}]",
                    "corpus.exclude=[push]", "steps=3", "encoder.pretrain.batch_size=4", "encoder.arch.input_size=32",
                    "encoder.arch.depth=1", f"out={ckpt}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = read_checkpoint(ckpt)["meta"]
    assert list(meta["data"]) == [str(out / "reach.hdf5")]
    assert f"data=[{out / 'reach.hdf5'}]" in meta["reproduce"]
    missing = robrep("pretrain", "encoder=mae", f"corpus.dir={tmp_path / 'none'}", "steps=1", cwd=tmp_path)
    assert missing.returncode != 0 and "robrep collect mode=play" in missing.stderr
