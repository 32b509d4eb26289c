"""Bad inputs get a message naming the value and the argument, before any work is done (issue 19's matrix, the
cases fixed so far; each asserts the message, not only that something failed)."""

from __future__ import annotations

import numpy as np
import pytest

from robrep.cli import main


@pytest.mark.parametrize("args, message", [
    (["collect", "task=reach", "num_demos=abc"], "num_demos must be a whole number >= 1, got 'abc'"),
    (["collect", "task=reach", "num_demos=0"], "num_demos must be a whole number >= 1, got 0"),
    (["collect", "task=reach", "num_demos=2", "noise_std=-1"], "noise_std must be >= 0"),
    (["collect", "task=reach", "num_demos=2", "out={tmp}"], "is a directory; name the .hdf5 file"),
    (["video", "task=reach", "episodes=0", "out={tmp}/v.gif"], "episodes must be >= 1, got 0"),
])
def test_cli_bad_values_are_named(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        main([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert not list(tmp_path.glob("*.hdf5")) and not list(tmp_path.glob("*.gif"))


def test_video_refuses_fps_zero(tmp_path):
    from robrep.video import write_video

    with pytest.raises(ValueError, match="fps must be > 0, got 0"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "v.gif", fps=0)


def test_features_refuse_batch_size_zero(tmp_path):
    from robrep.data.feature_cache import compute_features

    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        compute_features(None, tmp_path / "missing.hdf5", tmp_path, batch_size=0)


def test_a_demo_file_without_images_is_named_with_its_keys(tmp_path):
    """A demo file whose demos lack obs/image: every consumer says which file, which key, and what it has."""
    from robrep.data.collect import collect_demos
    from robrep.data.demo_file import DemoFile, DemoFileError
    from robrep.data.frames import FrameDataset

    import h5py

    path = tmp_path / "noimg.hdf5"
    collect_demos("reach", 2, path, image_size=16, subset_sizes=(), subset_seeds=(), valid_fraction=0.0,
                  progress=False)
    with h5py.File(path, "a") as f:
        for name in f["data"]:
            del f[f"data/{name}/obs/image"]
    with DemoFile(path) as demos:
        with pytest.raises(DemoFileError, match=r"noimg.hdf5: no obs/image in its demos \(pretraining needs them\); "
                                                r"it records obs/\['proprio', 'state'\]"):
            demos.require_obs("image", purpose="pretraining")
    with pytest.raises(DemoFileError, match="noimg.hdf5: no obs/image"):
        FrameDataset.from_files([path])


@pytest.mark.parametrize("override, message", [("steps=0", "steps=0"), ("eval_every=0", "eval_every=0"),
                                               ("lr=0", "lr=0")])
def test_degenerate_training_budgets_are_refused(override, message):
    from policies.train import TrainConfig

    key, value = override.split("=")
    with pytest.raises(ValueError, match=f"policy.train: .*{message}"):
        TrainConfig(**{key: float(value) if key == "lr" else int(value)})


@pytest.mark.parametrize("kwargs, message", [({"budget_minutes": 0}, "budget_minutes must be > 0"),
                                             ({"budget_minutes": -1}, "budget_minutes must be > 0"),
                                             ({"max_steps": 0}, "max_steps must be >= 1")])
def test_degenerate_pretraining_budgets_are_refused(kwargs, message):
    from robrep.pretrain.loop import pretrain

    with pytest.raises(ValueError, match=message):
        pretrain(None, None, progress=False, **kwargs)


def test_a_non_finite_training_loss_writes_no_checkpoint(tmp_path, monkeypatch):
    """lr so large the loss overflows: train_policy raises and leaves no policy file that looks like a result."""
    from robrep.data.collect import collect_demos
    from policies.train import train_policy

    demos = tmp_path / "d.hdf5"
    collect_demos("reach", 6, demos, image_size=16, subset_sizes=(4,), subset_seeds=(0,), progress=False)
    from omegaconf import OmegaConf

    from robrep.config import compose

    cfg = OmegaConf.to_container(compose("train", ["policy=cnn", "policy.cnn.channels=4", "policy.cnn.augment=false",
                                                   "policy.train.steps=4", "policy.train.eval_every=2",
                                                   "policy.train.lr=1e30", "policy.train.grad_clip=null"]).policy,
                                 resolve=True)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train_policy(cfg, demos, 4, 0, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


def test_probe_refuses_non_positive_frame_counts(tmp_path, monkeypatch):
    from robrep.config import compose
    from robrep.probe.experiment import run_probe

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"frames_per_episode=-5 \(>= 0; 0 = every frame\)"):
        run_probe(compose("probe", ["frames_per_episode=-5", "dataset=never.hdf5"]))


def test_probe_names_an_unknown_readout_before_reading_data():
    from robrep.config import compose
    from robrep.probe.experiment import run_probe

    with pytest.raises(ValueError, match="bogus"):
        run_probe(compose("probe", ["readouts=[bogus]", "dataset=never.hdf5"]))


# --- tampering: no byte of a checkpoint can be edited unnoticed (weights by `hash`, the rest by `meta_hash`) ---

def _policy_payload() -> dict:
    import torch

    return {"state_dict": {"head.weight": torch.ones(4, 3)}, "policy_config": {"name": "mlp"},
            "shape_meta": {"action_dim": 4}, "encoder": None, "config": {"command": "robrep train n=10"},
            "dataset": {"path": "push.hdf5", "hash": "abc"}, "n": 10, "seed": 0}


def test_an_edited_policy_command_or_dataset_is_refused(tmp_path):
    import torch

    from policies.checkpoint import PolicyCheckpointError, read_policy_checkpoint, save_policy_checkpoint

    path = save_policy_checkpoint(_policy_payload(), tmp_path / "p.pt")
    assert read_policy_checkpoint(path)["config"]["command"] == "robrep train n=10"
    for key, value in (("config", {"command": "robrep train n=500"}), ("dataset", {"path": "other.hdf5", "hash": "abc"}),
                       ("n", 500)):
        data = torch.load(path, weights_only=True)
        data[key] = value
        torch.save(data, tmp_path / "edited.pt")
        with pytest.raises(PolicyCheckpointError, match=r"edited.pt: metadata hash .* does not match .* was edited"):
            read_policy_checkpoint(tmp_path / "edited.pt")
    data = torch.load(path, weights_only=True)  # rewritten as the old format, whose metadata was not hashed
    data["format"] = "robrep-policy/1"
    torch.save(data, tmp_path / "old.pt")
    with pytest.raises(PolicyCheckpointError, match="not a robrep policy checkpoint .*'robrep-policy/1'"):
        read_policy_checkpoint(tmp_path / "old.pt")


def test_edited_encoder_metadata_and_unknown_legacy_files_are_refused(tmp_path):
    import torch

    from robrep.encoders import load_encoder
    from robrep.encoders.checkpoint import LEGACY_FORMAT, read_checkpoint, save_checkpoint

    from omegaconf import OmegaConf

    from robrep.config import config_dir

    arch = OmegaConf.to_container(OmegaConf.load(f"{config_dir()}/encoder/mae.yaml").arch)
    encoder = load_encoder("mae", **arch)
    path = tmp_path / "enc.pt"
    save_checkpoint(encoder, path, {"command": "robrep pretrain encoder=mae", "steps": 100})
    assert read_checkpoint(path)["meta"]["steps"] == 100
    data = torch.load(path, weights_only=True)
    data["meta"]["steps"] = 100_000
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="edited.pt: metadata hash"):
        read_checkpoint(tmp_path / "edited.pt")
    data = torch.load(path, weights_only=True)
    data["format"] = LEGACY_FORMAT  # an old-format file that is not one of the committed ones
    torch.save(data, tmp_path / "legacy.pt")
    with pytest.raises(ValueError, match="older format 'robrep-encoder/1'.*not one of the known committed files"):
        read_checkpoint(tmp_path / "legacy.pt")


def test_the_committed_legacy_weights_still_load():
    from pathlib import Path

    from robrep.encoders.checkpoint import LEGACY_FORMAT, read_checkpoint

    path = Path(__file__).resolve().parent.parent / "weights" / "mae_quick.pt"
    assert read_checkpoint(path)["format"] == LEGACY_FORMAT
