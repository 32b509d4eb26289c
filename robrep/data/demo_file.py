"""Demonstration files in robomimic's HDF5 layout: an atomic writer and a validating reader.

Layout (``T`` = steps of a demo, ``S`` = MuJoCo sim-state size, ``D`` = privileged state size)::

    data                       attrs: total (int, sum of T over demos, as in robomimic),
                                      env_args (JSON str), demo_seeds (int64 (num_demos,)),
                                      complete (True, written last), plus collector extras
    data/demo_{i}              attrs: num_samples = T, seed (int), ep_meta (JSON str)
    data/demo_{i}/obs/image    uint8   (T, H, W, 3)  one frame per chunk, gzip
    data/demo_{i}/obs/proprio  float32 (T, 4)
    data/demo_{i}/obs/state    float32 (T, D)
    data/demo_{i}/actions      float32 (T, 4)
    data/demo_{i}/rewards      float32 (T,)
    data/demo_{i}/dones        uint8   (T,)         1 at the last step
    data/demo_{i}/states       float64 (T, S)       sim state *before* the action of each step
    mask/train, mask/valid, mask/train_n{N}_seed{s}  arrays of byte strings (b"demo_0", ...)

``obs[t]`` and ``states[t]`` are observed before ``actions[t]`` is applied. There is no ``next_obs``
group: robomimic's ``SequenceDataset`` must be built with ``load_next_obs=False``. Every dataset
carries a fletcher32 checksum, so damaged bytes raise on read instead of returning garbage.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: Datasets every ``data/demo_i`` group must hold (besides ``obs/<key>``).
REQUIRED_KEYS = ("actions", "rewards", "dones", "states")


class DemoFileError(ValueError):
    """A demo file is missing, unreadable, incomplete or lacks what was asked of it."""


def subset_key(n: int, seed: int) -> str:
    """The filter key of the nested data-efficiency subset of ``n`` train demos drawn with ``seed``:
    ``train_n{n}_seed{seed}`` (the one place this format is spelled out)."""
    return f"train_n{int(n)}_seed{int(seed)}"


def _demo_index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def split_masks(
    names: Sequence[str], valid_fraction: float, subset_sizes: Sequence[int], subset_seeds: Sequence[int]
) -> dict[str, list[str]]:
    """Filter keys for demo ``names`` (in index order).

    ``valid`` = the last ``max(1, round(valid_fraction * len(names)))`` demos (none if
    ``valid_fraction == 0``), ``train`` = the rest, and ``train_n{N}_seed{s}`` = the first ``N`` of
    ``np.random.default_rng(s).permutation(train)`` for every ``N <= len(train)``, so subsets of one
    seed are nested. Subset lists are returned in index order.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if any(int(n) < 1 for n in subset_sizes):
        raise ValueError(f"subset_sizes must be >= 1, got {list(subset_sizes)}")
    n_valid = max(1, int(round(valid_fraction * len(names)))) if valid_fraction > 0 else 0
    if len(names) - n_valid < 1:
        raise ValueError(f"{len(names)} demo(s) leave no train demos after holding out {n_valid} for validation")
    train, valid = list(names[: len(names) - n_valid]), list(names[len(names) - n_valid :])
    masks = {"train": train, "valid": valid}
    for s in subset_seeds:
        perm = [train[i] for i in np.random.default_rng(s).permutation(len(train))]
        for n in subset_sizes:
            if n <= len(train):
                masks[subset_key(n, s)] = sorted(perm[:n], key=_demo_index)
    return masks


class DemoWriter:
    """Write demos to ``path`` atomically: into ``<path>.tmp-<pid>-<hex>`` next to it, renamed onto
    ``path`` (replacing any old file) only when :meth:`close` succeeds.

    On an exception inside the ``with`` block (including ``KeyboardInterrupt``) the temp file is
    deleted and ``path`` is left untouched. Masks, ``total``, ``demo_seeds`` and finally
    ``complete=True`` are written at close. Extra scalar/str entries put into :attr:`attrs` before
    close land in ``data.attrs``.

    Example::

        with DemoWriter("push.hdf5", env.unwrapped.env_args(), subset_sizes=(10, 50)) as w:
            w.add_episode(obs, actions, rewards, dones, states, seed=3, ep_meta={...})
    """

    image_compression = {"compression": "gzip", "compression_opts": 4}

    def __init__(
        self,
        path: str | os.PathLike,
        env_args: Mapping[str, Any],
        valid_fraction: float = 0.1,
        subset_sizes: Sequence[int] = (),
        subset_seeds: Sequence[int] = (),
    ) -> None:
        self.path = Path(path)
        self.valid_fraction = float(valid_fraction)
        self.subset_sizes, self.subset_seeds = tuple(subset_sizes), tuple(subset_seeds)
        self.attrs: dict[str, Any] = {}
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # HDF5 1.10 file format: compact chunk indexes (smaller files), readable by HDF5 >= 1.10.
        self._f: h5py.File | None = h5py.File(self.tmp_path, "x", libver=("v110", "v110"))
        self._data = self._f.create_group("data")
        self._data.attrs["env_args"] = json.dumps(dict(env_args))
        self._names: list[str] = []
        self._seeds: list[int] = []
        self._total = 0
        self._obs_keys: set[str] | None = None

    def __len__(self) -> int:
        return len(self._names)

    def add_episode(
        self,
        obs: Mapping[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        states: np.ndarray,
        seed: int,
        ep_meta: Mapping[str, Any] | None = None,
    ) -> str:
        """Write one demo at once and return its name (``demo_{i}``).

        ``obs[key]`` is ``(T, ...)``: uint8 ``(T, H, W, C)`` arrays are stored as images (one frame
        per gzip chunk), float arrays as float32. ``actions`` ``(T, A)``, ``rewards``/``dones``
        ``(T,)``, ``states`` ``(T, S)``.
        """
        if self._f is None:
            raise RuntimeError(f"DemoWriter for {self.path} is closed")
        actions = np.asarray(actions, dtype=np.float32)
        T = len(actions)
        arrays = {"actions": actions, "rewards": np.asarray(rewards, dtype=np.float32),
                  "dones": np.asarray(dones, dtype=np.uint8), "states": np.asarray(states, dtype=np.float64)}
        obs = {k: np.asarray(v) for k, v in obs.items()}
        if self._obs_keys is not None and set(obs) != self._obs_keys:
            raise ValueError(f"episode obs keys {sorted(obs)} differ from earlier episodes' {sorted(self._obs_keys)}")
        bad = {k: len(v) for k, v in {**arrays, **{f"obs/{k}": v for k, v in obs.items()}}.items() if len(v) != T}
        if T < 1 or bad:
            raise ValueError(f"episode arrays must all have the same length T={T} >= 1; mismatched: {bad}")
        name = f"demo_{len(self._names)}"
        g = self._data.create_group(name)
        og = g.create_group("obs")
        for k, v in obs.items():
            if v.dtype == np.uint8 and v.ndim == 4:
                og.create_dataset(k, data=v, chunks=(1, *v.shape[1:]), fletcher32=True, **self.image_compression)
            else:
                og.create_dataset(k, data=v.astype(np.float32) if v.dtype.kind == "f" else v, fletcher32=True)
        for k, v in arrays.items():
            g.create_dataset(k, data=v, fletcher32=True)
        g.attrs["num_samples"] = T
        g.attrs["seed"] = int(seed)
        g.attrs["ep_meta"] = json.dumps(dict(ep_meta or {}))
        self._obs_keys = set(obs)
        self._names.append(name)
        self._seeds.append(int(seed))
        self._total += T
        return name

    def close(self) -> None:
        """Write masks and summary attributes, mark complete and move the file onto :attr:`path`."""
        if self._f is None:
            return
        try:
            masks = split_masks(self._names, self.valid_fraction, self.subset_sizes, self.subset_seeds)
            for key, names in masks.items():
                self._f.create_dataset(f"mask/{key}", data=np.array(names, dtype="S"))
            for k, v in self.attrs.items():
                self._data.attrs[k] = v
            self._data.attrs["total"] = self._total
            self._data.attrs["demo_seeds"] = np.array(self._seeds, dtype=np.int64)
            self._data.attrs["complete"] = True
            self._f.close()
            self._f = None
            fd = os.open(self.tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Discard everything written so far (delete the temp file); :attr:`path` is untouched."""
        if self._f is not None:
            try:
                self._f.close()
            finally:
                self._f = None
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DemoFile:
    """Read-only access to a demo file written by :class:`DemoWriter` (robomimic layout).

    Opening validates the file: it exists and is HDF5, is marked complete, has ``env_args``, and
    every demo has ``obs/<key>`` (same keys as the first demo), ``actions``, ``rewards``, ``dones``,
    ``states`` of length ``num_samples``. Problems raise :class:`DemoFileError` naming the path.
    ``obs_keys`` lists the observation keys (sorted).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DemoFileError(f"demo file not found (or not a regular file): {self.path}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise DemoFileError(f"cannot open demo file {self.path}: not a valid HDF5 file, or truncated/corrupt ({e})") from e
        try:
            self._validate()
        except (OSError, KeyError, RuntimeError) as e:  # h5py's errors on damaged metadata
            self._f.close()
            raise self._fail(f"corrupt HDF5 structure ({e})") from e
        except BaseException:
            self._f.close()
            raise

    def require_obs(self, *keys: str, purpose: str = "") -> None:
        """Raise :class:`DemoFileError` naming this file, the missing ``obs/<key>`` and the keys it has, unless every
        key in ``keys`` is recorded (e.g. ``image`` for encoders, ``proprio`` for policies that read it)."""
        missing = [k for k in keys if k not in self.obs_keys]
        if missing:
            need = f" ({purpose} needs them)" if purpose else ""
            raise self._fail(f"no obs/{'/'.join(missing)} in its demos{need}; it records obs/{self.obs_keys}")

    def _fail(self, msg: str) -> DemoFileError:
        return DemoFileError(f"{self.path}: {msg}")

    def _validate(self) -> None:
        if "data" not in self._f:
            raise self._fail("missing group 'data' (not a robomimic demo file?)")
        data = self._f["data"]
        if not bool(data.attrs.get("complete", False)):
            raise self._fail("file is not marked complete (data.attrs['complete']); the write was interrupted")
        if "env_args" not in data.attrs:
            raise self._fail("missing data.attrs['env_args']")
        stray = [k for k in data.keys() if not re.fullmatch(r"demo_\d+", k)]
        if stray:
            raise self._fail(f"unexpected entries under 'data' (expected demo_<i>): {stray[:5]}")
        self._names = sorted(data.keys(), key=_demo_index)
        obs_keys = None
        for name in self._names:
            g = data[name]
            if "num_samples" not in g.attrs:
                raise self._fail(f"{name} is missing attribute 'num_samples'")
            if "obs" not in g:
                raise self._fail(f"{name} is missing key 'obs'")
            obs_keys = set(g["obs"]) if obs_keys is None else obs_keys
            T = int(g.attrs["num_samples"])
            for key in (*(f"obs/{k}" for k in sorted(obs_keys)), *REQUIRED_KEYS):
                if key not in g:
                    raise self._fail(f"{name} is missing key '{key}'")
                if len(g[key]) != T:
                    raise self._fail(f"{name}/{key} has {len(g[key])} rows but num_samples is {T}")
        self.obs_keys: list[str] = sorted(obs_keys or [])

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic ``env_args`` (env_name, type, env_kwargs, task, ...)."""
        return json.loads(self._f["data"].attrs["env_args"])

    @property
    def attrs(self) -> dict[str, Any]:
        """All ``data.attrs`` (``env_args`` still as a JSON string)."""
        return dict(self._f["data"].attrs)

    @property
    def demo_seeds(self) -> list[int]:
        """Reset seed of every demo (``data/demo_i`` attr ``seed``), in index order."""
        try:
            return [int(self._f[f"data/{n}"].attrs["seed"]) for n in self._names]
        except KeyError as e:
            raise self._fail("some demos have no 'seed' attribute (not written by DemoWriter?)") from e

    @property
    def filter_keys(self) -> list[str]:
        """Names of the masks under ``mask/`` (sorted)."""
        return sorted(self._f["mask"].keys()) if "mask" in self._f else []

    def demo_names(self, filter_key: str | None = None) -> list[str]:
        """Demo names (all, or those in ``mask/<filter_key>``), sorted by index."""
        if filter_key is None:
            return list(self._names)
        if filter_key not in self.filter_keys:
            raise self._fail(f"unknown filter key {filter_key!r}; available: {self.filter_keys}")
        return sorted((b.decode() for b in self._f[f"mask/{filter_key}"][()]), key=_demo_index)

    def subset(self, n: int, seed: int) -> list[str]:
        """The data-efficiency subset ``mask/train_n{n}_seed{seed}`` (``n`` train demos)."""
        key = subset_key(n, seed)
        if key in self.filter_keys:
            return self.demo_names(key)
        n_train = len(self.demo_names("train")) if "train" in self.filter_keys else 0
        if n > n_train:
            raise self._fail(f"subset of N={n} demos requested but only {n_train} train demos are available")
        subsets = [k for k in self.filter_keys if k.startswith("train_n")]
        raise self._fail(f"no subset {key!r}; available subsets: {subsets}")

    def _check_name(self, name: str) -> None:
        if name not in self._names:
            raise self._fail(f"no demo {name!r} ({len(self)} demos: demo_0 .. demo_{len(self) - 1})")

    def num_samples(self, name: str) -> int:
        """Length ``T`` of demo ``name``."""
        self._check_name(name)
        return int(self._f[f"data/{name}"].attrs["num_samples"])

    def episode(self, name: str) -> dict[str, Any]:
        """Load demo ``name`` into memory.

        Returns ``{"obs": {key: (T, ...)}, "actions": float32 (T, 4), "rewards": (T,), "dones": (T,),
        "states": float64 (T, S), "attrs": {"num_samples", "seed", "ep_meta" (dict)}}``.
        """
        self._check_name(name)
        g = self._f[f"data/{name}"]
        try:
            out: dict[str, Any] = {"obs": {k: g[f"obs/{k}"][()] for k in self.obs_keys}}
            out.update({k: g[k][()] for k in REQUIRED_KEYS})
        except (OSError, KeyError, RuntimeError) as e:  # checksum, decompression or metadata errors
            raise self._fail(f"cannot read {name}, the file is corrupt: {e}") from e
        attrs = dict(g.attrs)
        attrs["num_samples"] = int(attrs["num_samples"])
        attrs["ep_meta"] = json.loads(attrs.get("ep_meta", "{}"))
        out["attrs"] = attrs
        return out

    def __len__(self) -> int:
        return len(self._names)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> DemoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
