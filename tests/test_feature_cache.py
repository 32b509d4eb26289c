"""Feature cache: computed once, keyed by weights + preprocessing + dataset, refuses other encoders."""

import h5py
import pytest
import torch

from robrep.collect import collect_demos
from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.encoders.vit import ViTEncoder


def tiny_vit(seed: int) -> ViTEncoder:
    torch.manual_seed(seed)
    return ViTEncoder(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2).freeze()


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "reach.hdf5"
    collect_demos("reach", 3, path, image_size=32, subset_sizes=(), subset_seeds=(), progress=False)
    return path


def test_cache_shapes_and_dtype(demos, tmp_path):
    enc = tiny_vit(0)
    path = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
    with FeatureCache(path, enc) as cache, h5py.File(demos) as f:
        assert len(cache.demo_names) == 3 and cache.grid == (4, 4)
        for name in cache.demo_names:
            feats = cache.features(name)
            assert feats.tokens.shape == (f[f"data/{name}"].attrs["num_samples"], 16, 32)
            assert feats.global_token.shape == (feats.tokens.shape[0], 32)
    with h5py.File(path) as raw:
        assert raw["features/demo_0/tokens"].dtype.name == "float16"
    # the cached features are the encoder's (to float16 precision)
    with FeatureCache(path, enc) as cache, h5py.File(demos) as f:
        direct = enc.encode_images(f["data/demo_0/obs/image"][()]).tokens
        torch.testing.assert_close(cache.features("demo_0").tokens, direct, atol=2e-2, rtol=1e-2)


def test_cache_is_reused_and_keyed(demos, tmp_path):
    enc = tiny_vit(0)
    first = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
    mtime = first.stat().st_mtime_ns
    again = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
    assert again == first and again.stat().st_mtime_ns == mtime
    other = compute_features(tiny_vit(1), demos, tmp_path, encoder_name="tiny", progress=False)
    assert other != first


def test_cache_refuses_a_different_encoder(demos, tmp_path):
    path = compute_features(tiny_vit(0), demos, tmp_path, encoder_name="tiny", progress=False)
    with pytest.raises(ValueError, match="was made by encoder weights"):
        FeatureCache(path, tiny_vit(1))


def test_incomplete_cache_is_an_error(demos, tmp_path):
    path = compute_features(tiny_vit(0), demos, tmp_path, encoder_name="tiny", progress=False)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete"):
        FeatureCache(path)
    with pytest.raises(FileNotFoundError):
        FeatureCache(tmp_path / "missing.hdf5")
