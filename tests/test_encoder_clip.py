"""CLIP-token encoder family: shapes, frozen-ness, preprocessing, public weights (timm and
OpenAI/OpenCLIP layouts, tiny checkpoints built here), checkpoints and the contrastive objective."""

from __future__ import annotations

import re

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from robrep.encoders import (WeightsMismatchError, build_encoder, list_encoders, load_encoder,
                             save_checkpoint)
from robrep.encoders.clip import CLIP_MEAN, CLIPEncoder
from robrep.encoders.hub import WeightsNotFoundError
from robrep.pretrain.contrastive import ContrastiveObjective, clip_loss
from robrep.pretrain.objective import make_objective

TINY = dict(input_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2, proj_dim=32)
REF = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1, num_classes=24, global_pool="token")
REF_ARCH = dict(input_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1)  # REF as CLIPEncoder overrides


def tiny(**kw) -> CLIPEncoder:
    torch.manual_seed(0)
    return build_encoder("clip", **{**TINY, **kw})


def images(b: int = 3, size: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """A tiny timm CLIP ViT (depth 2, width 64, 1 head) with a bias-free projection head, as 'public' weights."""
    torch.manual_seed(1)
    model = timm.create_model("vit_base_patch16_clip_224", pretrained=False, **REF).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # non-trivial norms and biases
        model.head.bias.zero_()  # OpenAI/OpenCLIP projections have no bias
    return model


def to_open_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm keys → OpenAI/OpenCLIP ``visual.*`` layout (+ text-tower keys the loader must drop)."""
    swaps = [(r"^patch_embed\.proj", "conv1"), (r"^norm_pre", "ln_pre"), (r"^norm\.", "ln_post."),
             (r"^blocks\.", "transformer.resblocks."), (r"\.norm1\.", ".ln_1."), (r"\.norm2\.", ".ln_2."),
             (r"attn\.qkv\.(weight|bias)", r"attn.in_proj_\1"), (r"attn\.proj\.", "attn.out_proj."),
             (r"mlp\.fc1", "mlp.c_fc"), (r"mlp\.fc2", "mlp.c_proj")]
    out = {}
    for k, v in sd.items():
        if k == "cls_token":
            out["visual.class_embedding"] = v.reshape(-1)
        elif k == "pos_embed":
            out["visual.positional_embedding"] = v[0]
        elif k == "head.weight":
            out["visual.proj"] = v.t().contiguous()
        elif k != "head.bias":
            for pat, rep in swaps:
                k = re.sub(pat, rep, k)
            out[f"visual.{k}"] = v.clone()
    out.update({"logit_scale": torch.tensor(4.6), "text_projection": torch.randn(64, 24),
                "positional_embedding": torch.randn(77, 64), "token_embedding.weight": torch.randn(100, 64),
                "transformer.resblocks.0.attn.in_proj_weight": torch.randn(192, 64)})
    return out


def assert_matches(enc: CLIPEncoder, ref: torch.nn.Module) -> None:
    ref_sd = ref.state_dict()
    for k, v in enc.vit.state_dict().items():
        torch.testing.assert_close(v, ref_sd[k], msg=k)
    x = enc.preprocess(images())
    feats = enc(x)
    with torch.no_grad():
        full = ref.forward_features(x)
        torch.testing.assert_close(feats.tokens, full[:, 1:])
        torch.testing.assert_close(feats.global_token, full[:, 0])
        torch.testing.assert_close(enc.image_embedding(x), ref.forward_head(full))


# ------------------------------------------------------------------------------------------ encoder
def test_default_encoder_shapes_and_registration() -> None:
    assert "clip" in list_encoders()
    enc = load_encoder("clip")
    assert isinstance(enc, CLIPEncoder) and enc.family == "clip"
    assert 2_000_000 < sum(p.numel() for p in enc.parameters()) < 4_000_000
    x = enc.preprocess(images(2, 64))
    feats = enc(x)
    assert feats.tokens.shape == (2, 144, 192) and feats.grid == (12, 12) == enc.grid_size
    assert feats.global_token.shape == (2, 192) and enc.output_shape() == (144, 192)
    assert enc.image_embedding(x).shape == (2, 128)
    assert isinstance(enc.vit.norm_pre, torch.nn.LayerNorm)  # CLIP's ln_pre
    assert tuple(enc.config["mean"]) == CLIP_MEAN


def test_frozen_and_deterministic() -> None:
    enc = load_encoder("clip", **TINY)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not any(m.training for m in enc.modules())
    x = enc.preprocess(images())
    a, b = enc(x), enc(x)
    assert not a.tokens.requires_grad and not a.global_token.requires_grad
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.global_token, b.global_token)
    rebuilt = type(enc)(**enc.config)
    rebuilt.load_state_dict(enc.state_dict())
    assert torch.equal(rebuilt.freeze()(x).tokens, a.tokens) and rebuilt.weights_hash() == enc.weights_hash()


def test_preprocess_errors() -> None:
    enc = load_encoder("clip", **TINY)
    with pytest.raises(TypeError, match="uint8"):
        enc.preprocess(images().float())
    with pytest.raises(ValueError, match="shape"):
        enc.preprocess(images()[0])
    with pytest.raises(ValueError, match="shape"):
        enc.preprocess(torch.zeros(2, 32, 32, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        enc.preprocess(torch.zeros(0, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected"):
        enc(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="class_token"):
        CLIPEncoder(**TINY, class_token=False)


def test_checkpoint_round_trip(tmp_path) -> None:
    enc = tiny()
    path = tmp_path / "clip.pt"
    digest = save_checkpoint(enc, path, meta={"note": "tiny"})
    loaded = load_encoder(str(path))
    assert isinstance(loaded, CLIPEncoder) and loaded.config == enc.config and loaded.weights_hash() == digest
    x = enc.preprocess(images())
    torch.testing.assert_close(loaded(x).global_token, enc.freeze()(x).global_token)
    again = load_encoder("clip", weights=str(path))
    assert again.weights_hash() == digest and build_encoder("clip", weights=str(path)).weights_hash() == digest


# ----------------------------------------------------------------------------------------- public weights
def test_timm_format_weights(tmp_path, reference) -> None:
    path = tmp_path / "model.safetensors"
    save_file(reference.state_dict(), str(path))
    enc = load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224.openai@{path}", **REF_ARCH)
    assert enc.proj_dim == 24 and enc.config["timm_model"] == "vit_base_patch16_clip_224.openai"
    assert tuple(enc.config["mean"]) == CLIP_MEAN
    assert_matches(enc, reference)
    # another input size resamples the position embedding; the checkpoint round trip keeps it
    big = load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224@{path}", **{**REF_ARCH, "input_size": 48})
    assert big.grid_size == (6, 6) and big(big.preprocess(images())).tokens.shape == (3, 36, 64)
    save_checkpoint(big, tmp_path / "big.pt")
    assert load_encoder(str(tmp_path / "big.pt")).weights_hash() == big.weights_hash()


def test_open_clip_format_weights(tmp_path, reference) -> None:
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(to_open_clip(reference.state_dict()), path)
    enc = load_encoder("clip", weights=f"open_clip:{path}")  # architecture read from the shapes
    assert (enc.config["embed_dim"], enc.config["depth"], enc.config["patch_size"], enc.input_size) == (64, 2, 8, 32)
    assert enc.config["num_heads"] == 1 and enc.proj_dim == 24
    assert_matches(enc, reference)
    # the timm syntax reads the OpenCLIP layout too; QuickGELU for OpenAI weights is an override
    via_timm = load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224@{path}", **REF_ARCH)
    assert_matches(via_timm, reference)
    quick = load_encoder("clip", weights=f"open_clip:{path}", act_layer="quick_gelu")
    assert type(quick.vit.blocks[0].mlp.act).__name__ == "QuickGELU"


def test_public_weights_errors(tmp_path, reference) -> None:
    sd = reference.state_dict()
    bad = {("bogus.weight" if k == "norm.weight" else k): v for k, v in sd.items()}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"norm\.weight.*bogus\.weight"):
        load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224@{tmp_path / 'bad.safetensors'}", **REF_ARCH)
    save_file(sd, str(tmp_path / "ok.safetensors"))
    with pytest.raises(WeightsMismatchError, match=r"blocks\.1\."):  # depth 1 model, depth 2 file
        load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224@{tmp_path / 'ok.safetensors'}",
                     **{**REF_ARCH, "depth": 1})
    with pytest.raises(WeightsMismatchError, match="patch_embed.proj.weight"):  # wrong patch: no silent resampling
        load_encoder("clip", weights=f"timm:vit_base_patch16_clip_224@{tmp_path / 'ok.safetensors'}",
                     **{**REF_ARCH, "patch_size": 16})
    oc = to_open_clip(sd)
    del oc["visual.ln_post.weight"]
    torch.save(oc, tmp_path / "oc.bin")
    with pytest.raises(WeightsMismatchError, match=r"missing keys: norm\.weight"):
        load_encoder("clip", weights=f"open_clip:{tmp_path / 'oc.bin'}")
    for spec in (f"open_clip:{tmp_path / 'nope.bin'}", f"timm:vit_base_patch16_clip_224@{tmp_path / 'nope.bin'}"):
        with pytest.raises(FileNotFoundError, match="nope.bin"):
            load_encoder("clip", weights=spec)
    for spec in ("clip-weights.bin", "timm:no_such_model@x.bin", "timm:no_such_model"):
        with pytest.raises(ValueError):
            build_encoder("clip", weights=spec)
    with pytest.raises(WeightsNotFoundError, match=r"models--timm--vit_base_patch16_clip_224\.openai"):
        build_encoder("clip", weights="timm:vit_base_patch16_clip_224.openai")  # offline, not in the cache


# ----------------------------------------------------------------------------------------- contrastive
def test_duplicate_texts_are_not_negatives() -> None:
    texts = ["a", "a", "b"]
    grads = {}
    for mode in ("mask", "soft", "none"):
        logits = torch.zeros(3, 3, requires_grad=True)
        clip_loss(logits, texts, mode).backward()
        grads[mode] = logits.grad
    assert grads["mask"][0, 1] == 0 and grads["mask"][1, 0] == 0  # neither pushed down nor pulled up
    assert grads["soft"][0, 1] < 0 and grads["soft"][1, 0] < 0  # identical texts are positives
    assert grads["none"][0, 1] > 0  # plain CLIP treats them as negatives
    for mode in ("mask", "soft", "none"):
        assert grads[mode][0, 2] > 0 and grads[mode][2, 0] > 0  # distinct texts stay negatives
    logits = torch.randn(3, 3)
    shifted = logits.clone()
    shifted[0, 1] += 5.0
    assert torch.equal(clip_loss(logits, texts), clip_loss(shifted, texts))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from robrep.data.collect import collect_demos
    from robrep.data.frames import FrameDataset

    path = tmp_path_factory.mktemp("clip") / "d.hdf5"
    collect_demos("push_color", 4, path, image_size=64, subset_sizes=(), subset_seeds=(), progress=False)
    return FrameDataset.from_files([path])


def test_contrastive_training_reduces_loss(frames) -> None:
    from robrep.pretrain.loop import pretrain

    enc = tiny()
    objective = make_objective(enc, text_hidden=64)
    assert isinstance(objective, ContrastiveObjective) and objective.encoder is enc
    batch = frames.batch(np.arange(len(frames))[::3][:32])
    assert len(set(batch["captions"])) < 32  # the fixed set has duplicate captions
    same = frames.batch(np.full(4, 5))  # one frame four times: every pair is a duplicate
    loss, logs = objective.loss(same)
    assert loss.item() == 0.0 and logs["duplicate_pairs"] == 1.0
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=2e-3)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    losses = []
    for _ in range(40):
        loss, logs = objective.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
    assert logs["acc_i2t"] > 0.1 and 0 < logs["temperature"] <= 1  # chance is about 1/32
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items())
    result = pretrain(objective, frames, batch_size=16, max_steps=2, warmup_steps=1, progress=False)
    assert result["steps"] == 2 and np.isfinite(result["final_loss"])
    with pytest.raises(ValueError, match="frozen"):
        make_objective(load_encoder("clip", **TINY))
