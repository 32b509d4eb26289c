"""The encoder contract, checked for every registered encoder (a new one is tested on registration)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from robrep.config import config_dir
from robrep.encoders import (SpatialFeatures, list_encoders, load_encoder, save_checkpoint)
from robrep.readouts import READOUTS, make_readout

NAMES = list_encoders()


def arch(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml").arch)


@pytest.fixture(scope="module", params=NAMES)
def encoder(request):
    torch.manual_seed(0)
    enc = load_encoder(request.param, **arch(request.param))
    enc.registry_name = request.param
    return enc


def images(b=2, h=80, w=100, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def test_four_families_are_registered():
    assert {"mae", "dift", "voltron", "clip"} <= set(NAMES)


def test_default_readout_lives_in_the_encoder_config():
    """One place for an encoder's default readout: ``readout:`` in configs/encoder/<name>.yaml (one vocabulary)."""
    from robrep.readouts import READOUTS

    readouts = {name: OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml").readout for name in NAMES}
    assert readouts["clip"] == "cls" and readouts["mae"] == "spatial_softmax"
    assert set(readouts.values()) <= set(READOUTS)


def test_every_registered_encoder_has_a_config():
    for name in NAMES:
        cfg = OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml")
        assert cfg.name == name and "arch" in cfg and "pretrain" in cfg


def test_forward_shapes(encoder):
    feats = encoder.encode_images(images())
    h, w = encoder.grid_size
    assert isinstance(feats, SpatialFeatures)
    assert feats.tokens.shape == (2, h * w, encoder.feature_dim) and feats.grid == (h, w)
    assert encoder.output_shape() == (h * w, encoder.feature_dim)
    if encoder.has_global_token:
        assert feats.global_token.shape == (2, encoder.feature_dim)
    assert torch.isfinite(feats.tokens).all()


def test_frozen(encoder):
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training
    feats = encoder.encode_images(images())
    assert not feats.tokens.requires_grad


def test_deterministic_and_input_dependent(encoder):
    a = encoder.encode_images(images(seed=1)).tokens
    b = encoder.encode_images(images(seed=1)).tokens
    c = encoder.encode_images(images(seed=2)).tokens
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_batched_equals_single(encoder):
    x = images(b=3)
    together = encoder.encode_images(x, batch_size=3).tokens
    apart = encoder.encode_images(x, batch_size=1).tokens
    scale = float(together.abs().max().clamp_min(1.0))  # a random-init ResNet-50's activations reach ~100
    torch.testing.assert_close(together, apart, atol=1e-4 * scale, rtol=1e-4)


def test_bfloat16(encoder):
    half = load_encoder(encoder.registry_name, dtype=torch.bfloat16, **arch(encoder.registry_name))
    half.load_state_dict(encoder.state_dict())
    feats = half.encode_images(images())
    full = encoder.encode_images(images())
    assert feats.tokens.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(feats.tokens.float().flatten(1), full.tokens.flatten(1))
    assert (cos > 0.95).all()


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((2, 32, 32, 3), np.float32), TypeError, "uint8"),
    (np.zeros((32, 32, 3), np.uint8), ValueError, r"\(B, H, W, 3\)"),
    (np.zeros((2, 32, 32, 4), np.uint8), ValueError, r"\(B, H, W, 3\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), ValueError, "empty batch"),
])
def test_bad_images_are_clear_errors(encoder, bad, error, match):
    with pytest.raises(error, match=match):
        encoder.preprocess(bad)


def test_checkpoint_round_trip(encoder, tmp_path):
    path = tmp_path / "enc.pt"
    digest = save_checkpoint(encoder, path, {"note": "test"})
    again = load_encoder(str(path))
    assert again.weights_hash() == digest == encoder.weights_hash()
    torch.testing.assert_close(again.encode_images(images()).tokens, encoder.encode_images(images()).tokens)


def test_corrupt_checkpoint_is_an_error(encoder, tmp_path):
    path = tmp_path / "enc.pt"
    save_checkpoint(encoder, path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError, match="not a readable robrep encoder checkpoint"):
        load_encoder(str(path))


@pytest.mark.parametrize("readout", sorted(READOUTS))
def test_readouts_train_on_frozen_features(encoder, readout):
    feats = encoder.encode_images(images())
    head = make_readout(readout, encoder.feature_dim, encoder.grid_size)
    if readout == "cls" and feats.global_token is None:
        with pytest.raises(ValueError, match="global token"):
            head(feats)
        return
    out = head(feats)
    assert out.shape == (2, head.output_dim)
    if any(p.requires_grad for p in head.parameters()):
        out.square().mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_unknown_encoder_and_missing_checkpoint():
    with pytest.raises(KeyError, match="unknown encoder 'maee'"):
        load_encoder("maee")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_encoder("/tmp/nowhere.pt")


def test_spatial_softmax_finds_a_bright_spot():
    """Keypoint coordinates follow the feature peak (x right, y down, in [-1, 1])."""
    tokens = torch.zeros(1, 16, 1)
    tokens[0, 4 * 1 + 3, 0] = 10.0  # row 1, column 3 of a 4x4 grid
    head = make_readout("spatial_softmax", 1, (4, 4), num_keypoints=1)
    with torch.no_grad():
        head.proj.weight.fill_(1.0)
        head.proj.bias.zero_()
        head.log_temperature.fill_(-2.0)
    xy = head(SpatialFeatures(tokens, (4, 4)))[0]
    assert xy[0] > 0.9 and -0.5 < xy[1] < 0


VIT_NAMES = [n for n in NAMES if n in ("mae", "voltron", "clip")]
VIT_TINY = dict(input_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)


@pytest.mark.parametrize("name", VIT_NAMES)
def test_vit_feature_layer_reads_an_intermediate_block(name, tmp_path):
    torch.manual_seed(0)
    enc = load_encoder(name, **VIT_TINY)
    last_hash = enc.weights_hash()
    assert enc.feature_layer == 3 and "feature_layer" not in enc.config  # default: the old hash is kept
    x = enc.preprocess(images(2, 32, 32))
    with torch.no_grad():  # by hand: patch + position embedding, the first two blocks, the final norm
        t = enc.embed(x) + (enc.img_token if name == "voltron" else 0)
        for block in enc.vit.blocks[:2]:
            t = block(t)
        want = enc.vit.norm(t)[:, enc.num_prefix_tokens:]
    path = tmp_path / "enc.pt"
    save_checkpoint(enc, path)
    mid = load_encoder(name, weights=str(path), feature_layer=2)
    torch.testing.assert_close(mid(x).tokens, want)
    assert not torch.allclose(enc(x).tokens, want)
    assert mid.config["feature_layer"] == 2 and mid.weights_hash() != last_hash  # caches and policies tell them apart
    rebuilt = type(mid)(**mid.config)  # the config round-trips the choice
    assert rebuilt.feature_layer == 2
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"feature_layer must be in \[1, 3\]"):
            load_encoder(name, weights=str(path), feature_layer=bad)


def test_bfloat16_precision_keeps_features_and_returns_float32(encoder):
    x = encoder.preprocess(images(b=3))
    exact = encoder(x).tokens
    try:
        mixed = encoder.set_precision("bf16")(x)
        assert encoder.precision == "bfloat16"
        assert mixed.tokens.dtype == torch.float32 and mixed.tokens.shape == exact.shape
        if mixed.global_token is not None:
            assert mixed.global_token.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(mixed.tokens, exact, dim=-1)
        assert cos.min() > 0.99  # the committed full-budget weights: cos ≥ 0.9996, relative error ≤ 0.7 %
        assert not torch.equal(mixed.tokens, exact)  # it did run in lower precision
    finally:
        encoder.set_precision("float32")
    torch.testing.assert_close(encoder(x).tokens, exact)


def test_unknown_precision_is_a_clear_error(encoder):
    with pytest.raises(ValueError, match="unknown precision"):
        encoder.set_precision("float8")
