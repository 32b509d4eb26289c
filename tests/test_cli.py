"""Smoke runs of every ``robrep`` sub-command at a tiny budget (real envs, real files)."""

import subprocess
import sys
from pathlib import Path

import h5py
import imageio.v2 as imageio
import pytest

from robrep.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def robrep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robrep.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_fails_clearly(capsys):
    assert main(["colect"]) == 2
    assert "unknown command 'colect'" in capsys.readouterr().err


GROUP_OVERRIDE = {"pretrain": "encoder=dift", "features": "encoder=dift", "probe": "encoder=dift"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_cfg_job_prints_resolved_config(command, tmp_path):
    override = GROUP_OVERRIDE.get(command, "task=reach")
    result = robrep(command, override, "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"name: {override.split('=')[1]}" in result.stdout


@pytest.mark.parametrize("encoder", ["mae", "dift", "voltron", "clip"])
def test_pretrain_then_features(encoder, tmp_path):
    """A 3-step pretraining writes a checkpoint + loss curve; ``features`` then caches with it."""
    demos = tmp_path / "demos.hdf5"
    result = robrep("collect", "task=push_color", "num_demos=2", f"out={demos}", "task.image_size=48",
                    "subset_sizes=[]", "subset_seeds=[]", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ckpt = tmp_path / "enc.pt"
    result = robrep("pretrain", f"encoder={encoder}", f"data=[{demos}]", "steps=3", "encoder.pretrain.batch_size=4",
                    f"out={ckpt}", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ckpt.exists() and (tmp_path / "enc.loss.csv").exists() and (tmp_path / "enc.loss.png").exists()
    assert "3 steps" in result.stdout
    result = robrep("features", f"encoder={encoder}", f"dataset={demos}", f"weights={ckpt}",
                    f"cache_dir={tmp_path}/cache", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "features of 2 demos" in result.stdout
    assert len(list((tmp_path / "cache").glob("*.features.hdf5"))) == 1


def test_pretrain_resumes_and_grows_a_budget(tmp_path):
    """steps=3 then resume=<it> steps=+2: 5 steps in all, FLOPs and both runs recorded; refusals name the fix."""
    from robrep.encoders.checkpoint import read_checkpoint

    demos = tmp_path / "demos.hdf5"
    assert robrep("collect", "task=push", "num_demos=2", f"out={demos}", "task.image_size=32", "subset_sizes=[]",
                  "subset_seeds=[]", "progress=false", cwd=tmp_path).returncode == 0
    tiny = [f"data=[{demos}]", "encoder.pretrain.batch_size=4", "encoder.arch.input_size=32", "encoder.arch.depth=1",
            "encoder.arch.embed_dim=32", "encoder.arch.num_heads=2", "progress=false"]
    first, grown = tmp_path / "a.pt", tmp_path / "b.pt"
    result = robrep("pretrain", "encoder=mae", "steps=3", f"out={first}", *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.state.pt").exists()
    result = robrep("pretrain", "encoder=mae", f"resume={first}", "steps=+2", f"out={grown}", *tiny, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = read_checkpoint(grown)["meta"]
    assert meta["steps"] == 5 and meta["resumed_from"]["steps"] == 3 and len(meta["runs"]) == 2
    assert meta["flops"] == 5 * meta["flops_per_step"] > 0 and meta["seconds_total"] >= meta["seconds"]
    assert meta["precision"] == "float32"
    result = robrep("pretrain", "encoder=mae", f"resume={grown}", "steps=+1", "precision=auto",
                    f"out={tmp_path / 'auto.pt'}", *tiny, cwd=tmp_path)  # auto keeps the resumed run's arithmetic
    assert result.returncode == 0, result.stderr
    assert read_checkpoint(tmp_path / "auto.pt")["meta"]["precision"] == "float32"
    result = robrep("pretrain", "encoder=mae", f"resume={grown}", "steps=4", f"out={tmp_path / 'c.pt'}", *tiny,
                    cwd=tmp_path)
    assert result.returncode != 0 and "use steps=+N" in result.stderr
    (tmp_path / "b.state.pt").unlink()
    result = robrep("pretrain", "encoder=mae", f"resume={grown}", "steps=+1", f"out={tmp_path / 'c.pt'}", *tiny,
                    cwd=tmp_path)
    assert result.returncode != 0 and "b.state.pt is missing" in result.stderr


def test_collect_writes_robomimic_file(tmp_path):
    out = tmp_path / "reach.hdf5"
    result = robrep("collect", "task=reach", "num_demos=6", f"out={out}", "task.image_size=32",
                    "subset_sizes=[2,4]", "subset_seeds=[0]", "progress=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert len(f["data"]) == 6
        assert f["data/demo_0/obs/image"].shape[1:] == (32, 32, 3)
        assert "train_n4_seed0" in f["mask"]


def test_video_writes_gif(tmp_path):
    out = tmp_path / "button.gif"
    result = robrep("video", "task=button", "episodes=1", f"out={out}", "task.image_size=32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frames = imageio.mimread(out)
    assert len(frames) > 3 and frames[0].shape[:2] == (32, 32)


def test_quickstart_runs_main_job(tmp_path):
    # the quick sweep preset, shrunk: two arms, N=4, two episodes at 32 px; ends with a verdict and its caveat
    result = robrep("quickstart", "task=reach", "task.image_size=32", "arms=[cnn,mae_random]", "demos=[4]", "episodes=2",
                    "num_envs=2", "launcher=inprocess", "bootstrap_resamples=100", f"dataset={tmp_path}/reach.hdf5",
                    f"sweep_dir={tmp_path}/qs", "progress=false", "pairs=[[mae_random,cnn]]",
                    'arm_overrides=["policy.train.steps=4","policy.train.eval_every=2",'
                    '"encoder.arch.depth=1","encoder.arch.embed_dim=32","encoder.arch.num_heads=2"]',
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reach.hdf5").exists() and (tmp_path / "qs" / "cells" / "cnn_n4_s0.json").exists()
    assert (tmp_path / "qs" / "success_vs_n.png").stat().st_size > 1000
    assert any(p.stat().st_size > 1000 for p in (tmp_path / "qs" / "videos").glob("*.mp4"))
    assert "plot:" in result.stdout and "videos:" in result.stdout
    assert "verdict at N=4: mae_random" in result.stdout and "caveat: 1 training seed(s) × 2 episodes" in result.stdout


def test_command_help_lists_only_the_groups_it_uses(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    groups = {line.split("=")[0].strip() for line in out.splitlines() if line.startswith("  ") and " = " in line}
    assert groups == {"encoder", "obs_keys", "policy", "task"}
    assert main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  launcher = joblib" in out and "  arm =" not in out and "ablation" not in out
