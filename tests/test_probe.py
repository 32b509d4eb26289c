"""State probes: ridge/MLP recover what they should, readouts have the documented shapes, the CSV is tidy,
the gate decides as specified, and ``robrep probe`` runs end to end on a tiny real demo file."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from robrep.probe.experiment import COLUMNS
from robrep.probe.state_probe import read_probe_csv as read_csv
from robrep.data.collect import collect_demos
from robrep.data.demo_file import DemoFile
from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.encoders.vit import ViTEncoder
from robrep.commands.probe import run as run_probe
from robrep.config import compose
from robrep.probe.plot import format_table
from robrep.probe.state_probe import (READOUTS, FrameFeatures, even_frames, gate, mlp_probe, probe_rows, ridge_probe,
                                      state_targets, variable_r2)
from robrep.readouts import PROBE_READOUTS, READOUT_NAMES, SPATIAL_READOUTS, UnknownReadoutError

TINY_ARCH = ["encoder.arch.input_size=32", "encoder.arch.patch_size=8", "encoder.arch.embed_dim=32",
             "encoder.arch.depth=1", "encoder.arch.num_heads=2"]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    collect_demos("push", 14, path, image_size=32, subset_sizes=(5, 10), subset_seeds=(0,), progress=False)
    return path


def episodes(n_eps: int, per_ep: int) -> np.ndarray:
    return np.repeat(np.arange(n_eps), per_ep)


def test_ridge_recovers_linear_state_and_not_noise():
    rng = np.random.default_rng(0)
    groups = episodes(40, 25)
    x = rng.standard_normal((len(groups), 64))
    y = x @ rng.standard_normal((64, 3)) + 0.01 * rng.standard_normal((len(groups), 3))
    tr, te = groups < 30, groups >= 30
    targets = {"block_pos": slice(0, 3)}
    pred = ridge_probe(x[tr], y[tr], x[te], groups[tr])
    assert variable_r2(pred, y[te], y[tr], targets)["block_pos"] > 0.99
    noise = rng.standard_normal(x.shape)
    pred = ridge_probe(noise[tr], y[tr], noise[te], groups[tr])
    assert abs(variable_r2(pred, y[te], y[tr], targets)["block_pos"]) < 0.15


def test_mlp_fits_a_nonlinear_function():
    rng = np.random.default_rng(1)
    groups = episodes(50, 40)
    x = rng.uniform(-1, 1, (len(groups), 2)).astype(np.float32)
    y = np.stack([np.sin(3 * x[:, 0]), x[:, 1] ** 2 - x[:, 0] * x[:, 1]], 1)
    tr, te = groups < 40, groups >= 40
    targets = {"a_pos": slice(0, 1), "b_pos": slice(1, 2)}
    r2 = variable_r2(mlp_probe(x[tr], y[tr], x[te], groups[tr], seed=0), y[te], y[tr], targets)
    assert min(r2.values()) > 0.9, r2
    lin = variable_r2(ridge_probe(x[tr], y[tr], x[te], groups[tr]), y[te], y[tr], targets)
    assert lin["b_pos"] < 0.5  # the function really is non-linear


def test_variance_weighting_and_skipping():
    y = np.zeros((20, 4))
    y[:, 0] = np.arange(20)  # x varies, z (col 2) and the opening (col 3) are constant
    pred = y.copy()
    pred[:, 2] += 1e-5
    r2 = variable_r2(pred, y, y, {"block_pos": slice(0, 3), "gripper_opening": slice(3, 4)})
    assert r2["block_pos"] > 0.999 and math.isnan(r2["gripper_opening"])
    spec = [("gripper_pos", 3), ("gripper_opening", 1), ("block_quat", 4), ("block_pos", 3)]
    assert state_targets(spec) == {"gripper_pos": slice(0, 3), "gripper_opening": slice(3, 4), "block_pos": slice(8, 11)}
    split = state_targets(spec, split_height=True)
    assert split["block_pos_xy"] == slice(8, 10) and split["block_pos_z"] == slice(10, 11) and "block_quat" not in split
    assert list(even_frames(100, 5)) == [0, 25, 50, 74, 99] and len(even_frames(7, 40)) == 7


def test_readouts_and_rows_on_real_features(demos, tmp_path):
    torch.manual_seed(0)
    enc = ViTEncoder(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2).freeze()
    path = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
    with DemoFile(demos) as d, FeatureCache(path, enc) as cache:
        targets = state_targets(d.env_args["state_spec"])
        subsets = {5: d.demo_names("train_n5_seed0")}
        valid = d.demo_names("valid")
        states, tokens, glob = {}, {}, {}
        for name in [*subsets[5], *valid]:
            idx = even_frames(d.num_samples(name), 20)
            states[name] = d.episode(name)["obs"]["state"][idx]
            f = cache.features(name, dtype=torch.float16)
            tokens[name], glob[name] = f.tokens[idx], f.global_token[idx]
    feats = FrameFeatures(tokens, cache.grid, glob, num_keypoints=4)
    ep = valid[0]
    t = len(states[ep])
    shapes = {r: feats.features(r, subsets[5], [ep])[0].shape for r in feats.readouts}
    assert shapes == {"cls": (t, 32), "mean": (t, 32), "flat": (t, 16 * 32), "spatial_softmax": (t, 8)}
    kp = feats.features("spatial_softmax", subsets[5], [ep])[0]
    assert np.abs(kp).max() <= 1.0
    rows = probe_rows(feats, states, targets, subsets, valid, probes=["ridge"])
    assert len(rows) == 4 * len(targets)
    n_tr, n_te = sum(len(states[e]) for e in subsets[5]), sum(len(states[e]) for e in valid)
    assert all(r["n_train_frames"] == n_tr and r["n_test_frames"] == n_te for r in rows)


def row(enc: str, readout: str, var: str, r2: float, n: int = 50) -> dict:
    return dict(encoder=enc, weights_hash="h", readout=readout, probe="ridge", n_demos=n, variable=var, r2=r2,
                n_train_frames=1, n_test_frames=1, seconds=0.0)


def gate_rows(block: float = 0.95, baseline: float = 0.5) -> list[dict]:
    rows = []
    for var, good in [("gripper_pos", 0.97), ("block_pos", block), ("goal_pos", 0.93)]:
        rows += [row("mae", "flat", var, good), row("mae", "spatial_softmax", var, 0.6), row("mae", "mean", var, 0.99),
                 row("mae_random", "flat", var, baseline), row("mae_random", "spatial_softmax", var, 0.3),
                 row("pixels", "flat", var, 0.4), row("mae", "flat", var, 0.1, n=10)]
    rows += [row("mae", "flat", "gripper_opening", 0.2), row("mae", "flat", "button_pos", float("nan"))]
    return rows


def test_gate():
    passed, details = gate(gate_rows())
    assert passed and details["passed_readouts"] == ["flat"]
    assert details["variables"] == ["block_pos", "goal_pos", "gripper_pos"]  # opening not gated, NaN skipped
    passed, details = gate(gate_rows(block=0.85))
    assert not passed and "block_pos 0.850" in details["reason"]
    passed, _ = gate(gate_rows(block=0.95, baseline=0.96))  # the random encoder beats it on block_pos
    assert not passed
    passed, _ = gate(gate_rows(block=0.95, baseline=0.95))  # a tie is not strictly above
    assert not passed
    assert not gate(gate_rows(), n=100)[0]
    passed, details = gate(gate_rows(block=0.85))
    assert "spatial_softmax: " in details["reason"] and set(details["readouts"]) == set(SPATIAL_READOUTS)


def synthetic_features(global_tokens: bool = True) -> tuple[FrameFeatures, dict, dict, dict, list]:
    """Random tokens on a 4x4 grid (D = 8) for 6 episodes of 10 frames, states = 3-D positions."""
    gen = torch.Generator().manual_seed(0)
    eps = [f"demo_{i}" for i in range(6)]
    tokens = {e: torch.randn(10, 16, 8, generator=gen) for e in eps}
    glob = {e: torch.randn(10, 8, generator=gen) for e in eps} if global_tokens else None
    states = {e: np.random.default_rng(i).standard_normal((10, 3)) for i, e in enumerate(eps)}
    feats = FrameFeatures(tokens, (4, 4), glob, num_keypoints=2)
    return feats, states, {"block_pos": slice(0, 3)}, {4: eps[:4]}, eps[4:]


def test_probe_readouts_are_the_shared_vocabulary():
    assert READOUTS == PROBE_READOUTS and set(READOUTS) <= set(READOUT_NAMES)
    assert set(SPATIAL_READOUTS) <= set(READOUTS)
    assert set(compose("probe").readouts) <= set(PROBE_READOUTS)
    feats, states, targets, subsets, valid = synthetic_features()
    assert feats.readouts == PROBE_READOUTS
    assert synthetic_features(global_tokens=False)[0].readouts == ("mean", "flat", "spatial_softmax")
    rows = probe_rows(feats, states, targets, subsets, valid, probes=["ridge"])
    assert [r["readout"] for r in rows] == list(PROBE_READOUTS)
    table = format_table([{**r, "encoder": "enc"} for r in rows], 4)
    assert [line.split()[0] for line in table.splitlines()[1:]] == [f"enc/{r}" for r in PROBE_READOUTS]


@pytest.mark.parametrize("name", ["global", "keypoints", "cls_token"])
def test_unknown_probe_readout_names_the_vocabulary(name):
    feats, states, targets, subsets, valid = synthetic_features()
    vocabulary = "cls, mean, flat, spatial_softmax, attention"
    with pytest.raises(UnknownReadoutError, match=f"unknown readout '{name}'.*{vocabulary}"):
        probe_rows(feats, states, targets, subsets, valid, readouts=["mean", name], probes=["ridge"])
    with pytest.raises(UnknownReadoutError, match=vocabulary):
        feats.features(name, subsets[4], valid)
    with pytest.raises(UnknownReadoutError, match=vocabulary):  # before any data or encoder is loaded
        run_probe(compose("probe", [f"readouts=[cls,{name}]", "dataset=/nonexistent.hdf5"]))
    with pytest.raises(ValueError, match="'attention' is not available for the state probe"):  # trainable only
        probe_rows(feats, states, targets, subsets, valid, readouts=["attention"], probes=["ridge"])


def test_cli_probe_writes_tidy_csv(demos, tmp_path):
    out = tmp_path / "res" / "probe.csv"
    result = subprocess.run([sys.executable, "-m", "robrep.cli", "probe", "encoder=mae", f"dataset={demos}",
                             "sizes=[5,10,500]", "frames_per_episode=20", f"cache_dir={tmp_path}/cache", f"out={out}",
                             "mlp.max_epochs=20", "progress=false", *TINY_ARCH],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.exists() and out.with_suffix(".png").exists()
    assert "train_n500_seed0" in result.stdout and "gate (N=50" in result.stdout
    first = out.read_text().splitlines()[0]
    assert first.startswith("# robrep probe encoder=mae") and "sizes=[5,10,500]" in first
    rows = read_csv(out)
    assert tuple(rows[0]) == COLUMNS
    with DemoFile(demos) as d:
        n_vars = len(state_targets(d.env_args["state_spec"], split_height=True))  # the CLI default
        n_valid_frames = d.num_samples(d.demo_names("valid")[0])
    # mae and mae_random: 4 readouts (cls, mean, flat, spatial_softmax); pixels: flat only; 2 probes, 2 sizes
    assert len(rows) == (4 + 4 + 1) * 2 * 2 * n_vars
    keys = {(r["encoder"], r["readout"], r["probe"], r["n_demos"], r["variable"]) for r in rows}
    assert len(keys) == len(rows)
    assert {r["encoder"] for r in rows} == {"mae", "mae_random", "pixels"}
    assert {r["readout"] for r in rows} == set(PROBE_READOUTS)
    assert {r["n_demos"] for r in rows} == {5, 10}
    assert all(r["r2"] <= 1.0 or math.isnan(r["r2"]) for r in rows)
    assert all(int(r["n_test_frames"]) == min(20, n_valid_frames) for r in rows)  # one valid demo
