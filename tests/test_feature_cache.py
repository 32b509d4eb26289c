"""Feature cache: computed once, keyed by weights + preprocessing + dataset, refuses other encoders."""

import subprocess

import h5py
import pytest
import torch

from robrep.data.collect import collect_demos
from robrep.data.feature_cache import FeatureCache, compute_features, partial_dir
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


def test_shift_images_translates_each_frame_within_the_pad():
    import numpy as np

    from robrep.data.feature_cache import shift_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 20, 24, 3), dtype=np.uint8)
    assert shift_images(images, 0, np.random.default_rng(1)) is images
    moved = shift_images(images, 3, np.random.default_rng(1))
    assert moved.shape == images.shape and moved.dtype == np.uint8
    np.testing.assert_array_equal(moved, shift_images(images, 3, np.random.default_rng(1)))  # seeded
    padded = np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
    for t in range(len(images)):  # each frame is some window of the padded frame, offset within ±3 px
        hits = [(dy, dx) for dy in range(7) for dx in range(7)
                if np.array_equal(moved[t], padded[t, dy:dy + 20, dx:dx + 24])]
        assert hits
    assert not np.array_equal(moved, images)


def test_shifted_copies_are_cached_beside_the_recorded_frames(demos, tmp_path):
    import numpy as np

    from robrep.data.feature_cache import shift_images

    enc = tiny_vit(0)
    plain = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
    path = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False, shifts=2, shift_pad=4)
    assert path != plain  # its own key: a cache without copies is never mistaken for one with them
    with FeatureCache(path, enc) as cache, FeatureCache(plain, enc) as base, h5py.File(demos) as f:
        assert cache.shifts == 2 and base.shifts == 0
        torch.testing.assert_close(cache.features("demo_1").tokens, base.features("demo_1").tokens)
        images = f["data/demo_1/obs/image"][()]
        want = enc.encode_images(shift_images(images, 4, np.random.default_rng([1, 1]))).tokens  # copy 2 of demo_1
        torch.testing.assert_close(cache.features("demo_1", view=2).tokens, want, atol=2e-2, rtol=1e-2)
        assert not torch.allclose(cache.features("demo_1", view=1).tokens, cache.features("demo_1", view=2).tokens)
        with pytest.raises(ValueError, match="holds views 0 … 2"):
            cache.features("demo_1", view=3)
    assert compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False, shifts=2, shift_pad=4) == path
    with pytest.raises(ValueError, match="must be >= 0"):
        compute_features(enc, demos, tmp_path, progress=False, shifts=-1)


def test_precision_is_part_of_the_key_only_when_not_float32(demos, tmp_path):
    from robrep.data.feature_cache import cache_key, file_hash, preprocessing_of

    enc, digest = tiny_vit(0), file_hash(demos)
    exact = cache_key(enc, digest, False)
    assert "precision" not in preprocessing_of(enc, False)
    mixed = cache_key(enc.set_precision("bfloat16"), digest, False)
    assert mixed != exact
    path = compute_features(enc, demos, tmp_path, encoder_name="tiny", use_language=False, progress=False)
    assert str(path).split(".")[-3] == mixed
    with FeatureCache(path, enc) as cache, h5py.File(demos) as f:
        direct = enc.encode_images(f["data/demo_0/obs/image"][()]).tokens
        torch.testing.assert_close(cache.features("demo_0").tokens, direct, atol=2e-2, rtol=1e-2)
    assert cache_key(enc.set_precision("float32"), digest, False) == exact


def test_an_interrupted_encoding_resumes_demo_by_demo_to_the_same_cache(demos, tmp_path, monkeypatch):
    """Ctrl-C during the third demo leaves the two finished demos in the partial folder; the next call encodes only
    the third and ends with the cache an uninterrupted run writes (shifted copies included)."""
    enc = tiny_vit(0)
    reference = compute_features(enc, demos, tmp_path / "ref", encoder_name="tiny", progress=False, shifts=1)
    calls = []
    encode = enc.encode_images

    def stopped_at_the_fifth_call(images, **kw):  # two views per demo: call 5 = demo_2's first view
        calls.append(len(images))
        if len(calls) == 5:
            raise KeyboardInterrupt
        return encode(images, **kw)

    monkeypatch.setattr(enc, "encode_images", stopped_at_the_fifth_call)
    with pytest.raises(KeyboardInterrupt):
        compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False, shifts=1)
    parts = partial_dir(tmp_path / "c" / reference.name)
    assert sorted(p.name for p in parts.glob("demo_*")) == ["demo_0.h5", "demo_1.h5"]
    assert not (tmp_path / "c" / reference.name).exists()
    calls.clear()
    path = compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False, shifts=1)
    assert len(calls) == 2 and not parts.exists() and path.name == reference.name  # demo_2's two views only
    with FeatureCache(path, enc) as got, FeatureCache(reference, enc) as want:
        assert got.demo_names == want.demo_names and got.shifts == 1
        for name in want.demo_names:
            for view in (0, 1):
                assert torch.equal(got.features(name, view=view).tokens, want.features(name, view=view).tokens)
                assert torch.equal(got.features(name, view=view).global_token,
                                   want.features(name, view=view).global_token)


def test_a_demo_a_killed_encoding_was_writing_is_encoded_again(demos, tmp_path):
    """SIGKILL mid-demo leaves a temp file of a dead process in the partial folder: it is removed, never merged."""
    enc = tiny_vit(0)
    reference = compute_features(enc, demos, tmp_path / "ref", encoder_name="tiny", progress=False)
    parts = partial_dir(tmp_path / "c" / reference.name)
    parts.mkdir(parents=True)
    dead = subprocess.Popen(["true"])  # a pid that no longer runs
    dead.wait()
    (parts / f".demo_0.tmp-{dead.pid}.h5").write_bytes(b"half an HDF5 file")
    path = compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False)
    assert not parts.exists()
    with FeatureCache(path, enc) as got, FeatureCache(reference, enc) as want:
        assert got.demo_names == want.demo_names
        assert all(torch.equal(got.features(n).tokens, want.features(n).tokens) for n in want.demo_names)


def test_a_second_encoding_of_the_same_cache_writes_its_own_copy(demos, tmp_path):
    """While one process holds the partial folder, another encoding of the same cache does not wait or collide: it
    writes a private temp file and renames it onto the cache."""
    from robrep.locks import exclusive_lock

    enc = tiny_vit(0)
    reference = compute_features(enc, demos, tmp_path / "ref", encoder_name="tiny", progress=False)
    parts = partial_dir(tmp_path / "c" / reference.name)
    with exclusive_lock(parts, "the first encoding", directory=True):
        path = compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False)
        assert [p.name for p in parts.iterdir()] == [".lock"]  # the first one's folder untouched
    with FeatureCache(path, enc) as got, FeatureCache(reference, enc) as want:
        assert all(torch.equal(got.features(n).tokens, want.features(n).tokens) for n in want.demo_names)


def test_a_partial_cache_encodes_only_the_demos_asked_for_and_merges_when_complete(demos, tmp_path, monkeypatch):
    """``demos=[...]`` encodes those demos only and returns the parts folder, read like the merged cache; a later
    call adds the rest (encoding only what is missing) and merges into the file an all-at-once encoding writes."""
    enc = tiny_vit(0)
    reference = compute_features(enc, demos, tmp_path / "ref", encoder_name="tiny", progress=False, shifts=1)
    calls = []
    encode = enc.encode_images
    monkeypatch.setattr(enc, "encode_images", lambda images, **kw: calls.append(len(images)) or encode(images, **kw))
    part = compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False, shifts=1,
                            demos=["demo_2", "demo_0"])
    assert part == partial_dir(tmp_path / "c" / reference.name) and len(calls) == 4  # two demos × two views
    with FeatureCache(part, enc) as got, FeatureCache(reference, enc) as want:
        assert got.partial and not want.partial
        assert got.demo_names == ["demo_0", "demo_2"] and got.grid == want.grid and got.shifts == 1
        assert all(torch.equal(got.features(n, view=v).tokens, want.features(n, view=v).tokens)
                   for n in got.demo_names for v in (0, 1))
        with pytest.raises(KeyError, match="demo_1"):
            got.features("demo_1")
    with pytest.raises(ValueError, match="was made by encoder weights"):
        FeatureCache(part, tiny_vit(1))
    calls.clear()
    assert compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False, shifts=1,
                            demos=["demo_0"]) == part and calls == []  # already there: nothing encoded
    path = compute_features(enc, demos, tmp_path / "c", encoder_name="tiny", progress=False, shifts=1,
                            demos=["demo_1"])
    assert path.name == reference.name and not part.exists() and len(calls) == 2  # demo_1 only, then merged
    with FeatureCache(path, enc) as got, FeatureCache(reference, enc) as want:
        assert got.demo_names == want.demo_names
        assert all(torch.equal(got.features(n, view=v).tokens, want.features(n, view=v).tokens)
                   for n in want.demo_names for v in (0, 1))
    with pytest.raises(KeyError, match="no demos"):
        compute_features(tiny_vit(2), demos, tmp_path / "c", encoder_name="tiny", progress=False, demos=["demo_9"])


def test_a_partial_cache_reader_follows_a_merge_made_after_it_opened(demos, tmp_path):
    """A reader of the parts folder whose demos another process merged (and whose folder it deleted) since it opened
    reads the merged file."""
    enc = tiny_vit(0)
    part = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False, demos=["demo_0"])
    with FeatureCache(part, enc) as got:
        path = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False)
        assert not part.exists()
        with FeatureCache(path, enc) as want:
            assert torch.equal(got.features("demo_1").tokens, want.features("demo_1").tokens)


def test_a_partial_encoding_waits_for_the_process_holding_the_folder(demos, tmp_path):
    """With ``demos``, a second encoding waits while another holds the parts folder (no private copy), then finds
    the demos there."""
    import threading

    from robrep.locks import exclusive_lock

    enc = tiny_vit(0)
    part = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False, demos=["demo_0"])
    (part / "demo_0.h5").rename(part / "held.h5")
    release = threading.Event()
    result = {}

    def second():
        result["path"] = compute_features(enc, demos, tmp_path, encoder_name="tiny", progress=False,
                                          demos=["demo_0"], wait_s=0.05)

    with exclusive_lock(part, "the first encoding", directory=True):
        t = threading.Thread(target=second)
        t.start()
        release.wait(0.3)
        assert t.is_alive() and "path" not in result  # waiting, not writing a copy
        (part / "held.h5").rename(part / "demo_0.h5")  # the first encoding finishes demo_0
    t.join(10)
    assert result["path"] == part
