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
copies or camera gives a new file; nothing is invalidated by age. Opening a cache with an encoder whose identity
differs from the recorded one is an error.

While encoding, every finished demo is its own file in ``.<name>.parts/`` (written atomically; one encoding at a
time holds that folder's lock, a second one at the same time writes a private temp file as before), so an encoding
stopped in any way (Ctrl-C, SIGKILL, a session's end) resumes demo by demo; the demos are merged into the cache file
when all are there.

Partial caches: ``compute_features(..., demos=[...])`` encodes only the demos named (a data-efficiency stage at
N = 10 trains and validates on a few dozen of a 500-demo file) and returns the parts folder, which
:class:`FeatureCache` reads like the merged file (``meta.json`` in it holds the attributes the merged file will
have); later calls add demos to the same folder, and the one that completes the file merges it.

Shifted copies (augmentation for frozen features, as DrQ's random shift for a CNN): copy ``c`` of frame
``t`` encodes the image translated by a whole-pixel offset in [-shift_pad, shift_pad]² (border replicated),
drawn from a generator seeded by (``c``, the demo's index), so a cache is reproducible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import torch
from tqdm import tqdm

from robrep import results
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
    demos: Sequence[str] | None = None,
    wait_s: float = 2.0,
) -> Path:
    """Encode every frame ``obs/<obs_keys.image>`` (default ``image``) of ``dataset`` with the frozen ``encoder``
    once (and, with ``shifts = C > 0``, C randomly shifted copies of it, ±``shift_pad`` px); returns the cache path
    (reused as is when a complete cache with the same key exists). Language-conditioned encoders get each demo's
    instruction when ``use_language``. A demo file without that image key raises
    :class:`robrep.data.demo_file.DemoFileError` naming the keys it has.
    ``dataset`` is a demo file or ``lerobot:<dir>`` (:func:`robrep.data.sources.resolve_dataset`).
    Encoding stopped midway (Ctrl-C, a kill, a session's end) continues where it stopped on the next call: finished
    demos wait in ``.<name>.parts/`` (:func:`partial_dir`) and are merged into the cache when all are there.
    ``demos``: encode only these demos (names in the file) and return the parts folder, a partial cache that
    :class:`FeatureCache` opens (or the merged file, once every demo of the file is encoded); while another process
    encodes into the same folder, this one waits for it (polling every ``wait_s`` s) instead of writing a copy."""
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
    if _complete(out, encoder):
        return out
    job = _Encoding(encoder, dataset, encoder_name, image_key, batch_size, use_language, progress, shifts, shift_pad,
                    obs_keys)
    meta = {"key": key, "encoder_name": encoder_name, "dataset_hash": dataset_hash, "dataset_path": str(dataset),
            "image_key": image_key, "shifts": int(shifts), "shift_pad": int(shift_pad)}
    parts = partial_dir(out)
    if demos is not None:
        return _encode_some(job, parts, out, meta, list(demos), wait_s)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(parts, f"encoding features into {out}", directory=True))
        except LockedError:  # another process is encoding the same cache: write a private copy, as before resumption
            with results.atomic_path(out) as tmp:
                job.write_all(tmp, meta)
            return out
        if not _complete(out, encoder):  # (another process may have finished it since the first look)
            job.resume(parts, out, meta)
    return out


def _encode_some(job: "_Encoding", parts: Path, out: Path, meta: dict[str, Any], wanted: list[str],
                 wait_s: float) -> Path:
    """``wanted`` demos encoded into ``parts`` (under its lock, waiting while another process holds it); the merged
    file when that completed it, else ``parts``."""
    while True:
        if _complete(out, job.encoder):
            return out
        if _has_parts(parts, wanted, job.encoder):
            return parts
        try:
            with exclusive_lock(parts, f"encoding features into {out}", directory=True):
                if _complete(out, job.encoder):
                    return out
                return out if job.resume(parts, out, meta, only=wanted) else parts
        except LockedError:
            time.sleep(wait_s)


def _has_parts(parts: Path, wanted: Sequence[str], encoder: Encoder) -> bool:
    """Whether the partial cache ``parts`` holds every demo of ``wanted``, made by ``encoder``."""
    if not (parts / META_NAME).is_file() or not all((parts / f"{n}.h5").is_file() for n in wanted):
        return False
    try:
        FeatureCache(parts, encoder).close()
        return True
    except ValueError:
        return False


def _complete(out: Path, encoder: Encoder) -> bool:
    """Whether ``out`` is a complete cache made by ``encoder`` (an incomplete or damaged one is recomputed)."""
    if not out.exists():
        return False
    try:
        FeatureCache(out, encoder).close()
        return True
    except ValueError:
        return False


def partial_dir(out: Path) -> Path:
    """Where a stopped encoding of cache ``out`` keeps its finished demos: ``.<name>.parts/<demo>.h5`` (with
    ``meta.json``, the attributes the merged file will have: a partial cache :class:`FeatureCache` opens)."""
    return out.with_name(f".{out.name}.parts")


def merged_path(parts: Path) -> Path:
    """The cache file a parts folder (:func:`partial_dir`) is merged into."""
    return parts.with_name(parts.name.removeprefix(".").removesuffix(".parts"))


META_NAME = "meta.json"  # a partial cache's attributes (those of the merged file but ``seconds`` and ``complete``)


class _Encoding:
    """Encode a demo file's frames with a frozen encoder, demo by demo: into one file (:meth:`write_all`), or
    resumably, each demo its own file written atomically, merged into the cache when all are there
    (:meth:`resume`)."""

    def __init__(self, encoder: Encoder, dataset: Path, encoder_name: str, image_key: str, batch_size: int,
                 use_language: bool, progress: bool, shifts: int, shift_pad: int, obs_keys: ObsKeys | None) -> None:
        self.encoder, self.dataset, self.encoder_name, self.image_key = encoder, dataset, encoder_name, image_key
        self.batch_size, self.use_language, self.progress = batch_size, use_language, progress
        self.shifts, self.shift_pad, self.obs_keys = shifts, shift_pad, obs_keys or ObsKeys()

    def demos(self, skip: set[str] = frozenset(), only: Sequence[str] | None = None
              ) -> Iterator[tuple[str, list[SpatialFeatures], float]]:
        """``(name, views, seconds)`` per demo not in ``skip`` (and in ``only``, when given; KeyError names demos
        the file lacks): view 0 the images as recorded, then the shifted copies."""
        with DemoFile(self.dataset) as demos:
            demos.require_obs_keys(self.obs_keys, proprio=False, purpose=f"encoding with {self.encoder_name}")
            names = demos.demo_names()
            if only is not None:
                wanted = set(only)
                unknown = sorted(wanted - set(names))
                if unknown:
                    raise KeyError(f"{self.dataset} has no demos {unknown[:5]} ({len(unknown)} asked for are not "
                                   f"in it)")
                names = [n for n in names if n in wanted]
            todo = [n for n in names if n not in skip]
            try:
                for name in tqdm(todo, disable=not self.progress, desc=f"features {self.encoder_name}", unit="demo",
                                 initial=len(names) - len(todo), total=len(names)):
                    t0 = time.perf_counter()
                    episode = demos.episode(name)
                    if self.use_language:
                        meta = episode["attrs"].get("ep_meta", "{}")
                        meta = json.loads(meta) if isinstance(meta, str) else meta
                        self.encoder.language = meta.get("instruction")
                    images = episode["obs"][self.image_key]
                    index = int(name.rsplit("_", 1)[-1])
                    views = [images] + [shift_images(images, self.shift_pad, np.random.default_rng([c, index]))
                                        for c in range(self.shifts)]
                    feats = [self.encoder.encode_images(v, batch_size=self.batch_size) for v in views]
                    yield name, feats, time.perf_counter() - t0
            finally:
                self.encoder.language = None

    def attributes(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The cache's attributes but ``seconds`` and ``complete`` (a partial cache's ``meta.json``)."""
        return {**meta, "encoder": json.dumps(self.encoder.identity(), sort_keys=True, default=str),
                "grid": list(self.encoder.grid_size),
                "preprocessing": json.dumps(preprocessing_of(self.encoder, self.use_language), sort_keys=True)}

    def finish(self, f: h5py.File, meta: dict[str, Any], seconds: float) -> None:
        f.attrs.update({**self.attributes(meta), "seconds": seconds, "complete": True})

    def write_all(self, path: Path, meta: dict[str, Any]) -> None:
        with h5py.File(path, "w") as f:
            group, seconds = f.create_group("features"), 0.0
            for name, views, spent in self.demos():
                write_demo(group, name, views, self.shifts)
                seconds += spent
            self.finish(f, meta, seconds)

    def resume(self, parts: Path, out: Path, meta: dict[str, Any], only: Sequence[str] | None = None) -> bool:
        """Encode the demos ``parts`` lacks (of ``only``, when given), one file each (``<demo>.h5``, renamed into
        place when written, so a kill at any moment leaves only whole demos); when the file's every demo is there,
        merge them into ``out``, delete ``parts`` and return True (False: ``parts`` stays a partial cache)."""
        results.remove_stale_temps(parts)  # a demo file a killed run was writing
        attributes = json.dumps(self.attributes(meta), sort_keys=True, default=str)
        if not (parts / META_NAME).is_file() or (parts / META_NAME).read_text() != attributes:
            with results.atomic_path(parts / META_NAME) as tmp:
                tmp.write_text(attributes)
        done = {p.stem for p in parts.glob("demo_*.h5")}
        for name, views, spent in self.demos(skip=done, only=only):
            with results.atomic_path(parts / f"{name}.h5") as tmp, h5py.File(tmp, "w") as f:
                write_demo(f, name, views, self.shifts)
                f.attrs["seconds"] = spent
        with DemoFile(self.dataset) as demos:
            names = demos.demo_names()
        if not all((parts / f"{name}.h5").is_file() for name in names):
            return False
        with results.atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            group, seconds = f.create_group("features"), 0.0
            for name in names:
                with h5py.File(parts / f"{name}.h5", "r") as part:
                    part.copy(part[name], group, name=name)  # chunks and dtype as written
                    seconds += float(part.attrs["seconds"])
            self.finish(f, meta, seconds)
        shutil.rmtree(parts, ignore_errors=True)
        return True


def write_demo(group: h5py.Group, name: str, views: list[SpatialFeatures], copies: int) -> None:
    """One demo's features under ``group[name]``: view 0 as ``tokens``/``global_token``, the shifted copies after."""
    g = group.create_group(name)
    for label, feats in zip(["", *["shifted_"] * copies], views):
        write_features(g, label, feats, copies)


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
    """Read a feature cache: the merged file, or a partial cache (the parts folder :func:`compute_features` returns
    for ``demos=[...]``: the demos encoded so far). With ``encoder`` given, refuse a cache made by different
    weights."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder | None = None, weights_hash: str | None = None):
        self.path = Path(path)
        self._parts: dict[str, h5py.File] = {}  # a partial cache's demo files opened so far
        self._f: h5py.File | None = None
        if self.path.is_dir():
            attrs = self._partial_attributes()
        else:
            if not self.path.is_file():
                raise FileNotFoundError(f"feature cache not found: {self.path}")
            try:
                self._f = h5py.File(self.path, "r")
            except OSError as exc:
                raise ValueError(f"{self.path} is not a readable feature cache ({exc})") from exc
            if not self._f.attrs.get("complete", False) or "features" not in self._f:
                self._f.close()
                raise ValueError(f"{self.path} is an incomplete feature cache (interrupted write?)")
            attrs = self._f.attrs
        self.identity = json.loads(attrs["encoder"])
        expected = weights_hash or (encoder.weights_hash() if encoder is not None else None)
        if expected is not None and expected != self.identity["weights_hash"]:
            self.close()
            raise ValueError(f"{self.path} was made by encoder weights {self.identity['weights_hash']} "
                             f"({self.identity['family']}), not {expected}: recompute the features")
        self.grid = tuple(int(v) for v in attrs["grid"])
        self.dataset_hash = str(attrs["dataset_hash"])
        self.shifts = int(attrs.get("shifts", 0))  # shifted copies per frame (views 1 … shifts)

    def _partial_attributes(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / META_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path} is not a partial feature cache (no readable {META_NAME}: {exc})") from exc

    @property
    def partial(self) -> bool:
        """Whether this is a partial cache (some of the file's demos)."""
        return self._f is None

    @property
    def demo_names(self) -> list[str]:
        names = self._f["features"] if self._f is not None else [p.stem for p in self.path.glob("demo_*.h5")]
        return sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1]))

    def _group(self, name: str) -> h5py.Group:
        if self._f is not None:
            if name not in self._f["features"]:
                raise KeyError(f"demo {name!r} is not in feature cache {self.path}")
            return self._f["features"][name]
        if name not in self._parts:
            try:
                self._parts[name] = h5py.File(self.path / f"{name}.h5", "r")
            except FileNotFoundError:
                merged = merged_path(self.path)
                if merged.is_file():  # merged (and the folder deleted) by another process since this one opened it
                    self._f = h5py.File(merged, "r")
                    return self._group(name)
                raise KeyError(f"demo {name!r} is not in partial feature cache {self.path}: encode it with "
                               f"compute_features(..., demos=[...])") from None
        return self._parts[name][name]

    def features(self, name: str, dtype: torch.dtype = torch.float32, view: int = 0) -> SpatialFeatures:
        """Features of every frame of demo ``name``: tokens ``(T, N, D)``, global ``(T, D)`` or None;
        ``view`` 0 = the images as recorded, 1 … ``shifts`` = a shifted copy."""
        g = self._group(name)
        if not 0 <= view <= self.shifts:
            raise ValueError(f"view {view} not in {self.path}: it holds views 0 … {self.shifts}")
        prefix, at = ("", ()) if view == 0 else ("shifted_", (view - 1,))
        tokens = torch.from_numpy(g[prefix + "tokens"][at]).to(dtype)
        glob = torch.from_numpy(g[prefix + "global_token"][at]).to(dtype) if prefix + "global_token" in g else None
        return SpatialFeatures(tokens, self.grid, glob)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        for f in self._parts.values():
            f.close()
        self._parts.clear()

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
