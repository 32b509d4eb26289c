"""Voltron-style family: shapes, frozen contract, language on/off/per-sample, the V-Cond checkpoint loader
(a tiny checkpoint written locally in the voltron-robotics layout, checked against an independent
re-implementation of the V-Cond forward), robrep checkpoints and the language-conditioned objective."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robrep.data.collect import collect_demos
from robrep.data.frames import FrameDataset
from robrep.encoders import load_encoder, save_checkpoint
from robrep.encoders.checkpoint import WeightsMismatchError
from robrep.encoders.language import embed_tokens
from robrep.encoders.registry import build_encoder
from robrep.encoders.voltron import VoltronEncoder
from robrep.pretrain.loop import pretrain
from robrep.pretrain.objective import make_objective
from robrep.pretrain.voltron import VoltronObjective

TINY = dict(input_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
PUSH = "push the red block onto the yellow circle"


def images(b: int = 2, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny() -> VoltronEncoder:
    torch.manual_seed(0)
    return load_encoder("voltron", **TINY)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> FrameDataset:
    path = tmp_path_factory.mktemp("voltron") / "d.hdf5"
    collect_demos("push", 4, path, image_size=64, subset_sizes=(), subset_seeds=(), progress=False)
    return FrameDataset.from_files([path])


def test_default_architecture_matches_mae():
    enc, mae = load_encoder("voltron"), load_encoder("mae")
    assert enc.family == "voltron" and enc.grid_size == mae.grid_size == (12, 12) and enc.feature_dim == 192
    n, n_mae = (sum(p.numel() for p in e.parameters()) for e in (enc, mae))
    assert 1.0 < n / n_mae < 1.05
    enc.language = PUSH
    feats = enc.encode_images(images(2, 64))
    assert feats.tokens.shape == (2, 144, 192) and feats.global_token.shape == (2, 192)


def test_frozen_deterministic_and_bad_images(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training
    tiny.language = PUSH
    a, b = tiny.encode_images(images(seed=1)), tiny.encode_images(images(seed=1))
    tiny.language = None
    torch.testing.assert_close(a.tokens, b.tokens)
    assert not a.tokens.requires_grad
    for bad, error in ((np.zeros((2, 8, 8, 3), np.int64), TypeError), (np.zeros((8, 8, 3), np.uint8), ValueError),
                       (np.zeros((1, 8, 8, 2), np.uint8), ValueError), (np.zeros((0, 8, 8, 3), np.uint8), ValueError)):
        with pytest.raises(error):
            tiny.preprocess(bad)


def test_language_on_off_and_per_sample(tiny):
    x = tiny.preprocess(images(3))
    tiny.language = None
    plain = tiny(x)
    tiny.language = PUSH
    push = tiny(x)
    tiny.language = "press the red button"
    button = tiny(x)
    tiny.language = None
    assert (push.tokens - plain.tokens).abs().max() > 1e-3 and (push.tokens - button.tokens).abs().max() > 1e-3
    # per-sample texts (different lengths -> padding) equal the one-text-per-batch results; None = no language
    mixed = tiny.encode_with_language(x, [PUSH, None, "press the red button"])
    torch.testing.assert_close(mixed.tokens[0], push.tokens[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed.tokens[1], plain.tokens[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed.tokens[2], button.tokens[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed.global_token[0], push.global_token[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one per image"):
        tiny.encode_with_language(x, [PUSH])


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(3)
    enc = build_encoder("voltron", style="vcond", **TINY)
    digest = save_checkpoint(enc, tmp_path / "v.pt")
    again = load_encoder(str(tmp_path / "v.pt"))
    assert isinstance(again, VoltronEncoder) and again.weights_hash() == digest and again.config["style"] == "vcond"
    again.language = enc.language = PUSH
    torch.testing.assert_close(again.encode_images(images()).tokens, enc.eval().encode_images(images()).tokens)


# ------------------------------------------------------------------------------------------ V-Cond release layout
D, P, RES, DEPTH, HEADS, HID = 64, 8, 32, 2, 2, 128  # HID = mlp_ratio 2 · D


def vcond_state(language_dim: int = 384, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors named and shaped as a voltron-robotics V-Cond (use_cls_token) state dict."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    n = (RES // P) ** 2
    s = {"cls_token": r(1, 1, D), "patch2embed.proj.weight": r(D, 3, P, P), "patch2embed.proj.bias": r(D),
         "encoder_pe": r(1, n + 1, D), "encoder_norm.g": 1 + r(D), "lang2encoder.weight": r(D, language_dim),
         "lang2encoder.bias": r(D), "img_token": r(1, 1, D), "lang_token": r(1, 1, D),
         "encoder2decoder.weight": r(32, D), "mask_token": r(1, 1, 32), "decoder_pe": r(1, n + 1, 32),
         "decoder_blocks.0.attn.qkv.weight": r(96, 32), "decoder_norm.g": r(32),
         "decoder_prediction.weight": r(192, 32),
         "lm.embeddings.word_embeddings.weight": r(10, language_dim)}
    for i in range(DEPTH):
        b = f"encoder_blocks.{i}."
        s.update({b + "pre_norm_attn.g": 1 + r(D), b + "attn.qkv.weight": r(3 * D, D), b + "attn.qkv.bias": r(3 * D),
                  b + "attn.proj.weight": r(D, D), b + "attn.proj.bias": r(D), b + "layer_scale_attn.gamma": r(D),
                  b + "pre_norm_mlp.g": 1 + r(D), b + "mlp.0.project.weight": r(2 * HID, D),
                  b + "mlp.0.project.bias": r(2 * HID), b + "mlp.2.weight": r(D, HID), b + "mlp.2.bias": r(D),
                  b + "layer_scale_mlp.gamma": r(D)})
    return s


def write_vcond(folder, state) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save((state, {"state": {}, "param_groups": []}), folder / "v-cond.pt")
    (folder / "v-cond-config.json").write_text(json.dumps({"resolution": RES, "patch_size": P, "encoder_n_heads": HEADS,
                                                           "encoder_depth": DEPTH, "encoder_embed_dim": D}))


def vcond_reference(s: dict[str, torch.Tensor], x: torch.Tensor, lang: torch.Tensor | None) -> torch.Tensor:
    """V-Cond encoder maths written out (image tokens FIRST, then language) → patch tokens ``(B, N, D)``."""
    def rms(t, gain):
        return t / (t.norm(dim=-1, keepdim=True) * D ** -0.5).clamp(min=1e-8) * gain

    def lin(t, name):
        return t @ s[name + ".weight"].T + s[name + ".bias"]

    patches = F.conv2d(x, s["patch2embed.proj.weight"], s["patch2embed.proj.bias"], stride=P).flatten(2).transpose(1, 2)
    t = torch.cat([s["cls_token"].expand(len(x), -1, -1), patches], 1) + s["encoder_pe"] + s["img_token"]
    n_img = t.shape[1]
    if lang is not None:
        t = torch.cat([t, lin(lang, "lang2encoder") + s["lang_token"]], 1)
    for i in range(DEPTH):
        b = f"encoder_blocks.{i}."
        q, k, v = lin(rms(t, s[b + "pre_norm_attn.g"]), b + "attn.qkv").reshape(*t.shape[:2], 3, HEADS, -1).permute(
            2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) * (D // HEADS) ** -0.5).softmax(-1) @ v
        t = t + s[b + "layer_scale_attn.gamma"] * lin(att.transpose(1, 2).reshape(t.shape), b + "attn.proj")
        value, gate = lin(rms(t, s[b + "pre_norm_mlp.g"]), b + "mlp.0.project").chunk(2, dim=-1)
        t = t + s[b + "layer_scale_mlp.gamma"] * lin(value * F.silu(gate), b + "mlp.2")
    return rms(t, s["encoder_norm.g"])[:, 1:n_img]


def test_vcond_checkpoint_loads_and_matches_the_reference(tmp_path):
    state = vcond_state()
    write_vcond(tmp_path / "v-cond", state)
    enc = load_encoder("voltron", weights=f"vcond:{tmp_path / 'v-cond'}")  # directory form
    assert (enc.input_size, enc.grid_size, enc.feature_dim, enc.config["style"]) == (RES, (4, 4), D, "vcond")
    assert enc.vit.blocks[0].attn.num_heads == HEADS and enc.vit.cls_token is not None
    own = enc.state_dict()
    torch.testing.assert_close(own["vit.blocks.1.mlp.fc1.weight"], state["encoder_blocks.1.mlp.0.project.weight"])
    torch.testing.assert_close(own["vit.blocks.0.norm2.weight"], state["encoder_blocks.0.pre_norm_mlp.g"])
    torch.testing.assert_close(own["lang_proj.weight"], state["lang2encoder.weight"])
    x = enc.preprocess(images(2, 40))
    torch.testing.assert_close(enc(x).tokens, vcond_reference(state, x, None), atol=1e-5, rtol=1e-5)
    enc.language = PUSH
    lang, mask = embed_tokens([PUSH, PUSH])
    assert mask.all()
    torch.testing.assert_close(enc(x).tokens, vcond_reference(state, x, lang), atol=1e-5, rtol=1e-5)
    file_form = load_encoder("voltron", weights=f"vcond:{tmp_path / 'v-cond' / 'v-cond.pt'}")
    assert file_form.weights_hash() == enc.weights_hash()


def test_vcond_with_distilbert_projection_is_vision_only(tmp_path):
    write_vcond(tmp_path / "v", vcond_state(language_dim=768))
    enc = load_encoder("voltron", weights=f"vcond:{tmp_path / 'v'}")
    assert enc.encode_images(images()).tokens.shape == (2, 16, D)
    enc.language = PUSH
    with pytest.raises(ValueError, match="DistilBERT"):
        enc.encode_images(images())


def test_vcond_mismatch_and_missing(tmp_path):
    state = vcond_state()
    state["encoder_blocks.0.attn.qkv.bias"] = torch.zeros(7)
    state["encoder_blocks.0.extra.weight"] = torch.zeros(3)
    write_vcond(tmp_path / "v", state)
    with pytest.raises(WeightsMismatchError) as err:
        build_encoder("voltron", weights=f"vcond:{tmp_path / 'v'}")
    assert "vit.blocks.0.attn.qkv.bias" in str(err.value) and "encoder_blocks.0.extra.weight" in str(err.value)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_encoder("voltron", weights=f"vcond:{tmp_path / 'nowhere' / 'v-cond.pt'}")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "not-vcond.pt")
    with pytest.raises(ValueError, match="not a V-Cond checkpoint"):
        build_encoder("voltron", weights=f"vcond:{tmp_path / 'not-vcond.pt'}")


# ------------------------------------------------------------------------------------------ objective
def test_objective_language_dropout(frames):
    torch.manual_seed(0)
    obj = make_objective(build_encoder("voltron", **TINY), language_dropout=1.0, decoder_dim=32, decoder_depth=1,
                         decoder_heads=2)
    assert isinstance(obj, VoltronObjective)
    batch = frames.batch(np.arange(4))
    x = obj.prepare(batch["images"])
    keep, _, _ = obj.random_mask(4, x.device)
    obj.train()
    dropped = obj.encode_visible(x, keep, batch)
    torch.testing.assert_close(dropped, obj.encoder.joint(obj.visible_tokens(x, keep), None))
    obj.eval()  # no dropout in eval: the instruction is used
    assert (obj.encode_visible(x, keep, batch) - dropped).abs().max() > 1e-4
    with pytest.raises(ValueError, match="language_dropout"):
        make_objective(build_encoder("voltron", **TINY), language_dropout=1.5)


def test_pretraining_reduces_the_loss(frames):
    torch.manual_seed(0)
    obj = make_objective(build_encoder("voltron", **TINY), decoder_dim=64, decoder_depth=1, decoder_heads=2)
    out = pretrain(obj, frames, batch_size=16, lr=2e-3, warmup_steps=5, max_steps=40, log_every=5, progress=False)
    curve = [row["loss"] for row in out["loss_curve"]]
    assert out["steps"] == 40 and curve[-1] < 0.5 * curve[0] and out["final_loss"] < 0.5 * curve[0]
    assert obj.encoder.lang_proj.weight.grad is not None  # the language path was trained


def test_released_vcond_by_id_comes_from_the_voltron_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # voltron-robotics' default cache is ./cache
    monkeypatch.delenv("VOLTRON_CACHE", raising=False)
    with pytest.raises(FileNotFoundError, match=r"v-cond\.pt and v-cond-config\.json in one of cache/v-cond"):
        load_encoder("voltron", weights="vcond:v-cond")
    state = vcond_state()
    write_vcond(tmp_path / "elsewhere" / "v-cond", state)
    monkeypatch.setenv("VOLTRON_CACHE", str(tmp_path / "elsewhere"))
    enc = load_encoder("voltron", weights="vcond:v-cond")
    ref = load_encoder("voltron", weights=f"vcond:{tmp_path / 'elsewhere' / 'v-cond'}")
    assert enc.weights_hash() == ref.weights_hash() and enc.config["style"] == "vcond"
