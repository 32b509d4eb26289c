"""DIFT encoder (tiny pixel U-Net and a tiny local Stable-Diffusion-style folder) and DDPM pretraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robrep.encoders import build_encoder, list_encoders, load_encoder, save_checkpoint
from robrep.encoders.dift import DIFTEncoder

TINY = dict(input_size=32, patch_size=4, t=50, up_block=1, pool=1,
            unet=dict(block_out_channels=[16, 32, 48], norm_num_groups=8, attention_head_dim=8,
                      down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                      up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]))


def images(n: int = 3, size: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from robrep.data.collect import collect_demos
    from robrep.data.frames import FrameDataset

    path = tmp_path_factory.mktemp("dift") / "d.hdf5"
    collect_demos("push", 4, path, image_size=64, subset_sizes=(), subset_seeds=(), progress=False)
    return FrameDataset.from_files([path])


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return load_encoder("dift", **TINY)


def test_registered_and_config():
    assert "dift" in list_encoders()
    cfg = yaml.safe_load(open(Path(__file__).parents[1] / "configs/encoder/dift.yaml"))
    assert cfg["name"] == "dift" and cfg["readout"] == "spatial_softmax" and cfg["pretrain"]["budget_minutes"] == 15
    enc = build_encoder("dift", weights=cfg["weights"], **cfg["arch"])
    assert 3e6 < sum(p.numel() for p in enc.parameters()) < 6e6
    assert (enc.grid_size, enc.feature_dim, enc.t, enc.up_block, enc.pool) == ((12, 12), 96, 0, 1, 2)
    assert DIFTEncoder().config == enc.config  # the yaml spells out the class defaults
    feats = enc.eval()(enc.preprocess(images(1, 96)))
    assert feats.tokens.shape == (1, 144, 96) and feats.global_token is None


def test_forward_shapes_and_frozen(tiny):
    assert not tiny.training and all(not p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training
    x = tiny.preprocess(images())
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    feats = tiny(x)
    assert feats.tokens.shape == (3, 64, 32) and feats.grid == (8, 8) == tiny.grid_size
    assert feats.global_token is None and not feats.tokens.requires_grad
    assert tiny.output_shape() == (64, 32) and torch.isfinite(feats.tokens).all()
    blocks = tiny.encode_blocks(x, [0, 1, 2])
    assert [(b.grid, b.tokens.shape[-1]) for b in blocks.values()] == [((4, 4), 48), ((8, 8), 32), ((8, 8), 16)]
    assert torch.equal(blocks[1].tokens, feats.tokens)


def test_deterministic(tiny):
    x = tiny.preprocess(images())
    a, b = tiny(x).tokens, tiny(x).tokens
    assert torch.equal(a, b)
    torch.testing.assert_close(tiny(x[1:2]).tokens, a[1:2], atol=1e-5, rtol=1e-4)  # batch-independent noise
    rebuilt = DIFTEncoder(**tiny.config)
    rebuilt.load_state_dict(tiny.state_dict())
    # the same weights in a freshly built module: equal to float32 rounding (bitwise on AVX512 CPUs; oneDNN picks
    # other kernels for the two modules on an AMX CPU, 5e-7 apart)
    torch.testing.assert_close(rebuilt.eval()(x).tokens, a, atol=1e-6, rtol=0)


def test_runtime_options_change_features(tiny):
    x = tiny.preprocess(images())
    base = tiny(x).tokens
    assert not torch.allclose(tiny.configure(t=400)(x).tokens, base)
    assert tiny.config["t"] == 400
    tiny.configure(t=50, up_block=0)
    assert tiny(x).grid == (4, 4) and tiny.feature_dim == 48 and tiny.config["up_block"] == 0
    tiny.configure(up_block=1, ensemble=3)
    ens = tiny(x)
    assert ens.tokens.shape == base.shape and not torch.allclose(ens.tokens, base)
    assert torch.equal(tiny(x).tokens, ens.tokens)
    tiny.configure(ensemble=1, pool=2)
    assert tiny(x).grid == (4, 4) == tiny.grid_size
    tiny.configure(pool=1)
    assert torch.equal(tiny(x).tokens, base)
    for bad in (dict(t=1000), dict(t=-1), dict(up_block=3), dict(ensemble=0), dict(up_block=0, pool=3)):
        with pytest.raises(ValueError):
            tiny.configure(**bad)


def test_preprocess_errors(tiny):
    with pytest.raises(TypeError, match="uint8"):
        tiny.preprocess(images().astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        tiny.preprocess(images()[0])
    with pytest.raises(ValueError, match="shape"):
        tiny.preprocess(np.zeros((2, 32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        tiny.preprocess(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        tiny(torch.zeros(1, 3, 16, 16))


def test_checkpoint_round_trip(tiny, tmp_path):
    x = tiny.preprocess(images())
    digest = save_checkpoint(tiny, tmp_path / "dift.pt")
    loaded = load_encoder(str(tmp_path / "dift.pt"))
    assert isinstance(loaded, DIFTEncoder) and loaded.weights_hash() == digest == tiny.weights_hash()
    assert loaded.config == tiny.config and torch.equal(loaded(x).tokens, tiny(x).tokens)
    other = build_encoder("dift", weights=str(tmp_path / "dift.pt"), t=7, up_block=0, **{"input_size": 32})
    assert (other.t, other.up_block, other.grid_size) == (7, 0, (4, 4))
    with pytest.raises(ValueError, match="block_out_channels"):
        build_encoder("dift", weights=str(tmp_path / "dift.pt"), unet=dict(block_out_channels=[8, 16, 24]))
    with pytest.raises(ValueError, match="unknown DIFT weights"):
        build_encoder("dift", weights="nonsense:xyz")


def make_sd_folder(root: Path) -> Path:
    """A tiny SD-1.x-style diffusers folder, built offline (random weights)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                         attention_head_dim=8, norm_num_groups=8).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                  scaling_factor=0.5).save_pretrained(root / "vae")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(root / "scheduler")
    vocab = root / "vocab.json"
    vocab.write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (root / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(vocab), str(root / "merges.txt"), model_max_length=8).save_pretrained(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=2,
                                 pad_token_id=2)).save_pretrained(root / "text_encoder")
    return root


def test_sd_folder(tmp_path):
    folder = make_sd_folder(tmp_path / "sd")
    enc = load_encoder("dift", weights=f"sd_folder:{folder}", input_size=32, t=100, up_block=0)
    assert enc.backbone == "sd" and enc.config["source"] == f"sd_folder:{folder}"
    assert enc.prompt_embeds.shape == (1, 8, 16) and not hasattr(enc, "vae_decoder")
    x = enc.preprocess(images(2, 48))
    feats = enc(x)
    assert feats.tokens.shape == (2, 16 * 16, 32) and feats.grid == (16, 16) == enc.grid_size  # 32 px -> 16 latent
    assert not torch.allclose(enc.configure(t=600)(x).tokens, feats.tokens)
    enc.configure(t=100, up_block=1)
    assert enc(x).tokens.shape == (2, 256, 16)
    # cached empty-prompt embedding instead of text_encoder/ + tokenizer/
    cached = tmp_path / "sd_cached"
    cached.mkdir()
    for sub in ("unet", "vae", "scheduler"):
        (cached / sub).symlink_to(folder / sub)
    torch.save(enc.prompt_embeds[0].clone(), cached / "empty_prompt_embeds.pt")
    enc2 = load_encoder("dift", weights=f"sd_folder:{cached}", input_size=32, t=100, up_block=1)
    assert torch.equal(enc2(x).tokens, enc(x).tokens)
    save_checkpoint(enc2, tmp_path / "sd.pt")
    assert torch.equal(load_encoder(str(tmp_path / "sd.pt"))(x).tokens, enc(x).tokens)


def test_sd_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_encoder("dift", weights=f"sd_folder:{tmp_path / 'nowhere'}")
    (tmp_path / "partial" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="vae/"):
        load_encoder("dift", weights=f"sd_folder:{tmp_path / 'partial'}")


def test_ddpm_reduces_loss(frames):
    from robrep.pretrain.loop import pretrain
    from robrep.pretrain.objective import make_objective

    torch.manual_seed(0)
    encoder = build_encoder("dift", **TINY)
    objective = make_objective(encoder)
    batch = frames.batch(np.arange(0, len(frames), max(1, len(frames) // 16)))

    def fixed_loss() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return objective.loss(batch)[0].item()

    before = fixed_loss()
    opt = torch.optim.Adam(objective.parameters(), lr=5e-3)
    for _ in range(50):
        loss, logs = objective.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    # predicting zero scores 1.0 (unit-variance noise): the trained net must clearly beat both
    assert after < 0.8 * before and after < 0.9, (before, after)
    assert set(logs) <= {"mse", "mse_low_t"} and "mse" in logs
    summary = pretrain(objective, frames, max_steps=2, batch_size=4, warmup_steps=1, progress=False)
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    with pytest.raises(ValueError, match="max_timestep"):
        make_objective(encoder, max_timestep=0)
    with pytest.raises(ValueError, match="frozen"):
        pretrain(make_objective(load_encoder("dift", **TINY)), frames, max_steps=1, progress=False)


def test_sd_repo_id_resolves_through_the_local_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from robrep.encoders.hub import WeightsNotFoundError

    hub = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError, match=r"all of \['unet/config.json'.*models--tiny--sd/snapshots"):
        load_encoder("dift", weights="sd:tiny/sd", input_size=32)
    repo = hub / "models--tiny--sd"
    make_sd_folder(repo / "snapshots" / "feed")  # the layout huggingface_hub leaves: snapshots/<rev> + refs/main
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("feed")
    enc = load_encoder("dift", weights="sd:tiny/sd", input_size=32, t=100, up_block=0)
    ref = load_encoder("dift", weights=f"sd:{repo / 'snapshots' / 'feed'}", input_size=32, t=100, up_block=0)
    x = enc.preprocess(images(2, 32))
    assert enc.backbone == "sd" and torch.equal(enc(x).tokens, ref(x).tokens)
