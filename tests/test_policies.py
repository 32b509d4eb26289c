"""BC policies: heads learn, normalisation and checkpoints round-trip, the policy acts with the documented shapes,
refuses a changed encoder, chunking/ensembling and augmentation behave, fine-tuning trains only the encoder's last
blocks and round-trips, and ``robrep train`` runs end to end on a tiny real demo file (push, 32 px) with a tiny MAE
encoder."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from policies import EncoderSpec, Policy, PolicyCheckpointError, load_policy, train_policy
from policies.checkpoint import read_policy_checkpoint
from policies.chunking import TemporalEnsembler
from policies.cnn import ConvTrunk, RandomShift
from policies.datasets import load_demo_tensors, window_indices
from policies.finetune import FinetuneTrunk, tail_modules, trainable_tail
from policies.model import build_model
from policies.normalization import Normalizer
from policies.train import TrainConfig, evaluate_mse, fit, param_groups, resume_state_path
from policies.trunks import GRID_READOUTS, drop_tokens
from robrep.cli import main
from robrep.config import config_dir
from robrep.data.collect import collect_demos
from robrep.data.demo_file import DemoFile, DemoFileError
from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.encoders import SpatialFeatures, load_encoder, save_checkpoint
from robrep.probe.state_probe import FrameFeatures
from robrep.readouts import (POLICY_READOUTS, READOUT_NAMES, READOUT_VOCABULARY, READOUTS, SPATIAL_READOUTS,
                             FlatReadout, UnknownReadoutError, make_readout)

ARCH = dict(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
TINY_ARCH = [f"encoder.arch.{k}={v}" for k, v in ARCH.items()]


def policy_cfg(name: str = "mlp", **overrides) -> dict:
    """configs/policy/<name>.yaml (with its defaults) resolved, readout 'mean', plus ``overrides``."""
    base = OmegaConf.load(f"{config_dir()}/policy/mlp.yaml")
    if name != "mlp":
        own = OmegaConf.load(f"{config_dir()}/policy/{name}.yaml")
        own.pop("defaults")
        base = OmegaConf.merge(base, own)
    base.readout = "mean" if name != "cnn" else base.readout
    return OmegaConf.to_container(OmegaConf.merge(base, overrides), resolve=True)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """8 push demos at 32 px: train = demo_0..6 (subsets N=2, 5 for seed 0), valid = demo_7."""
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    collect_demos("push", 8, path, image_size=32, subset_sizes=(2, 5), subset_seeds=(0,), progress=False)
    return path


def write_mae_checkpoint(tmp_path_factory, name: str, arch: dict):
    """A seeded random-init MAE of ``arch`` saved as a robrep encoder checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / name
    save_checkpoint(load_encoder("mae", **arch), path)
    return path


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    return write_mae_checkpoint(tmp_path_factory, "mae_tiny.pt", ARCH)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_data(demos, encoder_ckpt, cache_dir):
    """Cached features of the N=2 subset (~60 frames; no frame stack, chunk 1) and the feature shapes."""
    enc = load_encoder("mae", weights=str(encoder_ckpt), **ARCH)
    path = compute_features(enc, demos, cache_dir, encoder_name="mae_tiny", progress=False)
    with DemoFile(demos) as d, FeatureCache(path, enc) as cache:
        data = load_demo_tensors(d, d.subset(2, 0), cache=cache)
    meta = {"action_dim": 4, "proprio_dim": 4, "feature_dim": 32, "grid": [4, 4], "has_global_token": True}
    return data, meta


@pytest.fixture(scope="module")
def trained(demos, encoder_ckpt, cache_dir, tmp_path_factory):
    """An MLP policy trained briefly through the public API: (summary, checkpoint path)."""
    out = tmp_path_factory.mktemp("policy") / "mlp.pt"
    cfg = policy_cfg(train={"steps": 60, "eval_every": 20})
    summary = train_policy(cfg, demos, 5, 0, out, EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    return summary, out


def demo_obs(demos, name="demo_7", frames=slice(0, 3)):
    with DemoFile(demos) as d:
        ep = d.episode(name)
    return {"image": ep["obs"]["image"][frames], "proprio": ep["obs"]["proprio"][frames]}


def fit_quick(model, data, steps, lr=3e-3, valid=None):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, batch_size=32, lr=lr, weight_decay=0.0, eval_every=steps // 4, patience=100)
    return fit(model, data, valid, cfg, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------- pieces
def test_normalizer_round_trip():
    x = torch.randn(50, 4) * torch.tensor([1.0, 0.1, 5.0, 0.0]) + torch.tensor([0.0, 1.0, -2.0, 0.3])
    norm = Normalizer.fit(x, min_std=1e-2)
    z = norm.normalize(x)
    torch.testing.assert_close(norm.unnormalize(z), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert norm.std[3] == pytest.approx(1e-2) and torch.all(z[:, 3].abs() < 1e-4)  # constant dim: floored std
    again = Normalizer(4)
    again.load_state_dict(norm.state_dict())
    torch.testing.assert_close(again.normalize(x), z)


def test_window_indices_clamp_at_episode_edges():
    stack, chunk = window_indices([3, 2], frame_stack=2, chunk=3)
    assert stack.tolist() == [[0, 0], [0, 1], [1, 2], [3, 3], [3, 4]]
    assert chunk.tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]


def test_token_dropout():
    tokens = torch.randn(3, 16, 8)
    kept = drop_tokens(tokens, 0.5, keep_grid=False)
    assert kept.shape == (3, 8, 8)
    assert all(any(torch.equal(row, t) for t in tokens[i]) for i in range(3) for row in kept[i])
    zeroed = drop_tokens(tokens, 0.25, keep_grid=True)
    assert zeroed.shape == tokens.shape
    assert ((zeroed.abs().sum(-1) == 0).sum(1) == 4).all()


def test_temporal_ensembling():
    ens = TemporalEnsembler(chunk=1, action_dim=4)
    ens.reset(2)
    chunks = torch.randn(2, 1, 4)
    np.testing.assert_allclose(ens(chunks), chunks[:, 0].numpy())  # k = 1: the current prediction
    ens = TemporalEnsembler(chunk=3, action_dim=1, decay=0.5)
    ens.reset(2)
    c0, c1 = np.array([[[1.0], [2.0], [3.0]]] * 2), torch.tensor([[[10.0], [20.0], [30.0]]] * 2)
    np.testing.assert_allclose(ens(c0), [[1.0], [1.0]])  # arrays and tensors alike
    ens.reset_env(1)
    out = ens(c1)  # env 0: predictions for now = 2 (older, weight 1) and 10 (weight e^-0.5); env 1: fresh
    w = math.exp(-0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[(2.0 + w * 10.0) / (1 + w)], [10.0]], rtol=1e-6)


def test_random_shift_keeps_shape_and_shifts():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 20, 20)
    aug = RandomShift(pad=4).train()
    y = aug(x)
    assert y.shape == x.shape
    assert not torch.equal(y, x)
    padded = torch.nn.functional.pad(x, (4,) * 4, mode="replicate")
    for i in range(len(x)):  # every output is an integer translation (a crop of the padded image)
        assert any(torch.equal(y[i], padded[i, :, dy:dy + 20, dx:dx + 20]) for dy in range(9) for dx in range(9))
    assert torch.equal(aug.eval()(x), x)
    assert torch.equal(RandomShift(pad=0).train()(x), x)


def test_random_shift_draws_the_crops_of_the_index_gather():
    """The window slices give exactly the crops of the earlier (B, H, W) index gather for the same draws, so
    policies trained before and after the change are the same."""
    x = torch.rand(8, 3, 12, 10)
    torch.manual_seed(3)
    y = RandomShift(pad=2).train()(x)
    torch.manual_seed(3)
    dy, dx = torch.randint(0, 5, (8,)), torch.randint(0, 5, (8,))
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="replicate").permute(0, 2, 3, 1)
    rows = (dy[:, None] + torch.arange(12))[:, :, None]
    cols = (dx[:, None] + torch.arange(10))[:, None, :]
    assert torch.equal(y, padded[torch.arange(8)[:, None, None], rows, cols].permute(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------- readouts
FEATURE_META = {"action_dim": 4, "proprio_dim": 4, "feature_dim": 8, "grid": [6, 6], "has_global_token": True}


def test_policy_readouts_are_the_shared_vocabulary():
    assert READOUT_NAMES == tuple(READOUT_VOCABULARY) and all(READOUT_VOCABULARY.values())
    assert tuple(READOUTS) == POLICY_READOUTS and set(POLICY_READOUTS) <= set(READOUT_NAMES)
    assert GRID_READOUTS == set(SPATIAL_READOUTS)
    root = Path(config_dir())
    named = {OmegaConf.load(f).readout for f in root.glob("encoder/*.yaml")}
    arms = [OmegaConf.load(f).get("policy", {}) for f in root.glob("arm/*.yaml")]
    named |= {arm.readout for arm in arms if "readout" in arm}
    assert named and named <= set(POLICY_READOUTS), named
    for name in POLICY_READOUTS:  # every one builds a feature policy
        model = build_model(policy_cfg(readout=name), FEATURE_META)
        frames = {"tokens": torch.randn(3, 36, 8), "global_token": torch.randn(3, 8)}
        assert model.trunk(frames).shape == (3, model.trunk.output_dim)


@pytest.mark.parametrize("name", ["global", "keypoints", "spatialsoftmax"])
def test_unknown_policy_readout_names_the_vocabulary(name):
    vocabulary = "cls, mean, flat, spatial_softmax, attention"
    with pytest.raises(UnknownReadoutError, match=f"unknown readout '{name}'.*{vocabulary}"):
        build_model(policy_cfg(readout=name), FEATURE_META)
    with pytest.raises(UnknownReadoutError, match=vocabulary):
        make_readout(name, 8, (6, 6))


def test_flat_readout_shape_and_pooling():
    tokens = torch.randn(2, 36, 8)
    head = FlatReadout(8, (6, 6), cells=3)
    out = head(SpatialFeatures(tokens, (6, 6)))
    assert out.shape == (2, 3 * 3 * 8) == (2, head.output_dim) and not list(head.parameters())
    blocks = tokens.reshape(2, 3, 2, 3, 2, 8).mean(dim=(2, 4))  # (B, 3, 3, D): 2x2 cells, row-major
    torch.testing.assert_close(out, blocks.reshape(2, -1))  # cell-major: D contiguous per cell
    small = FlatReadout(8, (2, 3), cells=6)  # a grid coarser than `cells` is flattened as is
    assert small.output_dim == 2 * 3 * 8
    torch.testing.assert_close(small(SpatialFeatures(tokens[:, :6], (2, 3))), tokens[:, :6].reshape(2, -1))
    default = make_readout("flat", 8, (12, 12))
    assert default.output_dim == 6 * 6 * 8  # cells = 6, as the probe's flat_cells
    # the probe's parameter-free `flat` is the same readout
    probe = FrameFeatures({"e": tokens}, (6, 6), flat_cells=3).features("flat", ["e"], ["e"])[0]
    np.testing.assert_allclose(probe, out.numpy(), rtol=1e-6, atol=1e-6)


def test_flat_readout_policy_keeps_the_grid_under_token_dropout():
    cfg = policy_cfg(readout="flat", readout_kwargs={"cells": 2}, token_dropout=0.5)
    model = build_model(cfg, FEATURE_META)
    assert model.trunk.output_dim == 2 * 2 * 8
    out = model.trunk.train()({"tokens": torch.randn(4, 36, 8)})
    assert out.shape == (4, 32)


# ---------------------------------------------------------------------------------------------- heads
def test_mlp_head_overfits_a_handful_of_actions(tiny_data):
    data, meta = tiny_data
    cfg = policy_cfg(readout="attention", head_kwargs={"hidden": 128, "layers": 2, "dropout": 0.0})
    model = build_model(cfg, meta)
    model.set_statistics(data.proprio, data.actions, 1e-2)
    before = evaluate_mse(model, data)
    result = fit_quick(model, data, steps=300)
    assert result.history[-1]["train_loss"] < 0.1 * result.history[0]["train_loss"]
    assert result.train_mse < 0.05 * before and result.train_mse < 0.01, (before, result.train_mse)


def test_flat_readout_policy_overfits_a_handful_of_actions(tiny_data):
    data, meta = tiny_data
    cfg = policy_cfg(readout="flat", readout_kwargs={"cells": 2},
                     head_kwargs={"hidden": 128, "layers": 2, "dropout": 0.0})
    model = build_model(cfg, meta)
    assert model.trunk.output_dim == 2 * 2 * meta["feature_dim"]
    model.set_statistics(data.proprio, data.actions, 1e-2)
    before = evaluate_mse(model, data)
    result = fit_quick(model, data, steps=300)
    assert result.train_mse < 0.05 * before, (before, result.train_mse)


def test_gmm_nll_decreases_and_acts_deterministically(tiny_data):
    data, meta = tiny_data
    model = build_model(policy_cfg("gmm"), meta)
    assert model.head.modes == 5
    model.set_statistics(data.proprio, data.actions, 1e-2)
    result = fit_quick(model, data, steps=200)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 1.0, losses
    frames, proprio, _ = data.batch(torch.arange(8))
    stack = model.stacked_vectors(frames, proprio)
    first, second = model.predict(stack), model.predict(stack)
    assert torch.equal(first, second) and first.shape == (8, 1, 4)
    logits, means, _ = model.head.params(stack.flatten(1))
    torch.testing.assert_close(model.head.predict(stack.flatten(1)), means[torch.arange(8), logits.argmax(1)])


# ---------------------------------------------------------------------------------------------- policy + checkpoint
def test_checkpoint_round_trip_gives_identical_actions(trained, demos, tiny_data):
    summary, path = trained
    ckpt = read_policy_checkpoint(path)
    assert ckpt["task"] == "push" and ckpt["env_kwargs"]["image_size"] == 32 and ckpt["n"] == 5 and ckpt["seed"] == 0
    assert ckpt["encoder"]["identity"]["family"] == "mae" and ckpt["dataset"]["filter_key"] == "train_n5_seed0"
    assert set(ckpt["normalization"]) == {"action", "proprio"} and ckpt["train"]["seconds"] > 0
    assert math.isfinite(ckpt["train"]["train_loss"]) and math.isfinite(ckpt["train"]["valid_mse"])
    obs = demo_obs(demos)
    a, b = load_policy(path), load_policy(path)
    assert isinstance(a, Policy) and a.task == "push" and a.env_kwargs["image_size"] == 32
    assert not a.model.training and not a.encoder.training
    assert all(not p.requires_grad for p in a.encoder.parameters())
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    # acting from the live encoder matches the model applied to the cached features it was trained on
    with DemoFile(demos) as d, FeatureCache(ckpt["encoder"]["cache"]) as cache:
        data = load_demo_tensors(d, ["demo_7"], cache=cache)
    frames, proprio, _ = data.batch(torch.arange(3))
    expected = a.model.predict(a.model.stacked_vectors(frames, proprio))[:, 0]
    a.reset(3)
    np.testing.assert_allclose(a.act(obs), expected.numpy(), atol=1e-3)


def test_batched_and_single_act_shapes(trained, demos):
    policy = load_policy(trained[1])
    obs = demo_obs(demos)
    policy.reset(3)
    batched = policy.act(obs)
    assert batched.shape == (3, 4) and batched.dtype == np.float32 and np.abs(batched).max() <= 1.0
    policy.reset()
    single = policy.act({"image": obs["image"][0], "proprio": obs["proprio"][0], "state": np.zeros(10)})
    assert single.shape == (4,) and single.dtype == np.float32
    np.testing.assert_allclose(single, batched[0], atol=1e-5)
    with pytest.raises(ValueError, match="tracks 1 envs"):
        policy.act(obs)


def test_act_names_missing_or_non_finite_inputs(trained, demos):
    policy = load_policy(trained[1])
    obs = demo_obs(demos)
    policy.reset(3)
    with pytest.raises(KeyError, match=r"needs obs\['proprio'\].*got keys \['image'"):
        policy.act({"image": obs["image"]})
    bad = {**obs, "proprio": obs["proprio"].copy()}
    bad["proprio"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"not finite for env\(s\) \[1\]"):
        policy.act(bad)


def test_refuses_a_different_encoder_weights_hash(demos, encoder_ckpt, cache_dir, tmp_path):
    weights = tmp_path / "enc.pt"
    weights.write_bytes(encoder_ckpt.read_bytes())
    out = tmp_path / "p.pt"
    train_policy(policy_cfg(train={"steps": 2, "eval_every": 1}), demos, 2, 0, out,
                 EncoderSpec("mae", str(weights), ARCH), cache_dir=cache_dir)
    load_policy(out)
    torch.manual_seed(1)
    save_checkpoint(load_encoder("mae", **ARCH), weights)  # other weights at the recorded path
    with pytest.raises(PolicyCheckpointError, match="encoder weights changed since training"):
        load_policy(out)


def test_training_is_seeded_and_random_init_encoders_reload(demos, cache_dir, tmp_path):
    spec = EncoderSpec("mae", None, ARCH, init_seed=3)
    assert spec.load().weights_hash() == spec.load().weights_hash() != EncoderSpec("mae", None, ARCH, 4).load().weights_hash()
    cfg = policy_cfg(train={"steps": 5, "eval_every": 5})
    first, second = (read_policy_checkpoint(train_policy(cfg, demos, 2, 0, tmp_path / f"p{i}.pt", spec,
                                                         cache_dir=cache_dir)["path"]) for i in range(2))
    assert first["hash"] == second["hash"]  # same seed: identical weights
    load_policy(tmp_path / "p0.pt")  # the random-init encoder is rebuilt with the same weights


def test_too_many_demos_is_a_clear_error(demos, encoder_ckpt, cache_dir, tmp_path):
    with pytest.raises(DemoFileError, match="N=50 demos requested but only 7 train demos"):
        train_policy(policy_cfg(), demos, 50, 0, tmp_path / "p.pt", EncoderSpec("mae", str(encoder_ckpt), ARCH),
                     cache_dir=cache_dir)
    assert not (tmp_path / "p.pt").exists()


def test_frame_stack_and_chunking_policy(demos, encoder_ckpt, cache_dir, tmp_path):
    cfg = policy_cfg("gmm", frame_stack=2, chunk=3, token_dropout=0.5, readout="attention",
                     train={"steps": 4, "eval_every": 2})
    train_policy(cfg, demos, 2, 0, tmp_path / "p.pt", EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    policy = load_policy(tmp_path / "p.pt")
    assert policy.model.frame_stack == 2 and policy.model.chunk == 3
    obs = demo_obs(demos, frames=slice(0, 2))
    policy.reset(2)
    first = policy.act(obs)
    assert first.shape == (2, 4)
    stack = policy._stack.clone()
    torch.testing.assert_close(stack[:, 0], stack[:, 1])  # after a reset the first frame fills the stack
    policy.act(obs)
    policy.reset_env(1)
    policy.act(obs)
    assert policy.ensembler.count.tolist() == [3, 1]


# ---------------------------------------------------------------------------------------------- chunk execution
TINY_META = {"action_dim": 4, "proprio_dim": 4, "feature_dim": 32, "grid": [4, 4], "has_global_token": True}


@pytest.fixture(scope="module")
def chunk3(demos, encoder_ckpt, cache_dir, tmp_path_factory):
    """A chunk-3 MLP policy trained briefly with ``chunk_execution: open_loop``: (checkpoint path, config)."""
    out = tmp_path_factory.mktemp("chunk") / "open_loop.pt"
    cfg = policy_cfg(chunk=3, chunk_execution="open_loop", train={"steps": 20, "eval_every": 10})
    train_policy(cfg, demos, 2, 0, out, EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    return out, cfg


def recording(policy):
    """Wrap ``policy.encoder.encode_frames``: returns the list it appends every call's images to."""
    calls, encode = [], policy.encoder.encode_frames
    policy.encoder.encode_frames = lambda images, texts=None: calls.append(images.copy()) or encode(images, texts)
    return calls


def chunks_of(policy, images, proprio):
    """The chunks ``(B, k, A)`` the policy's network predicts for one frame per env (independent of ``act``)."""
    with torch.no_grad():
        vec = policy.model.frame_vectors(policy.frame_inputs(images), torch.from_numpy(proprio))
        return policy.model.predict(vec[:, None]).numpy()


def two_env_steps(demos, steps):
    """``steps`` observations of 2 envs (demo_7 and demo_6 from their first frame on)."""
    a, b = demo_obs(demos, "demo_7", slice(0, steps)), demo_obs(demos, "demo_6", slice(0, steps))
    return [{"image": np.stack([a["image"][t], b["image"][t]]), "proprio": np.stack([a["proprio"][t], b["proprio"][t]])}
            for t in range(steps)]


def test_open_loop_encodes_each_env_once_per_chunk_and_executes_the_chunk(chunk3, demos):
    path, _ = chunk3
    policy = load_policy(path)
    assert policy.chunk_execution == "open_loop" and policy.model.chunk == 3
    calls = recording(policy)
    steps = two_env_steps(demos, 6)
    assert not np.array_equal(steps[0]["image"], steps[3]["image"])
    policy.reset(2)
    acted = [policy.act(o) for o in steps]
    assert len(calls) == 2 and policy.encoded_frames == 4  # calls 0 and 3 only, both envs each time
    np.testing.assert_array_equal(calls[0], steps[0]["image"])
    np.testing.assert_array_equal(calls[1], steps[3]["image"])
    first, second = (chunks_of(policy, steps[t]["image"], steps[t]["proprio"]) for t in (0, 3))
    assert np.abs(first[:, 0] - first[:, 1]).max() > 0  # the chunk's actions differ: the order is checked
    for t, out in enumerate(acted):
        assert out.shape == (2, 4) and out.dtype == np.float32 and np.abs(out).max() <= 1.0
        np.testing.assert_array_equal(out, (first if t < 3 else second)[:, t % 3])
    # un-batched input: one frame encoded, then two steps from the queue
    policy.reset()
    single = [policy.act({"image": o["image"][0], "proprio": o["proprio"][0]}) for o in steps[:3]]
    assert policy.encoded_frames == 5 and all(a.shape == (4,) for a in single)
    np.testing.assert_allclose(np.stack(single), first[0], atol=1e-5)


def test_open_loop_reset_env_re_encodes_that_env_only(chunk3, demos):
    policy = load_policy(chunk3[0])
    calls = recording(policy)
    steps = two_env_steps(demos, 5)
    policy.reset(2)
    out0 = policy.act(steps[0])
    policy.reset_env(1)
    acted = [policy.act(o) for o in steps[1:5]]
    # encoder calls: both envs at step 0, env 1 alone at step 1 (reset), env 0 alone at step 3 (its chunk used up),
    # env 1 alone at step 4 (its new chunk used up)
    assert [len(c) for c in calls] == [2, 1, 1, 1] and policy.encoded_frames == 5
    for call, (t, env) in zip(calls[1:], [(1, 1), (3, 0), (4, 1)]):
        np.testing.assert_array_equal(call[0], steps[t]["image"][env])
    env0 = chunks_of(policy, steps[0]["image"], steps[0]["proprio"])[0]
    env0_next = chunks_of(policy, steps[3]["image"][:1], steps[3]["proprio"][:1])[0]
    env1 = chunks_of(policy, steps[1]["image"][1:], steps[1]["proprio"][1:])[0]
    np.testing.assert_array_equal(out0[0], env0[0])
    np.testing.assert_array_equal(np.stack([a[0] for a in acted]), np.stack([env0[1], env0[2], env0_next[0], env0_next[1]]))
    np.testing.assert_array_equal(np.stack([a[1] for a in acted]), np.stack([env1[0], env1[1], env1[2],
                                  chunks_of(policy, steps[4]["image"][1:], steps[4]["proprio"][1:])[0][0]]))
    # non-finite proprio is refused for an env that would not be encoded this step too
    bad = {**steps[0], "proprio": steps[0]["proprio"].copy()}
    bad["proprio"][0, 1] = np.inf
    with pytest.raises(ValueError, match=r"not finite for env\(s\) \[0\]"):
        policy.act(bad)


def test_open_loop_evaluation_skips_only_unread_images(chunk3, monkeypatch):
    """Under open-loop chunks, evaluate renders an env's image only when the next act encodes it: the same
    episodes (success, length) and the same encoded frames as rendering every step, with fewer renders."""
    from envs.tabletop import TabletopEnv
    from robrep.eval.rollouts import evaluate

    renders = []
    render = TabletopEnv.render_camera
    monkeypatch.setattr(TabletopEnv, "render_camera", lambda self, cam: renders.append(cam) or render(self, cam))
    runs = {}
    for skip in (False, True):
        policy = load_policy(chunk3[0])
        calls = recording(policy)
        renders.clear()
        # 4 episodes on 2 envs end together: no env idles (an idle env's padding image is stale when skipped)
        result = evaluate(policy, episodes=4, num_envs=2, max_steps=8, progress=False, skip_unread_images=skip)
        runs[skip] = (result, [c.copy() for c in calls], len(renders), policy.encoded_frames)
    (full, full_calls, full_renders, full_encoded), (lazy, lazy_calls, lazy_renders, lazy_encoded) = runs[False], runs[True]
    assert [(r.seed, r.success, r.length) for r in lazy.records] == [(r.seed, r.success, r.length) for r in full.records]
    assert lazy_encoded == full_encoded and len(lazy_calls) == len(full_calls)
    for a, b in zip(lazy_calls, full_calls):
        np.testing.assert_array_equal(a, b)  # the encoder saw the very same pixels
    # 4 episodes of 8 steps: 4 resets + 32 steps render when every step renders; with chunk 3 only the steps
    # before an encode render (steps 3 and 6 of each episode), plus the resets
    assert [r.length for r in full.records] == [8] * 4
    assert full_renders == 4 + 32 and lazy_renders == 4 + 4 * 2


def test_ensemble_execution_is_the_default_and_unchanged(demos, encoder_ckpt, cache_dir, tmp_path):
    cfg = policy_cfg(chunk=3, train={"steps": 20, "eval_every": 10})
    assert cfg.pop("chunk_execution") == "ensemble"  # a config from before the option: no key
    train_policy(cfg, demos, 2, 0, tmp_path / "p.pt", EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    old = load_policy(tmp_path / "p.pt")
    assert "chunk_execution" not in old.meta["policy_config"] and old.chunk_execution == "ensemble"
    keyed = Policy(old.model, old.encoder, {**old.meta, "policy_config": {**old.meta["policy_config"], "chunk_execution": "ensemble"}})
    override = load_policy(tmp_path / "p.pt", chunk_execution="ensemble")
    steps = two_env_steps(demos, 5)
    runs = []
    for policy in (old, keyed, override):
        policy.reset(2)
        acted = []
        for t, o in enumerate(steps):
            acted.append(policy.act(o))
            if t == 1:
                policy.reset_env(1)
        runs.append(np.stack(acted))
        assert policy.encoded_frames == 10  # every env, every step
    np.testing.assert_array_equal(runs[1], runs[0])
    np.testing.assert_array_equal(runs[2], runs[0])
    # the same network executed open loop: a checkpoint's setting can be overridden at load time
    loop = load_policy(tmp_path / "p.pt", chunk_execution="open_loop")
    assert loop.meta["policy_config"]["chunk_execution"] == "open_loop"
    loop.reset(2)
    [loop.act(o) for o in steps]
    assert loop.encoded_frames == 4


def test_chunk_execution_is_validated(demos, encoder_ckpt, cache_dir, tmp_path, chunk3):
    with pytest.raises(ValueError, match="unknown chunk_execution 'closed_loop'"):
        build_model(policy_cfg(chunk_execution="closed_loop"), TINY_META)
    with pytest.raises(ValueError, match="open_loop' needs frame_stack 1, got frame_stack 2"):
        build_model(policy_cfg(chunk=4, frame_stack=2, chunk_execution="open_loop"), TINY_META)
    with pytest.raises(ValueError, match="unknown chunk_execution 'closed_loop'"):
        train_policy(policy_cfg(chunk_execution="closed_loop"), demos, 2, 0, tmp_path / "p.pt",
                     EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    assert not (tmp_path / "p.pt").exists()
    with pytest.raises(ValueError, match="unknown chunk_execution 'bogus'"):
        load_policy(chunk3[0], chunk_execution="bogus")
    stacked = build_model(policy_cfg(frame_stack=2), TINY_META)
    with pytest.raises(ValueError, match="needs frame_stack 1"):
        Policy(stacked, None, {"policy_config": policy_cfg(frame_stack=2)}, chunk_execution="open_loop")


# ---------------------------------------------------------------------------------------------- CNN baseline
def test_small_cnn_trains_and_acts(demos, tmp_path):
    cfg = policy_cfg("cnn", train={"steps": 6, "eval_every": 3, "evals": None, "batch_size": 16})
    summary = train_policy(cfg, demos, 2, 0, tmp_path / "cnn.pt")
    hist = summary["train"]["history"]
    assert len(hist) == 2 and all(math.isfinite(h["valid_mse"]) for h in hist)
    ckpt = read_policy_checkpoint(tmp_path / "cnn.pt")
    assert ckpt["encoder"] is None and ckpt["shape_meta"]["image_size"] == [32, 32]
    assert any(k.startswith("trunk.backbone") for k in ckpt["state_dict"])
    policy = load_policy(tmp_path / "cnn.pt")
    assert policy.encoder is None
    obs = demo_obs(demos)
    out = policy.act(obs)
    assert out.shape == (3, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, load_policy(tmp_path / "cnn.pt").act(obs))  # eval: no augmentation


def test_a_killed_training_run_resumes_to_the_weights_of_an_uninterrupted_one(demos, tmp_path, monkeypatch):
    """The CNN (random shifts from torch's global RNG, cosine schedule) killed at its 4th validation resumes from the
    state saved at the 3rd and ends bit-identical to a run never stopped; the state file is gone afterwards."""
    import policies.train as train_module

    cfg = policy_cfg("cnn", train={"steps": 12, "eval_every": 2, "evals": None, "batch_size": 8, "patience": 100,
                                   "schedule": "cosine"}, cnn={"channels": 8})
    reference = read_policy_checkpoint(train_policy(cfg, demos, 2, 0, tmp_path / "ref.pt")["path"])
    out = tmp_path / "cnn.pt"
    calls = {"n": 0}

    def killed_at_the_fourth(name):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "failpoint", killed_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        train_policy(cfg, demos, 2, 0, out, resume_every_s=0)
    state = resume_state_path(out)
    assert not out.exists() and torch.load(state, weights_only=True)["step"] == 6
    monkeypatch.undo()
    resumed = read_policy_checkpoint(train_policy(cfg, demos, 2, 0, out, resume_every_s=0)["path"])
    assert not state.exists()
    assert resumed["train"]["history"] == reference["train"]["history"]
    for key, value in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # a state made for other settings (here another seed's subset) is not used: that run starts from step 0
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(train_module, "failpoint", killed_at_the_fourth)
        calls["n"] = 0
        train_policy(cfg, demos, 2, 0, out.with_name("other.pt"), resume_every_s=0)
    monkeypatch.undo()
    changed = {**cfg, "train": {**cfg["train"], "lr": cfg["train"]["lr"] * 2}}
    resume_state_path(out.with_name("other.pt")).rename(resume_state_path(out.with_name("lr2.pt")))
    lr2 = read_policy_checkpoint(train_policy(changed, demos, 2, 0, out.with_name("lr2.pt"), resume_every_s=0)["path"])
    fresh = read_policy_checkpoint(train_policy(changed, demos, 2, 0, tmp_path / "fresh.pt")["path"])
    assert lr2["train"]["history"] == fresh["train"]["history"]


def test_bfloat16_precision_round_trips_through_the_checkpoint(demos, encoder_ckpt, cache_dir, tmp_path):
    """Frozen-encoder precision lives in the encoder spec (cache + evaluation); trunk precision in train:."""
    spec = EncoderSpec("mae", str(encoder_ckpt), ARCH, precision="bf16")
    assert spec.precision == "bfloat16" and spec.load().precision == "bfloat16"
    train_policy(policy_cfg(train={"steps": 20, "eval_every": 10}), demos, 2, 0, tmp_path / "p.pt", spec,
                 cache_dir=cache_dir)
    policy = load_policy(tmp_path / "p.pt")
    assert policy.encoder.precision == "bfloat16" and policy.meta["encoder"]["precision"] == "bfloat16"
    assert policy.act(demo_obs(demos)).shape == (3, 4)
    cfg = policy_cfg("cnn", train={"steps": 4, "eval_every": 2, "batch_size": 8, "precision": "bfloat16"})
    summary = train_policy(cfg, demos, 2, 0, tmp_path / "cnn.pt")
    assert all(math.isfinite(h["valid_mse"]) for h in summary["train"]["history"])
    out = load_policy(tmp_path / "cnn.pt").act(demo_obs(demos))
    assert out.shape == (3, 4) and out.dtype == np.float32 and np.isfinite(out).all()


def test_resnet18_trunk_shapes():
    trunk = ConvTrunk((32, 32), arch="resnet18", num_keypoints=8)
    assert trunk.grid == (1, 1) and trunk.output_dim == 16
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    trunk.train()
    out = trunk({"image": images})
    out.sum().backward()
    assert out.shape == (2, 16) and trunk.backbone[0].weight.grad is not None
    with pytest.raises(ValueError, match="training image size"):
        trunk({"image": torch.zeros(2, 48, 48, 3, dtype=torch.uint8)})


def test_channels_last_trunk_matches_contiguous():
    torch.manual_seed(0)
    plain = ConvTrunk((64, 64), arch="resnet18", num_keypoints=8).eval()
    nhwc = ConvTrunk((64, 64), arch="resnet18", num_keypoints=8, channels_last=True).eval()
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    images = {"image": torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)}
    with torch.no_grad():
        torch.testing.assert_close(nhwc(images), plain(images), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------- command line
def test_robrep_train_cli(demos, encoder_ckpt, cache_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Hydra's run directory (runs/train/...) goes here
    out = tmp_path / "cli.pt"
    main(["train", "policy=mlp", "encoder=mae", f"weights={encoder_ckpt}", f"dataset={demos}", "n=2", "seed=0",
          f"out={out}", f"cache_dir={cache_dir}", "policy.train.steps=5", "policy.train.eval_every=5",
          "progress=false", *TINY_ARCH])
    assert "policy: " in capsys.readouterr().out
    ckpt = read_policy_checkpoint(out)
    default = OmegaConf.load(f"{config_dir()}/encoder/mae.yaml").readout  # readout: ${encoder.readout}
    assert ckpt["config"]["n"] == 2 and ckpt["policy_config"]["readout"] == default
    assert load_policy(out).act(demo_obs(demos)).shape == (3, 4)
    with pytest.raises(SystemExit):
        main(["train", f"weights={encoder_ckpt}", f"dataset={demos}", "n=50", f"out={out}", f"cache_dir={cache_dir}",
              "progress=false", *TINY_ARCH])
    assert "only 7 train demos are available" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- fine-tuning
DEEP_ARCH = {**ARCH, "depth": 3}  # 3 blocks: with blocks=2 the first must stay bit-identical
DIFT_TINY = dict(input_size=32, patch_size=4, t=50, up_block=1, pool=1,
                 unet=dict(block_out_channels=[16, 32, 48], norm_num_groups=8, attention_head_dim=8,
                           down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                           up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]))


@pytest.fixture(scope="module")
def deep_ckpt(tmp_path_factory):
    return write_mae_checkpoint(tmp_path_factory, "mae_deep.pt", DEEP_ARCH)


def grads_of(trunk, images):
    """Names of the encoder parameters that receive a gradient from one training forward/backward."""
    trunk.train()
    trunk({"image": images}).square().sum().backward()
    return {n for n, p in trunk.encoder.named_parameters() if p.grad is not None}


def test_trainable_tail_is_the_last_blocks_and_only_they_get_gradients():
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    vit = load_encoder("mae", frozen=False, **DEEP_ARCH)
    assert [m for m in tail_modules(vit, 2)] == [vit.vit.blocks[1], vit.vit.blocks[2], vit.vit.norm]
    assert trainable_tail(vit, 0) == []
    with pytest.raises(ValueError, match="cannot fine-tune 4 blocks"):
        trainable_tail(vit, 4)
    trunk = FinetuneTrunk(vit, (32, 32), "mean", blocks=2)
    expected = {n for n, p in vit.named_parameters() if n.startswith(("vit.blocks.1.", "vit.blocks.2.", "vit.norm."))}
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == expected
    assert grads_of(trunk, images) == expected
    assert {id(p) for p in trunk.tail_parameters()} == {id(p) for n, p in vit.named_parameters() if n in expected}
    # dift: the up blocks ending at the one read out (up block 1 of 3 -> up_blocks 0 and 1; block 2 never runs)
    dift = load_encoder("dift", frozen=False, **DIFT_TINY)
    assert tail_modules(dift, 2) == [dift.unet.up_blocks[0], dift.unet.up_blocks[1]]
    with pytest.raises(ValueError, match="only 2 blocks compute"):
        trainable_tail(dift, 3)
    got = grads_of(FinetuneTrunk(dift, (32, 32), "mean", blocks=1), images)
    assert got and all(n.startswith("unet.up_blocks.1.") for n in got)
    with pytest.raises(ValueError, match="trainable encoder"):
        FinetuneTrunk(load_encoder("mae", **DEEP_ARCH), (32, 32), "mean")  # frozen stays frozen


def test_finetune_trains_only_the_tail_and_round_trips(demos, deep_ckpt, cache_dir, tmp_path):
    weights = tmp_path / "base.pt"
    weights.write_bytes(deep_ckpt.read_bytes())
    base = load_encoder("mae", weights=str(weights), **DEEP_ARCH)
    cached = sorted(p.name for p in cache_dir.rglob("*"))
    cfg = policy_cfg("finetune", train={"steps": 4, "eval_every": 2, "batch_size": 8})
    assert cfg["trunk"] == "finetune" and cfg["finetune"]["blocks"] == 2
    train_policy(cfg, demos, 2, 0, tmp_path / "ft.pt", EncoderSpec("mae", str(weights), DEEP_ARCH), cache_dir=cache_dir)
    assert sorted(p.name for p in cache_dir.rglob("*")) == cached  # no feature cache involved
    ckpt = read_policy_checkpoint(tmp_path / "ft.pt")
    record = ckpt["encoder"]
    assert record["identity"] == base.identity() and record["finetuned_blocks"] == 2  # the base it started from
    assert record["finetuned_weights_hash"] != base.weights_hash()
    sd, own = ckpt["state_dict"], base.state_dict()
    for key, value in own.items():
        tuned = sd[f"trunk.encoder.{key}"]
        if key.startswith(("vit.blocks.1.", "vit.blocks.2.", "vit.norm.")):
            continue
        assert torch.equal(tuned, value), key  # earlier blocks, embeddings: bit-identical
    for stage in ("vit.blocks.1.", "vit.blocks.2.", "vit.norm."):
        assert any(not torch.equal(sd[f"trunk.encoder.{k}"], v) for k, v in own.items() if k.startswith(stage)), stage
    # round trip: two loads act identically, batched and single; no hash check against the (changed) base file
    obs = demo_obs(demos)
    a = load_policy(tmp_path / "ft.pt")
    assert a.encoder is None and not a.model.trunk.encoder.training
    assert all(not p.requires_grad for p in a.model.parameters())
    batched = a.act(obs)
    torch.manual_seed(1)
    save_checkpoint(load_encoder("mae", **DEEP_ARCH), weights)  # other weights at the base path: irrelevant now
    b = load_policy(tmp_path / "ft.pt")
    np.testing.assert_array_equal(b.act(obs), batched)
    assert batched.shape == (3, 4) and batched.dtype == np.float32 and np.abs(batched).max() <= 1.0
    b.reset()
    single = b.act({"image": obs["image"][0], "proprio": obs["proprio"][0]})
    assert single.shape == (4,)
    np.testing.assert_allclose(single, batched[0], atol=1e-5)


def test_frozen_feature_path_unaffected(tiny_data, encoder_ckpt):
    spec = EncoderSpec("mae", str(encoder_ckpt), ARCH)
    frozen, trainable = spec.load(), spec.load(frozen=False)
    assert frozen.weights_hash() == trainable.weights_hash()
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.train().training
    assert all(p.requires_grad for p in trainable.parameters()) and frozen is not trainable
    data, meta = tiny_data
    model = build_model(policy_cfg(), meta)
    groups = param_groups(model, 1e-3)  # feature policies: one group, every parameter, as before
    assert len(groups) == 1 and [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]
    ft = build_model(policy_cfg("finetune"), {"action_dim": 4, "proprio_dim": 4, "image_size": [32, 32]},
                     encoder=load_encoder("mae", frozen=False, **DEEP_ARCH))
    lrs = [g["lr"] for g in param_groups(ft, 1e-3)]
    assert lrs == [1e-3, 1e-4]


def test_robrep_train_finetune_cli(demos, deep_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "ft_cli.pt"
    main(["train", "policy=finetune", "encoder=mae", f"weights={deep_ckpt}", f"dataset={demos}", "n=2", "seed=0",
          f"out={out}", "policy.train.steps=2", "policy.train.eval_every=2", "policy.train.batch_size=8",
          "progress=false", *TINY_ARCH, "encoder.arch.depth=3"])
    printed = capsys.readouterr().out
    assert "fine-tuning the last 2 blocks of mae:" in printed and "policy: " in printed
    ckpt = read_policy_checkpoint(out)
    assert ckpt["policy_config"]["trunk"] == "finetune" and ckpt["policy_config"]["readout"] == "spatial_softmax"
    assert ckpt["encoder"]["finetuned_blocks"] == 2 and ckpt["train"]["steps"] == 2
    assert load_policy(out).act(demo_obs(demos)).shape == (3, 4)


def test_trainable_tail_ends_at_the_vit_feature_layer():
    vit = load_encoder("mae", frozen=False, feature_layer=2, **DEEP_ARCH)  # block 3 of 3 never runs
    assert tail_modules(vit, 2) == [vit.vit.blocks[0], vit.vit.blocks[1], vit.vit.norm]
    with pytest.raises(ValueError, match="only 2 blocks compute"):
        trainable_tail(vit, 3)


def test_shifted_feature_copies_reach_training(demos, encoder_ckpt, cache_dir, tmp_path):
    enc = load_encoder("mae", weights=str(encoder_ckpt), **ARCH)
    path = compute_features(enc, demos, cache_dir, encoder_name="mae_tiny", progress=False, shifts=2)
    with DemoFile(demos) as d, FeatureCache(path, enc) as cache:
        names = d.subset(2, 0)
        data = load_demo_tensors(d, names, frame_stack=2, cache=cache, shifted=True)
        plain = load_demo_tensors(d, names, frame_stack=2, cache=cache)
        copy2 = torch.cat([cache.features(n, dtype=torch.float16, view=2).tokens for n in names])
    assert data.num_views == 3 and plain.num_views == 1 and data.shifted["tokens"].shape == (2, *plain.frames["tokens"].shape)
    idx = torch.tensor([0, 5, 9])
    frames, _, _ = data.batch(idx, view=torch.tensor([0, 2, 0]))
    torch.testing.assert_close(frames["tokens"][[0, 2]], plain.batch(idx)[0]["tokens"][[0, 2]])  # view 0: as recorded
    torch.testing.assert_close(frames["tokens"][1], copy2[data.stack[5]])  # every stacked frame from copy 2
    torch.testing.assert_close(data.batch(idx)[0]["tokens"], plain.batch(idx)[0]["tokens"])  # no view: recorded
    with DemoFile(demos) as d, FeatureCache(compute_features(enc, demos, cache_dir, "mae_tiny", progress=False), enc) as c:
        with pytest.raises(ValueError, match="holds none"):
            load_demo_tensors(d, names, cache=c, shifted=True)
    cfg = policy_cfg(feature_shifts=2, train={"steps": 40, "eval_every": 20})
    summary = train_policy(cfg, demos, 2, 0, tmp_path / "p.pt", EncoderSpec("mae", str(encoder_ckpt), ARCH),
                           cache_dir=cache_dir)
    ckpt = read_policy_checkpoint(tmp_path / "p.pt")
    assert path.name.split(".", 2)[2] in ckpt["encoder"]["cache"]  # the same key: the cache with copies (partial)
    assert math.isfinite(summary["train"]["valid_mse"])
    assert load_policy(tmp_path / "p.pt").act(demo_obs(demos)).shape == (3, 4)


def test_the_epoch_budget_grows_with_n_and_reports_a_binding_ceiling():
    """One training rule for every arm: epochs over the N demos' frames, floored at min_steps, capped at steps;
    validation points and patience scale with the budget."""
    cfg = TrainConfig(steps=20_000, epochs=20, min_steps=1000, evals=20, patience=5, batch_size=64)
    small, medium, large = cfg.budget(900), cfg.budget(9_000), cfg.budget(90_000)
    assert small == (1000, 50, False)                    # 20 epochs of 900 frames = 282 steps < the floor
    assert medium == (2813, 141, False)                  # ceil(20 * 9000 / 64)
    assert large == (20_000, 1000, True)                 # 28,125 wanted: the ceiling decides (binds)
    assert TrainConfig(steps=300, eval_every=100).budget(10**6) == (300, 100, True)  # no epochs: steps as before
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)


def test_fit_reports_budget_stop_and_binding_cap(tiny_data):
    """A model still improving when the budget runs out is flagged cap_bound; one that stops early is not."""
    data, meta = tiny_data

    def run(**train):
        torch.manual_seed(0)
        model = build_model(policy_cfg(head_kwargs={"hidden": 64, "layers": 1, "dropout": 0.0}), meta)
        model.set_statistics(data.proprio, data.actions, 1e-2)
        return fit(model, data, data, TrainConfig(batch_size=32, **train), torch.Generator().manual_seed(0))

    short = run(steps=20, eval_every=5, patience=3, lr=1e-3)
    assert (short.stopped, short.cap_bound, short.max_steps, short.steps) == ("budget", True, 20, 20)
    long = run(steps=20_000, eval_every=10, patience=2, lr=0.5)  # a far too large step size stops improving
    assert long.stopped == "early" and not long.cap_bound and long.steps < 20_000
    assert [h["step"] for h in long.history][:2] == [10, 20]


def test_min_delta_counts_only_real_progress(tiny_data):
    """With min_delta, evaluations that lower the valid MSE by less than the fraction do not reset patience (the
    run stops sooner) but the lowest-MSE weights are still the ones kept; cap_bound follows the progress points."""
    from policies.train import made_progress

    assert made_progress(0.97, 1.0, 0.02) and not made_progress(0.99, 1.0, 0.02) and made_progress(5.0, math.inf, 0.5)
    data, meta = tiny_data

    def run(**train):
        torch.manual_seed(0)
        model = build_model(policy_cfg(head_kwargs={"hidden": 64, "layers": 1, "dropout": 0.0}), meta)
        model.set_statistics(data.proprio, data.actions, 1e-2)
        return fit(model, data, data, TrainConfig(batch_size=32, steps=3000, eval_every=10, patience=3, lr=1e-3,
                                                  **train), torch.Generator().manual_seed(0))

    plain, strict = run(), run(min_delta=0.3)
    assert strict.steps < plain.steps
    scores = [h["valid_mse"] for h in strict.history]
    assert strict.best_step == strict.history[scores.index(min(scores))]["step"]
    assert strict.progress_step <= strict.best_step
    with pytest.raises(ValueError, match="min_delta"):
        TrainConfig(min_delta=1.0)


def test_cosine_schedule_anneals_the_lr_to_zero_over_the_budget(tiny_data):
    """schedule: cosine = lr(t) = lr/2 (1 + cos(pi t / budget)), read back from the lr the loop reports."""
    data, meta = tiny_data

    class Scalars:
        def __init__(self):
            self.lr = {}

        def add_scalar(self, tag, value, step):
            if tag == "train/lr":
                self.lr[step] = value

    torch.manual_seed(0)
    model = build_model(policy_cfg(head_kwargs={"hidden": 32, "layers": 1, "dropout": 0.0}), meta)
    model.set_statistics(data.proprio, data.actions, 1e-2)
    scalars = Scalars()
    cfg = TrainConfig(batch_size=16, steps=40, eval_every=10, patience=100, lr=2e-3, schedule="cosine")
    fit(model, data, data, cfg, torch.Generator().manual_seed(0), scalars=scalars)
    expected = {t: 1e-3 * (1 + math.cos(math.pi * t / 40)) for t in (10, 20, 30, 40)}
    assert scalars.lr.keys() == expected.keys()
    assert all(abs(scalars.lr[t] - expected[t]) < 1e-9 for t in expected)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


# ---------------------------------------------------------------------------------------------- instruction input
def test_instruction_input_policies_read_each_episodes_instruction(encoder_ckpt, cache_dir, tmp_path):
    """instruction_input: push_color demos (one instruction per episode) → the sentence embedding joins every frame
    vector in training, acting reads obs['instruction'] (refused without it), the instruction changes the action, and
    the exported file bakes one instruction in."""
    demos = tmp_path / "push_color.hdf5"
    collect_demos("push_color", 6, demos, image_size=32, subset_sizes=(5,), subset_seeds=(0,), progress=False)
    out = tmp_path / "p.pt"
    cfg = policy_cfg(instruction_input=True, train={"steps": 30, "eval_every": 10})
    train_policy(cfg, demos, 5, 0, out, EncoderSpec("mae", str(encoder_ckpt), ARCH), cache_dir=cache_dir)
    policy = load_policy(out)
    assert policy.model.instruction_dim == 384 and policy.reads_instruction and not policy.uses_language
    obs = {"image": np.zeros((2, 32, 32, 3), np.uint8), "proprio": np.zeros((2, 4), np.float32)}
    with pytest.raises(ValueError, match="pass obs\\['instruction'\\]"):
        policy.act(obs)
    policy.reset(2)
    texts = np.array(["push the red block onto the yellow circle", "push the blue block onto the yellow circle"])
    actions = policy.act({**obs, "instruction": texts})
    assert actions.shape == (2, 4) and not np.allclose(actions[0], actions[1])  # same frame, other instruction
    from policies.export import ExportablePolicy

    with pytest.raises(ValueError, match="instruction=<text>"):
        ExportablePolicy(policy)
    module = ExportablePolicy(policy, instruction=str(texts[1]))
    policy.reset(1)
    expected = policy.model.predict(policy._frame_vectors(obs["image"][:1], obs["proprio"][:1], [str(texts[1])])[:, None])
    got = module(torch.from_numpy(obs["image"][:1]), torch.from_numpy(obs["proprio"][:1]))
    torch.testing.assert_close(got, expected.clamp(-1, 1))


def test_predict_chunks_is_stateless_and_equals_the_chunk_open_loop_acting_executes(chunk3, demos):
    policy = load_policy(chunk3[0])
    steps = two_env_steps(demos, 4)
    policy.reset(2)
    policy.act(steps[0])  # env state: chunk queued at step 0
    chunks = policy.predict_chunks(steps[2])  # (B, k, A), from step 2's frames; does not touch that queue
    assert chunks.shape == (2, 3, 4) and chunks.dtype == np.float32
    np.testing.assert_allclose(chunks, np.clip(chunks_of(policy, steps[2]["image"], steps[2]["proprio"]), -1, 1),
                               atol=1e-6)
    fresh = load_policy(chunk3[0])
    fresh.reset(2)
    expected = [fresh.act(o) for o in steps[:3]]
    np.testing.assert_array_equal(policy.act(steps[1]), expected[1])  # the queue went on as if untouched
    np.testing.assert_array_equal(policy.act(steps[2]), expected[2])
    single = policy.predict_chunks({"image": steps[2]["image"][0], "proprio": steps[2]["proprio"][0]})
    np.testing.assert_allclose(single, chunks[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- state oracle
def test_the_state_oracle_reads_the_state_alone(demos, tmp_path):
    """policy=state (trunk none) with obs_keys.proprio=[state]: no image is loaded in training, the head's input is
    the normalised state vector alone, and the policy acts from obs["state"] — changing the image changes nothing,
    changing the state does."""
    from robrep.data.obs_keys import ObsKeys

    cfg = policy_cfg("state", train={"steps": 20, "eval_every": 10, "batch_size": 16})
    keys = ObsKeys(image="image", proprio=("state",))
    with DemoFile(demos) as d:
        data = load_demo_tensors(d, ["demo_0"], obs_keys=keys, images=False)
        state_dim = d.episode("demo_0")["obs"]["state"].shape[1]
    assert data.frames == {} and data.proprio.shape[1] == state_dim
    summary = train_policy(cfg, demos, 2, 0, tmp_path / "state.pt", obs_keys=keys)
    assert all(math.isfinite(h["valid_mse"]) for h in summary["train"]["history"])
    ckpt = read_policy_checkpoint(tmp_path / "state.pt")
    assert ckpt["encoder"] is None and "image_size" not in ckpt["shape_meta"]
    assert not any(k.startswith("trunk.") for k in ckpt["state_dict"])
    policy = load_policy(tmp_path / "state.pt")
    assert policy.model.frame_dim == state_dim
    with DemoFile(demos) as d:
        ep = d.episode("demo_7")
    obs = {"image": ep["obs"]["image"][:3], "state": ep["obs"]["state"][:3]}
    out = policy.act(obs)
    assert out.shape == (3, 4) and np.isfinite(out).all()
    blank = {**obs, "image": np.zeros_like(obs["image"])}
    np.testing.assert_array_equal(load_policy(tmp_path / "state.pt").act(blank), out)
    moved = {**obs, "state": obs["state"] + 0.05}
    assert not np.array_equal(load_policy(tmp_path / "state.pt").act(moved), out)
    with pytest.raises(ValueError, match="use_proprio must be true"):
        build_model(policy_cfg("state", use_proprio=False), {"action_dim": 4, "proprio_dim": state_dim})


def test_the_state_oracle_is_not_exported(demos, tmp_path):
    from policies.export import export_policy
    from robrep.data.obs_keys import ObsKeys

    cfg = policy_cfg("state", train={"steps": 4, "eval_every": 2, "batch_size": 16})
    train_policy(cfg, demos, 2, 0, tmp_path / "state.pt", obs_keys=ObsKeys(image="image", proprio=("state",)))
    with pytest.raises(ValueError, match="reads no image"):
        export_policy(load_policy(tmp_path / "state.pt"), tmp_path / "state.onnx", "onnx")
