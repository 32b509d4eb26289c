"""MAE family: architecture, frozen contract, public-weight loaders (timm / facebookresearch layouts, written
locally with tiny architectures), robrep checkpoints and a few pretraining steps of the MAE objective."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from robrep.data.collect import collect_demos
from robrep.data.frames import FrameDataset
from robrep.encoders import load_encoder, save_checkpoint
from robrep.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from robrep.encoders.checkpoint import WeightsMismatchError
from robrep.encoders.mae import MAEEncoder
from robrep.encoders.registry import build_encoder
from robrep.pretrain.loop import pretrain
from robrep.pretrain.objective import make_objective

TINY = dict(input_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2)
PUBLIC = dict(embed_dim=192, depth=2, num_heads=3)  # a tiny stand-in for ViT-B in the public formats


def images(b: int = 2, size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny() -> MAEEncoder:
    torch.manual_seed(0)
    return load_encoder("mae", **TINY)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> FrameDataset:
    path = tmp_path_factory.mktemp("mae") / "d.hdf5"
    collect_demos("push", 4, path, image_size=64, subset_sizes=(), subset_seeds=(), progress=False)
    return FrameDataset.from_files([path])


def test_default_architecture_shapes():
    enc = load_encoder("mae")
    assert enc.family == "mae" and enc.grid_size == (12, 12) and enc.feature_dim == 192
    assert 2.5e6 < sum(p.numel() for p in enc.parameters()) < 3.0e6
    feats = enc.encode_images(images(2, 64))
    assert feats.tokens.shape == (2, 144, 192) and feats.grid == (12, 12)
    assert feats.global_token.shape == (2, 192)


def test_frozen_and_deterministic(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training
    a, b = tiny.encode_images(images(seed=1)), tiny.encode_images(images(seed=1))
    assert not a.tokens.requires_grad
    torch.testing.assert_close(a.tokens, b.tokens)
    torch.testing.assert_close(a.global_token, b.global_token)
    assert not torch.allclose(a.tokens, tiny.encode_images(images(seed=2)).tokens)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((2, 32, 32, 3), np.float32), TypeError, "uint8"),
    (np.zeros((32, 32, 3), np.uint8), ValueError, r"\(B, H, W, 3\)"),
    (np.zeros((2, 32, 32, 1), np.uint8), ValueError, r"\(B, H, W, 3\)"),
    (np.zeros((0, 32, 32, 3), np.uint8), ValueError, "empty batch"),
])
def test_bad_images(tiny, bad, error, match):
    with pytest.raises(error, match=match):
        tiny.preprocess(bad)


def test_without_class_token_the_global_token_is_the_mean():
    enc = load_encoder("mae", class_token=False, **TINY)
    feats = enc.encode_images(images())
    torch.testing.assert_close(feats.global_token, feats.tokens.mean(dim=1))


def test_checkpoint_round_trip(tiny, tmp_path):
    digest = save_checkpoint(tiny, tmp_path / "mae.pt", {"note": "test"})
    again = load_encoder(str(tmp_path / "mae.pt"))
    assert isinstance(again, MAEEncoder) and again.weights_hash() == digest
    torch.testing.assert_close(again.encode_images(images()).tokens, tiny.encode_images(images()).tokens)


# ------------------------------------------------------------------------------------------ public formats
def _timm_reference(file, **kw) -> torch.nn.Module:
    """The same file loaded by timm itself (the ground truth for our loader)."""
    return timm.create_model("vit_base_patch16_224.mae", pretrained=True, pretrained_cfg_overlay=dict(file=str(file)),
                             global_pool="", **PUBLIC, **kw).eval()


@pytest.mark.parametrize("filename, num_classes", [("model.safetensors", 0), ("pytorch_model.bin", 10)])
def test_timm_format(tmp_path, filename, num_classes):
    torch.manual_seed(1)
    src = timm.create_model("vit_base_patch16_224", num_classes=num_classes, **PUBLIC)  # a head is dropped on load
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    snapshot = tmp_path / "models--timm--vit_base_patch16_224.mae" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file(state, snapshot / filename)
    else:
        torch.save(state, snapshot / filename)
    enc = load_encoder("mae", weights=f"timm:vit_base_patch16_224.mae@{snapshot}", **PUBLIC)
    assert enc.input_size == 224 and enc.grid_size == (14, 14)
    assert tuple(enc.config["mean"]) == IMAGENET_MEAN and tuple(enc.config["std"]) == IMAGENET_STD
    for key, value in enc.vit.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    x = enc.preprocess(images(2, 100))
    ref = _timm_reference(snapshot / filename, num_classes=num_classes).forward_features(x)
    feats = enc(x)
    torch.testing.assert_close(feats.tokens, ref[:, 1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats.global_token, ref[:, 0], atol=1e-5, rtol=1e-5)
    # another input size resamples the position embedding as timm does
    spec = f"timm:vit_base_patch16_224.mae@{snapshot / filename}"  # the file itself, not its directory
    small = load_encoder("mae", weights=spec, input_size=112, **PUBLIC)
    x = small.preprocess(images(2, 100))
    ref = _timm_reference(snapshot / filename, num_classes=num_classes, img_size=112).forward_features(x)
    torch.testing.assert_close(small(x).tokens, ref[:, 1:], atol=1e-4, rtol=1e-4)


def _fb_mae_state(src: torch.nn.Module) -> dict[str, torch.Tensor]:
    """facebookresearch/mae ``MaskedAutoencoderViT`` key layout: timm encoder names + decoder keys."""
    state = {k: v.clone() for k, v in src.state_dict().items() if not k.startswith("head")}
    state.update({"mask_token": torch.randn(1, 1, 64), "decoder_embed.weight": torch.randn(64, 192),
                  "decoder_embed.bias": torch.zeros(64), "decoder_pos_embed": torch.randn(1, 17, 64),
                  "decoder_blocks.0.norm1.weight": torch.ones(64), "decoder_norm.weight": torch.ones(64),
                  "decoder_pred.weight": torch.randn(768, 64), "decoder_pred.bias": torch.zeros(768)})
    return state


def test_mae_pth_format(tmp_path):
    torch.manual_seed(2)
    src = timm.create_model("vit_base_patch16_224", img_size=64, num_classes=0, global_pool="", **PUBLIC).eval()
    state = _fb_mae_state(src)
    torch.save({"model": state, "epoch": 799}, tmp_path / "mae_pretrain_vit_tiny.pth")
    enc = build_encoder("mae", weights=f"mae_pth:{tmp_path / 'mae_pretrain_vit_tiny.pth'}")
    assert (enc.input_size, enc.grid_size, enc.feature_dim, len(enc.vit.blocks)) == (64, (4, 4), 192, 2)
    assert enc.vit.blocks[0].attn.num_heads == 3 and tuple(enc.config["mean"]) == IMAGENET_MEAN
    for key, value in enc.vit.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    x = enc.preprocess(images(2, 64))
    with torch.no_grad():
        ref = src.forward_features(x)
    torch.testing.assert_close(enc.encode(x).tokens, ref[:, 1:], atol=1e-5, rtol=1e-5)


def test_mismatched_weights_name_the_keys(tmp_path):
    src = timm.create_model("vit_base_patch16_224", num_classes=0, **PUBLIC)
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    state["blocks.0.attn.qkv_renamed.weight"] = state.pop("blocks.0.attn.qkv.weight")
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(10, 192)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(WeightsMismatchError) as err:
        load_encoder("mae", weights=f"timm:vit_base_patch16_224.mae@{tmp_path}", **PUBLIC)
    for key in ("blocks.0.attn.qkv.weight", "blocks.0.attn.qkv_renamed.weight", "blocks.1.mlp.fc1.weight"):
        assert key in str(err.value)
    fb = _fb_mae_state(timm.create_model("vit_base_patch16_224", img_size=64, num_classes=0, **PUBLIC))
    fb["norm.bias"] = torch.zeros(7)
    torch.save({"model": fb}, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match=r"norm\.bias"):
        load_encoder("mae", weights=f"mae_pth:{tmp_path / 'bad.pth'}")


def test_missing_files_and_bad_specs(tmp_path):
    for spec in (f"timm:vit_base_patch16_224.mae@{tmp_path}/nope.safetensors", f"mae_pth:{tmp_path}/nope.pth",
                 f"{tmp_path}/nope.pt"):
        with pytest.raises(FileNotFoundError, match="nope"):
            build_encoder("mae", weights=spec)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        build_encoder("mae", weights=f"timm:vit_base_patch16_224.mae@{tmp_path}")  # directory without weights
    with pytest.raises(ValueError, match="unknown MAE weights format"):
        build_encoder("mae", weights="hub:facebook/vit-mae-base")
    with pytest.raises(ValueError, match="timm:<timm model name>"):
        build_encoder("mae", weights="timm:@x.bin")
    with pytest.raises(ValueError, match="timm has no model named"):
        build_encoder("mae", weights="timm:no_such_model")
    with pytest.raises(ValueError, match="no pretrained weights named"):
        build_encoder("mae", weights="timm:vit_base_patch16_224.no_such_tag")


# ------------------------------------------------------------------------------------------ objective
def test_objective_encodes_visible_patches_only(frames):
    torch.manual_seed(0)
    obj = make_objective(build_encoder("mae", **TINY), mask_ratio=0.75, decoder_dim=32, decoder_depth=1,
                         decoder_heads=2)
    x = obj.prepare(frames.batch(np.arange(3))["images"])
    keep, masked, restore = obj.random_mask(3, x.device)
    assert keep.shape == (3, 4) and masked.sum(dim=1).tolist() == [12.0] * 3
    assert obj.encode_visible(x, keep, {}).shape == (3, 1 + 4, 64)
    assert torch.equal(masked.gather(1, keep), torch.zeros(3, 4))
    assert not obj.encoder.vit.pos_embed.requires_grad


def test_objective_options(frames):
    batch = frames.batch(np.arange(0, 40, 5))
    base = make_objective(build_encoder("mae", **TINY), foreground_weight=2.0, visible_loss_weight=0.5,
                          norm_pix_loss=False)
    loss, logs = base.loss(batch)
    assert torch.isfinite(loss) and set(logs) == {"loss_masked", "loss_visible"}
    torch.testing.assert_close(loss.item(), logs["loss_masked"] + 0.5 * logs["loss_visible"], rtol=1e-5, atol=1e-6)
    pixels, _ = base.targets(base.prepare(batch["images"]))
    w = base.patch_weights(pixels)
    assert w.shape == (8, 16) and (w >= 1).all() and (w.max(dim=1).values > 1.5).all()
    with pytest.raises(ValueError, match="mask_ratio"):
        make_objective(build_encoder("mae", **TINY), mask_ratio=1.0)


def test_next_frame_objective_uses_the_action(frames):
    torch.manual_seed(0)
    batch = frames.batch(np.arange(0, 40, 5))
    obj = make_objective(build_encoder("mae", **TINY), decoder_dim=32, decoder_depth=1, decoder_heads=2,
                         next_frame_weight=0.5)
    loss, logs = obj.loss(batch)
    assert set(logs) == {"loss_masked", "loss_visible", "loss_next"} and torch.isfinite(loss)
    # the action reaches the loss: gradients flow into the action embedding, and changing it changes the loss
    loss.backward()
    assert obj.decoder.action_embed.weight.grad.abs().sum() > 0
    torch.manual_seed(1)
    a = obj.loss(batch)[1]["loss_next"]
    torch.manual_seed(1)
    b = obj.loss({**batch, "actions": -batch["actions"]})[1]["loss_next"]
    assert a != b
    with pytest.raises(ValueError, match="next_frame_weight"):
        make_objective(build_encoder("mae", **TINY), next_frame_weight=-1.0)


def test_pretraining_reduces_the_loss(frames, tmp_path):
    torch.manual_seed(0)
    obj = make_objective(build_encoder("mae", **TINY), decoder_dim=64, decoder_depth=1, decoder_heads=2)
    out = pretrain(obj, frames, batch_size=16, lr=2e-3, warmup_steps=5, max_steps=40, log_every=5, progress=False)
    curve = [row["loss"] for row in out["loss_curve"]]
    assert out["steps"] == 40 and curve[-1] < 0.5 * curve[0] and out["final_loss"] < 0.5 * curve[0]
    save_checkpoint(obj.encoder, tmp_path / "pre.pt")
    again = load_encoder(str(tmp_path / "pre.pt"))
    assert again.family == "mae" and not any(p.requires_grad for p in again.parameters())


def test_time_budgeted_pretraining_is_reproduced_bitwise_by_its_step_counts(frames):
    """A wall-clock run's (steps, schedule_steps) re-make its weights exactly (robrep pretrain's meta["reproduce"])."""
    def run(**kw) -> tuple[dict, dict]:
        torch.manual_seed(0)
        obj = make_objective(build_encoder("mae", **TINY), decoder_dim=64, decoder_depth=1, decoder_heads=2)
        out = pretrain(obj, frames, batch_size=8, warmup_steps=2, log_every=1, progress=False, **kw)
        return out, obj.encoder.state_dict()

    timed, weights = run(budget_minutes=0.03)
    assert timed["steps"] > 2 and timed["schedule_steps"] >= 3
    again, weights_again = run(max_steps=timed["steps"], schedule_steps=timed["schedule_steps"])
    assert again["steps"] == timed["steps"]
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    other, weights_other = run(max_steps=timed["steps"], schedule_steps=timed["schedule_steps"] + 50)
    assert not all(torch.equal(weights[k], weights_other[k]) for k in weights)  # the schedule length matters


def test_a_resumed_pretraining_run_equals_one_uninterrupted_run(frames):
    """Stopped at step 6 of a 12-step schedule and resumed from its state, the weights are those of one 12-step run;
    grown past the schedule's end, a warm-restart segment covers the added steps; FLOPs are counted per step."""
    def objective():
        torch.manual_seed(0)
        return make_objective(build_encoder("mae", **TINY), decoder_dim=64, decoder_depth=1, decoder_heads=2)

    kw = dict(batch_size=8, warmup_steps=2, log_every=1, progress=False, schedule_steps=12)
    whole = objective()
    one = pretrain(whole, frames, max_steps=12, **kw)
    part = objective()
    first = pretrain(part, frames, max_steps=6, **kw)
    resumed = objective()  # fresh weights: the state brings them back
    second = pretrain(resumed, frames, max_steps=12, state=first["state"], **kw)
    assert second["steps"] == 12 and [r["step"] for r in second["loss_curve"]] == list(range(1, 13))
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert one["flops_per_step"] > 0 and second["flops"] == 12 * second["flops_per_step"] == one["flops"]
    grown = pretrain(resumed, frames, max_steps=16, state=second["state"], **{**kw, "schedule_steps": None})
    assert grown["steps"] == 16 and [s["start"] for s in grown["schedule"]] == [0, 12]
    assert grown["schedule"][-1]["end"] == 16 and grown["seconds_total"] > second["seconds_total"]
    with pytest.raises(ValueError, match="larger step budget"):
        pretrain(objective(), frames, max_steps=16, state=grown["state"], **kw)


def test_bfloat16_pretraining_learns_keeps_float32_state_and_resumes_only_in_bfloat16(frames):
    """precision="bfloat16" autocasts the forward pass (the loss still falls; weights and moments stay float32); the
    state records it and a resume in another precision is refused rather than mixing arithmetics."""
    torch.manual_seed(0)
    obj = make_objective(build_encoder("mae", **TINY), decoder_dim=64, decoder_depth=1, decoder_heads=2)
    kw = dict(batch_size=16, lr=2e-3, warmup_steps=5, log_every=5, progress=False, precision="bfloat16")
    out = pretrain(obj, frames, max_steps=30, schedule_steps=40, **kw)
    curve = [row["loss"] for row in out["loss_curve"]]
    assert out["state"]["precision"] == "bfloat16" and curve[-1] < 0.7 * curve[0]
    assert all(p.dtype == torch.float32 for p in obj.parameters())
    with pytest.raises(ValueError, match="mix arithmetics"):
        pretrain(obj, frames, max_steps=40, state=out["state"], **{**kw, "precision": "float32"})
    assert pretrain(obj, frames, max_steps=40, state=out["state"], **kw)["steps"] == 40
    with pytest.raises(ValueError, match="precision"):
        pretrain(obj, frames, max_steps=5, **{**kw, "precision": "auto"})  # resolve "auto" first


def test_pretraining_batches_shift_a_frame_and_its_next_frame_together(frames):
    index = np.arange(0, len(frames), max(1, len(frames) // 6))
    plain = frames.batch(index)
    assert torch.equal(plain["images"], torch.from_numpy(frames.images[index]))
    moved = frames.batch(index, shift_pad=3, rng=np.random.default_rng(0))
    assert moved["images"].shape == plain["images"].shape and moved["images"].dtype == torch.uint8
    assert not torch.equal(moved["images"], plain["images"])
    pad = lambda x: np.pad(x, ((3, 3), (3, 3), (0, 0)), mode="edge")  # noqa: E731
    h, w = frames.images.shape[1:3]
    for b in range(len(index)):
        image, nxt = pad(plain["images"][b].numpy()), pad(plain["next_images"][b].numpy())
        offsets = [(dy, dx) for dy in range(7) for dx in range(7)
                   if np.array_equal(image[dy:dy + h, dx:dx + w], moved["images"][b].numpy())]
        assert offsets, "each image is a translate of the recorded one within ±3 px"
        assert any(np.array_equal(nxt[dy:dy + h, dx:dx + w], moved["next_images"][b].numpy()) for dy, dx in offsets)
    with pytest.raises(ValueError, match="rng"):
        frames.batch(index, shift_pad=3)


def fake_hub_cache(root, repo_id: str, files: dict) -> None:
    """A Hugging Face cache entry as huggingface_hub leaves it: snapshots/<rev>/<file> + refs/main."""
    folder = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd")
    for name, write in files.items():
        write(snapshot / name)


def test_public_weights_by_name_come_from_the_local_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from robrep.encoders.hub import WeightsNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as err:  # offline and not cached: the message says where it goes
        load_encoder("mae", weights="timm:vit_base_patch16_224.mae", **PUBLIC)
    assert str(tmp_path / "models--timm--vit_base_patch16_224.mae") in str(err.value) and "model.safetensors" in str(err.value)
    torch.manual_seed(2)
    state = {k: v.contiguous() for k, v in timm.create_model("vit_base_patch16_224", num_classes=0, **PUBLIC)
             .state_dict().items()}
    fake_hub_cache(tmp_path, "timm/vit_base_patch16_224.mae", {"model.safetensors": lambda p: save_file(state, p)})
    for spec in ("timm:vit_base_patch16_224.mae", "hf-hub:timm/vit_base_patch16_224.mae"):
        enc = load_encoder("mae", weights=spec, **PUBLIC)
        assert enc.input_size == 224
        for key, value in enc.vit.state_dict().items():
            torch.testing.assert_close(value, state[key], rtol=0, atol=0)
