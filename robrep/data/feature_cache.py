"""Frozen-feature cache: every frame of a demo file encoded once, stored float16 in HDF5.

Layout of a cache file::

    features/demo_i/tokens        float16 (T, N, D), one frame per chunk
    features/demo_i/global_token  float16 (T, D)   (only for encoders with a global token)
    features/demo_i/shifted_tokens        float16 (C, T, N, D)  (only with ``shifts = C > 0``)
    features/demo_i/shifted_global_token  float16 (C, T, D)
    attrs: key, encoder (JSON identity: family, config, weights_hash), encoder_name,
           dataset_hash, dataset_path, image_key, grid (h, w), preprocessing (JSON), shifts, shift_pad, complete

The frames are the demos' ``obs/<image_key>`` (``obs_keys.image``, :class:`robrep.data.obs_keys.ObsKeys`; robrep's
files: ``image``). The file name holds the key = hash(encoder weights hash, preprocessing, dataset content
hash[, shifts][, image key unless ``image``]), so a changed checkpoint, preprocessing, dataset, number of shifted
copies or camera gives a new file; nothing is invalidated by age. Opening a cache with an encoder whose identity differs from the recorded one is an error.

While encoding, the file is ``.<name>.partial`` (one writer at a time, by a lock; a second writer at the same
time uses a private ``.<name>.tmp-<pid>``), every finished demo marked ``done`` and flushed, so a stopped encoding
resumes demo by demo; it is renamed onto the cache name when complete.

Shifted copies (augmentation for frozen features, as DrQ's random shift for a CNN): copy ``c`` of frame
``t`` encodes the image translated by a whole-pixel offset in [-shift_pad, shift_pad]² (border replicated),
drawn from a generator seeded by (``c``, the demo's index), so a cache is reproducible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from robrep.data.augment import shift_images
from robrep.data.demo_file import DemoFile
from robrep.data.obs_keys import ObsKeys
from robrep.data.sources import resolve_dataset
from robrep.digest import file_hash
from robrep.encoders.base import Encoder, SpatialFeatures
from robrep.locks import LockedError, exclusive_lock


def preprocessing_of(encoder: Encoder, use_language: bool) -> dict[str, Any]:
    """What, besides the weights, decides the features: input size, normalisation, language use, compute
    precision (named only when not float32, so float32 caches keep their keys)."""
    return {"input_size": encoder.input_size, "mean": encoder.pixel_mean.flatten().tolist(),
            "std": encoder.pixel_std.flatten().tolist(), "language": bool(use_language),
            "dtype": str(encoder.dtype), **({} if encoder.precision == "float32" else {"precision": encoder.precision})}


def cache_key(encoder: Encoder, dataset_hash: str, use_language: bool, shifts: int = 0, shift_pad: int = 4,
              image_key: str = "image") -> str:
    parts: list[Any] = [encoder.weights_hash(), preprocessing_of(encoder, use_language), dataset_hash]
    if shifts:  # caches without shifted copies keep their old keys
        parts.append({"shifts": int(shifts), "shift_pad": int(shift_pad)})
    if image_key != "image":  # robrep's own image key keeps the old keys
        parts.append({"image_key": str(image_key)})
    payload = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_path(cache_dir: str | os.PathLike, dataset: str | os.PathLike, encoder_name: str, key: str) -> Path:
    return Path(cache_dir) / f"{Path(dataset).stem}.{encoder_name}.{key}.features.hdf5"


def compute_features(
    encoder: Encoder,
    dataset: str | os.PathLike,
    cache_dir: str | os.PathLike,
    encoder_name: str | None = None,
    batch_size: int = 64,
    use_language: bool = True,
    progress: bool = True,
    shifts: int = 0,
    shift_pad: int = 4,
    obs_keys: ObsKeys | None = None,
) -> Path:
    """Encode every frame ``obs/<obs_keys.image>`` (default ``image``) of ``dataset`` with the frozen ``encoder``
    once (and, with ``shifts = C > 0``, C randomly shifted copies of it, ±``shift_pad`` px); returns the cache path
    (reused as is when a complete cache with the same key exists). Language-conditioned encoders get each demo's
    instruction when ``use_language``. A demo file without that image key raises
    :class:`robrep.data.demo_file.DemoFileError` naming the keys it has.
    ``dataset`` is a demo file or ``lerobot:<dir>`` (:func:`robrep.data.sources.resolve_dataset`).
    Encoding stopped midway (Ctrl-C, a kill, a session's end) continues where it stopped on the next call: demos are
    flushed one by one into ``.<name>.partial`` (:func:`partial_path`), renamed onto the cache when complete."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (images per encoder call), got {batch_size}")
    if shifts < 0 or shift_pad < 0:
        raise ValueError(f"shifts and shift_pad must be >= 0, got {shifts}, {shift_pad}")
    encoder_name = encoder_name or encoder.family
    dataset = resolve_dataset(dataset)
    image_key = (obs_keys or ObsKeys()).image
    dataset_hash = file_hash(dataset)
    key = cache_key(encoder, dataset_hash, use_language, shifts, shift_pad, image_key)
    out = cache_path(cache_dir, dataset, encoder_name, key)
    if out.exists():
        try:
            FeatureCache(out, encoder).close()
            return out
        except ValueError:
            pass  # incomplete or damaged: recompute
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:  # one writer resumes the shared partial file; a second one at the same time writes a private temp file
            stack.enter_context(exclusive_lock(partial_path(out), f"encoding features into {out}"))
            tmp, resumable = partial_path(out), True
        except LockedError:
            tmp, resumable = out.with_name(f".{out.name}.tmp-{os.getpid()}"), False
        _encode_into(tmp, resumable, out, encoder, dataset, encoder_name, key, dataset_hash, image_key, batch_size,
                     use_language, progress, shifts, shift_pad, obs_keys)
    return out


def partial_path(out: Path) -> Path:
    """The resumable partial file of cache ``out``: ``.<name>.partial`` beside it, kept when encoding stops."""
    return out.with_name(f".{out.name}.partial")


def _open_partial(path: Path, key: str) -> tuple[h5py.File, float]:
    """Open the partial cache ``path`` to continue it: demos marked done stay (their last frame is read back as a
    check), a demo begun but not done is dropped. A file for another key, or unreadable (a SIGKILL mid-write), is
    started afresh. Returns the file and the encoding seconds already spent on it."""
    if path.exists():
        try:
            f = h5py.File(path, "a")
        except OSError:
            path.unlink()
        else:
            try:
                if f.attrs.get("key") != key:
                    raise ValueError("another key")
                group = f["features"]
                for name in list(group):
                    if group[name].attrs.get("done"):
                        group[name]["tokens"][-1]  # the chunk index and data of a finished demo are readable
                    else:
                        del group[name]
                return f, float(f.attrs.get("seconds", 0.0))
            except Exception:  # damaged (metadata of an interrupted write) or foreign: start again
                with contextlib.suppress(Exception):
                    f.close()
                path.unlink()
    f = h5py.File(path, "w")
    f.attrs["key"] = key
    f.create_group("features")
    return f, 0.0


def _encode_into(tmp: Path, resumable: bool, out: Path, encoder: Encoder, dataset: Path, encoder_name: str, key: str,
                 dataset_hash: str, image_key: str, batch_size: int, use_language: bool, progress: bool, shifts: int,
                 shift_pad: int, obs_keys: ObsKeys | None) -> None:
    """Encode ``dataset`` into ``tmp`` (continuing it when ``resumable``; each demo flushed when done) and rename it
    onto ``out`` when complete. A non-resumable temp file is deleted when encoding stops early."""
    start = time.perf_counter()
    try:
        f, spent = _open_partial(tmp, key) if resumable else (h5py.File(tmp, "w"), 0.0)
        with DemoFile(dataset) as demos, f:
            demos.require_obs_keys(obs_keys or ObsKeys(), proprio=False, purpose=f"encoding with {encoder_name}")
            group = f.require_group("features")
            names = [n for n in demos.demo_names() if n not in group]
            for name in tqdm(names, disable=not progress, desc=f"features {encoder_name}", unit="demo",
                             initial=len(group), total=len(group) + len(names)):
                episode = demos.episode(name)
                if use_language:
                    meta = episode["attrs"].get("ep_meta", "{}")
                    encoder.language = (json.loads(meta) if isinstance(meta, str) else meta).get("instruction")
                images = episode["obs"][image_key]
                g = group.create_group(name)
                views = [images] + [shift_images(images, shift_pad, np.random.default_rng([c, int(name.rsplit("_", 1)[-1])]))
                                    for c in range(shifts)]
                for label, view in zip(["", *["shifted_"] * shifts], views):
                    write_features(g, label, encoder.encode_images(view, batch_size=batch_size), shifts)
                g.attrs["done"] = True
                f.attrs["seconds"] = spent + time.perf_counter() - start
                f.flush()  # on disk: a kill loses at most the demo being encoded
            encoder.language = None
            f.attrs.update({
                "key": key, "encoder": json.dumps(encoder.identity(), sort_keys=True, default=str),
                "encoder_name": encoder_name, "dataset_hash": dataset_hash, "dataset_path": str(dataset),
                "image_key": image_key, "grid": list(encoder.grid_size),
                "preprocessing": json.dumps(preprocessing_of(encoder, use_language), sort_keys=True),
                "shifts": int(shifts), "shift_pad": int(shift_pad),
                "seconds": spent + time.perf_counter() - start, "complete": True,
            })
        os.replace(tmp, out)
    finally:
        if not resumable:
            Path(tmp).unlink(missing_ok=True)


def write_features(group: h5py.Group, prefix: str, feats: SpatialFeatures, copies: int) -> None:
    """Store one view's features under ``group``: ``tokens``/``global_token`` (``prefix`` ""), or append one
    copy to ``shifted_tokens`` ``(copies, T, N, D)`` / ``shifted_global_token`` (``prefix`` "shifted_")."""
    arrays = {"tokens": feats.tokens}
    if feats.global_token is not None:
        arrays["global_token"] = feats.global_token
    for key, value in arrays.items():
        data = value.float().cpu().numpy().astype(np.float16)
        if not prefix:
            group.create_dataset(key, data=data, chunks=(1, *data.shape[1:]))
            continue
        name = prefix + key
        if name not in group:
            group.create_dataset(name, shape=(copies, *data.shape), dtype=np.float16, chunks=(1, 1, *data.shape[1:]))
            group[name].attrs["filled"] = 0
        ds = group[name]
        ds[int(ds.attrs["filled"])] = data
        ds.attrs["filled"] = int(ds.attrs["filled"]) + 1


class FeatureCache:
    """Read a feature cache. With ``encoder`` given, refuse a cache made by different weights."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder | None = None, weights_hash: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature cache not found: {self.path}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path} is not a readable feature cache ({exc})") from exc
        if not self._f.attrs.get("complete", False) or "features" not in self._f:
            self._f.close()
            raise ValueError(f"{self.path} is an incomplete feature cache (interrupted write?)")
        self.identity = json.loads(self._f.attrs["encoder"])
        expected = weights_hash or (encoder.weights_hash() if encoder is not None else None)
        if expected is not None and expected != self.identity["weights_hash"]:
            self._f.close()
            raise ValueError(f"{self.path} was made by encoder weights {self.identity['weights_hash']} "
                             f"({self.identity['family']}), not {expected}: recompute the features")
        self.grid = tuple(int(v) for v in self._f.attrs["grid"])
        self.dataset_hash = str(self._f.attrs["dataset_hash"])
        self.shifts = int(self._f.attrs.get("shifts", 0))  # shifted copies per frame (views 1 … shifts)

    @property
    def demo_names(self) -> list[str]:
        return sorted(self._f["features"], key=lambda n: int(n.rsplit("_", 1)[-1]))

    def features(self, name: str, dtype: torch.dtype = torch.float32, view: int = 0) -> SpatialFeatures:
        """Features of every frame of demo ``name``: tokens ``(T, N, D)``, global ``(T, D)`` or None;
        ``view`` 0 = the images as recorded, 1 … ``shifts`` = a shifted copy."""
        if name not in self._f["features"]:
            raise KeyError(f"demo {name!r} is not in feature cache {self.path}")
        if not 0 <= view <= self.shifts:
            raise ValueError(f"view {view} not in {self.path}: it holds views 0 … {self.shifts}")
        g = self._f["features"][name]
        prefix, at = ("", ()) if view == 0 else ("shifted_", (view - 1,))
        tokens = torch.from_numpy(g[prefix + "tokens"][at]).to(dtype)
        glob = torch.from_numpy(g[prefix + "global_token"][at]).to(dtype) if prefix + "global_token" in g else None
        return SpatialFeatures(tokens, self.grid, glob)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
