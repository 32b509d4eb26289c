"""DINOv2, R3M and VC-1: each loads a checkpoint written here in its original release format (and, for DINOv2, from a
fake local Hugging Face cache by name) and reproduces the reference network's features."""

import numpy as np
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from robrep.encoders import load_encoder, save_checkpoint


def images(b=2, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, size, size, 3), dtype=np.uint8)


SMALL_DINO = dict(timm_model="vit_small_patch14_reg4_dinov2", depth=2, input_size=56)


def dino_reference(seed=0):
    torch.manual_seed(seed)
    return timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56,
                             depth=2).eval()


def test_dinov2_original_release_layout(tmp_path):
    """facebookresearch/dinov2 keys: register_tokens, mask_token, the class token's position inside pos_embed."""
    ref = dino_reference()
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    original = {k: v for k, v in sd.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    original["register_tokens"] = sd["reg_token"]
    original["pos_embed"] = torch.cat([torch.randn(1, 1, 384) * 0.02, sd["pos_embed"]], dim=1)
    original["cls_token"] = sd["cls_token"] - original["pos_embed"][:, :1]  # timm folds pos_embed[0] into it
    original["mask_token"] = torch.zeros(1, 384)
    torch.save(original, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    enc = load_encoder("dinov2", weights=f"dinov2_pth:{tmp_path / 'dinov2_vits14_reg4_pretrain.pth'}", **SMALL_DINO)
    assert enc.grid_size == (4, 4) and enc.num_prefix_tokens == 5 and enc.feature_dim == 384
    x = enc.preprocess(images())
    with torch.no_grad():
        out = ref.forward_features(x)
    feats = enc(x)
    torch.testing.assert_close(feats.tokens, out[:, 5:], atol=1e-5, rtol=1e-5)  # registers dropped
    torch.testing.assert_close(feats.global_token, out[:, 0], atol=1e-5, rtol=1e-5)
    save_checkpoint(enc, tmp_path / "dino.pt")
    assert torch.equal(load_encoder(str(tmp_path / "dino.pt"))(x).tokens, feats.tokens)


def test_dinov2_by_name_from_the_local_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ref = dino_reference(1)
    snap = tmp_path / "models--timm--vit_small_patch14_reg4_dinov2.lvd142m" / "snapshots" / "r1"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, snap / "model.safetensors")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("r1")
    enc = load_encoder("dinov2", weights="timm:vit_small_patch14_reg4_dinov2.lvd142m", depth=2, input_size=56)
    x = enc.preprocess(images())
    with torch.no_grad():
        torch.testing.assert_close(enc(x).tokens, ref.forward_features(x)[:, 5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth", [18, 50])
def test_r3m_release_layout(tmp_path, depth):
    """R3M's model.pt: {'r3m': DataParallel state dict}: module.convnet.* (fc = Identity) + the language head."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    net.fc = torch.nn.Identity()
    sd = {f"module.convnet.{k}": v for k, v in net.state_dict().items()}
    sd["module.lang_enc.weight"] = torch.zeros(3)  # dropped on load
    sd["module.lang_rew.0.weight"] = torch.zeros(3)
    torch.save({"r3m": sd}, tmp_path / "model.pt")
    enc = load_encoder("r3m", weights=f"r3m:{tmp_path / 'model.pt'}", input_size=64)
    assert enc.config["depth"] == depth and enc.grid_size == (2, 2)
    x = enc.preprocess(images())
    with torch.no_grad():
        ref = torch.nn.Sequential(*list(net.children())[:-2])(x)  # up to layer4
        pooled = net(x)  # R3M's own representation: the average-pooled layer4
    feats = enc(x)
    assert feats.tokens.shape == (2, 4, 512 if depth < 50 else 2048)
    torch.testing.assert_close(feats.tokens, ref.flatten(2).transpose(1, 2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats.global_token, pooled, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="not an R3M checkpoint"):
        torch.save({"model": {}}, tmp_path / "bad.pt")
        load_encoder("r3m", weights=f"r3m:{tmp_path / 'bad.pt'}")


def test_vc1_release_layout(tmp_path):
    """eai-vc's vc1_vitb.pth: {'model': MAE-layout state dict} with decoder keys and mask_token."""
    torch.manual_seed(0)
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, depth=1, img_size=224).eval()
    sd = {k: v.clone() for k, v in ref.state_dict().items()}
    sd.update({"mask_token": torch.zeros(1, 1, 512), "decoder_embed.weight": torch.zeros(512, 768),
               "decoder_pred.bias": torch.zeros(768)})
    torch.save({"model": sd}, tmp_path / "vc1_vitb.pth")
    enc = load_encoder("vc1", weights=f"vc1:{tmp_path / 'vc1_vitb.pth'}", input_size=224)
    assert enc.family == "vc1" and enc.grid_size == (14, 14) and enc.feature_dim == 768
    x = enc.preprocess(images(size=224))
    with torch.no_grad():
        out = ref.forward_features(x)
    torch.testing.assert_close(enc(x).tokens, out[:, 1:], atol=1e-5, rtol=1e-5)
    small = load_encoder("vc1", weights=f"vc1:{tmp_path / 'vc1_vitb.pth'}")  # default 112 px: resampled grid
    assert small.grid_size == (7, 7)
