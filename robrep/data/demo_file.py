"""Demonstration files in robomimic's HDF5 layout: an atomic writer and a validating reader.

Layout written by :class:`DemoWriter` (``T`` = steps of a demo, ``S`` = MuJoCo sim-state size, ``D`` = privileged
state size)::

    data                       attrs: total (int, sum of T over demos, as in robomimic),
                                      env_args (JSON str), demo_seeds (int64 (num_demos,)),
                                      robrep_writer (str, written first), complete (True, written last),
                                      plus collector extras
    data/demo_{i}              attrs: num_samples = T, seed (int), ep_meta (JSON str)
    data/demo_{i}/obs/image    uint8   (T, H, W, 3)  one frame per chunk, gzip
    data/demo_{i}/obs/proprio  float32 (T, 4)
    data/demo_{i}/obs/state    float32 (T, D)
    data/demo_{i}/next_obs/<key>  as obs/<key>: next_obs[t] = obs[t + 1]; next_obs[T - 1] = the observation
                                  after the last action (optional: see below)
    data/demo_{i}/actions      float32 (T, 4)
    data/demo_{i}/rewards      float32 (T,)
    data/demo_{i}/dones        uint8   (T,)         1 at the last step
    data/demo_{i}/states       float64 (T, S)       sim state *before* the action of each step
    mask/train, mask/valid, mask/train_n{N}_seed{s}  arrays of byte strings (b"demo_0", ...)

``obs[t]`` and ``states[t]`` are observed before ``actions[t]`` is applied. Every dataset carries a fletcher32
checksum, so damaged bytes raise on read instead of returning garbage.

``next_obs`` is written for every obs key (``DemoWriter(next_obs=True)``, what ``robrep collect`` does), so
robomimic's ``SequenceDataset(..., load_next_obs=True)`` can be built on a robrep file. Its last row is the
observation after the last action when the collector passes it (``final_obs``; :func:`robrep.data.collect.
rollout_episode` records it), else the last observation repeated (as robomimic's own conversion scripts do).
It costs a second, gzip-compressed copy of the images (about doubling a demo file): HDF5 soft/hard links
cannot express a one-step shift, and a virtual dataset, which could, refers to its source by file name and is
not carried along by every copy/repack tool, so plain datasets it is. The play corpus, read frame by frame for pretraining, is written with ``next_obs=False``; robrep's readers never
require ``next_obs`` (:meth:`DemoFile.episode` returns it on request).

Files robrep did not write (e.g. a robomimic dataset: ``obs/agentview_image``, ``obs/robot0_eef_pos``, 7-D
``actions``, no ``complete``) are read too; :class:`DemoFile` tells them apart by the ``robrep_writer`` mark. A
robrep file must be complete and hold every key above but ``next_obs``; a foreign demo needs only ``obs`` and
``actions`` (``num_samples``, ``env_args``, ``rewards``, ``dones``, ``states`` are optional, required by what
reads them: :meth:`DemoFile.require`). Which obs keys are the image and the proprio is the reader's
:class:`robrep.data.obs_keys.ObsKeys`, checked by :meth:`DemoFile.require_obs_keys`.
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

from robrep.data.obs_keys import ObsKeys

#: Datasets every ``data/demo_i`` group of a file robrep wrote must hold (besides ``obs/<key>``).
REQUIRED_KEYS = ("actions", "rewards", "dones", "states")
#: Datasets a demo of a file robrep did not write must hold (besides ``obs``); the rest of REQUIRED_KEYS is optional.
FOREIGN_REQUIRED_KEYS = ("actions",)
#: ``data.attrs`` entry :class:`DemoWriter` writes when it creates a file (before any demo): marks robrep's files,
#: so a robrep file without ``complete`` is known to be an interrupted write, not a foreign file.
WRITER_ATTR = "robrep_writer"
WRITER_NAME = "robrep.data.demo_file.DemoWriter"
#: Temp-file names of :class:`DemoWriter` (``<name>.tmp-<pid>-<hex>``).
TEMP_NAME = re.compile(r".*\.tmp-\d+-[0-9a-f]+$")


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
        for n in subset_sizes:
            if n <= len(train):
                masks[subset_key(n, s)] = nested_subset(train, n, s)
    return masks


def nested_subset(train: Sequence[str], n: int, seed: int) -> list[str]:
    """The first ``n`` of ``np.random.default_rng(seed).permutation(train)`` (``train`` in index order), returned
    in index order: the rule of every ``train_n{n}_seed{seed}`` mask, so subsets of one seed are nested."""
    perm = [train[i] for i in np.random.default_rng(seed).permutation(len(train))]
    return sorted(perm[:n], key=_demo_index)


class DemoWriter:
    """Write demos to ``path`` atomically: into ``<path>.tmp-<pid>-<hex>`` next to it, renamed onto
    ``path`` (replacing any old file) only when :meth:`close` succeeds.

    On an exception inside the ``with`` block (including ``KeyboardInterrupt``) the temp file is
    deleted and ``path`` is left untouched. ``robrep_writer`` is written at creation; masks, ``total``,
    ``demo_seeds`` and finally ``complete=True`` at close. Extra scalar/str entries put into :attr:`attrs`
    before close land in ``data.attrs``. ``next_obs``: also write ``next_obs/<key>`` for every obs key (see the
    module docstring).

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
        next_obs: bool = True,
    ) -> None:
        self.path = Path(path)
        self.next_obs = bool(next_obs)
        self.valid_fraction = float(valid_fraction)
        self.subset_sizes, self.subset_seeds = tuple(subset_sizes), tuple(subset_seeds)
        self.attrs: dict[str, Any] = {}
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # HDF5 1.10 file format: compact chunk indexes (smaller files), readable by HDF5 >= 1.10.
        self._f: h5py.File | None = h5py.File(self.tmp_path, "x", libver=("v110", "v110"))
        self._data = self._f.create_group("data")
        self._data.attrs[WRITER_ATTR] = WRITER_NAME
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
        final_obs: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """Write one demo at once and return its name (``demo_{i}``).

        ``obs[key]`` is ``(T, ...)``: uint8 ``(T, H, W, C)`` arrays are stored as images (one frame
        per gzip chunk), float arrays as float32. ``actions`` ``(T, A)``, ``rewards``/``dones``
        ``(T,)``, ``states`` ``(T, S)``. ``final_obs[key]`` ``(...)``: the observation after the last action,
        the last row of ``next_obs`` (None: ``obs[key][-1]`` repeated); unused without ``next_obs``.
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
        if final_obs is not None and set(final_obs) != set(obs):
            raise ValueError(f"final_obs keys {sorted(final_obs)} differ from the obs keys {sorted(obs)}")
        last = {k: np.asarray(final_obs[k] if final_obs is not None else v[-1]) for k, v in obs.items()}
        bad = {k: last[k].shape for k, v in obs.items() if last[k].shape != v.shape[1:]}
        if bad:
            raise ValueError(f"final_obs shapes {bad} differ from the per-step obs shapes")
        name = f"demo_{len(self._names)}"
        g = self._data.create_group(name)
        self._write_obs(g.create_group("obs"), obs)
        if self.next_obs:
            self._write_obs(g.create_group("next_obs"),
                            {k: np.concatenate([v[1:], last[k][None].astype(v.dtype)]) for k, v in obs.items()})
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

    def _write_obs(self, group: h5py.Group, obs: Mapping[str, np.ndarray]) -> None:
        """``obs[key]`` ``(T, ...)`` into ``group``: uint8 ``(T, H, W, C)`` as images (one frame per gzip chunk),
        floats as float32, with fletcher32 checksums."""
        for k, v in obs.items():
            if v.dtype == np.uint8 and v.ndim == 4:
                group.create_dataset(k, data=v, chunks=(1, *v.shape[1:]), fletcher32=True, **self.image_compression)
            else:
                group.create_dataset(k, data=v.astype(np.float32) if v.dtype.kind == "f" else v, fletcher32=True)

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
    """Read-only access to a demo file in robomimic's layout: written by :class:`DemoWriter`, or foreign (e.g. a
    robomimic dataset; :attr:`written_by_robrep` tells them apart).

    Opening validates the file: it exists and is HDF5, and every demo has ``obs/<key>`` (same keys as the first
    demo) and the datasets of :meth:`required_keys` (plus any of :data:`REQUIRED_KEYS` and ``next_obs/<key>`` it
    holds), each of length ``num_samples`` (a foreign demo without that attribute: the length of its
    ``actions``). A file robrep wrote must also be marked complete and have ``env_args``. Problems raise
    :class:`DemoFileError` naming the path, the demo, the missing key and the keys the demo has. ``obs_keys``
    lists the observation keys (sorted).
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

    @property
    def written_by_robrep(self) -> bool:
        """Whether :class:`DemoWriter` wrote the file: its ``robrep_writer`` mark, or ``complete`` (which the files
        written before the mark existed carry)."""
        attrs = self._f["data"].attrs
        return WRITER_ATTR in attrs or "complete" in attrs

    def required_keys(self) -> tuple[str, ...]:
        """Datasets every demo must hold besides ``obs``: :data:`REQUIRED_KEYS` in robrep's files,
        :data:`FOREIGN_REQUIRED_KEYS` in others."""
        return REQUIRED_KEYS if self.written_by_robrep else FOREIGN_REQUIRED_KEYS

    def require_obs(self, *keys: str, purpose: str = "", hint: str = "") -> None:
        """Raise :class:`DemoFileError` naming this file, the missing ``obs/<key>`` and the keys it has, unless every
        key in ``keys`` is recorded (e.g. ``image`` for encoders, ``proprio`` for policies that read it); ``hint``
        (e.g. the override that would fix it) ends the message."""
        missing = [k for k in keys if k not in self.obs_keys]
        if missing:
            need = f" ({purpose} needs them)" if purpose else ""
            raise self._fail(f"no obs/{'/'.join(missing)} in its demos{need}; it records obs/{self.obs_keys}"
                             + (f"; {hint}" if hint else ""))

    def require_obs_keys(self, obs_keys: ObsKeys, proprio: bool = True, purpose: str = "") -> None:
        """Check that the demos record ``obs_keys.image`` as uint8 ``(T, H, W, 3)`` and (with ``proprio``) every
        ``obs_keys.proprio`` key as ``(T, P_i)``; the error names the keys the file has and an ``obs_keys.*=``
        override that would map them."""
        fix = f"map this file's keys with e.g. {obs_keys.override_hint(self.obs_keys)}"
        self.require_obs(*obs_keys.needed(proprio), purpose=purpose, hint=fix)
        if not self._names:
            return
        obs = self._f[f"data/{self._names[0]}/obs"]
        image = obs[obs_keys.image]
        if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
            raise self._fail(f"obs/{obs_keys.image} is {image.dtype} {tuple(image.shape)}, not an image (uint8 "
                             f"(T, H, W, 3)); {fix}")
        flat = [k for k in (obs_keys.proprio if proprio else ()) if obs[k].ndim != 2]
        if flat:
            raise self._fail(f"proprio key(s) {flat} are not (T, P) arrays "
                             f"({', '.join(f'{k}: {tuple(obs[k].shape)}' for k in flat)}); {fix}")

    def require(self, *keys: str, purpose: str = "") -> None:
        """Raise :class:`DemoFileError` unless every demo holds the datasets ``keys`` (e.g. ``states`` for sim-state
        replay, ``rewards``), naming the missing ones and the datasets the demos have."""
        missing = [k for k in keys if k not in self._datasets]
        if missing:
            need = f" ({purpose} needs them)" if purpose else ""
            raise self._fail(f"its demos have no {', '.join(repr(k) for k in missing)}{need}; "
                             f"they hold {sorted(self._datasets)} besides obs")

    @property
    def has_next_obs(self) -> bool:
        """Whether every demo has a ``next_obs`` group."""
        return self._next_obs

    def _fail(self, msg: str) -> DemoFileError:
        return DemoFileError(f"{self.path}: {msg}")

    def _validate(self) -> None:
        if "data" not in self._f:
            raise self._fail("missing group 'data' (not a robomimic demo file?)")
        data = self._f["data"]
        robrep = self.written_by_robrep
        if robrep and not bool(data.attrs.get("complete", False)):
            raise self._fail("written by robrep's DemoWriter but not marked complete (data.attrs['complete']); "
                             "the write was interrupted: write it again")
        if not robrep and TEMP_NAME.fullmatch(self.path.name):
            raise self._fail("a temp file left by an interrupted robrep write (<name>.tmp-<pid>-<hex>): delete it")
        if robrep and "env_args" not in data.attrs:
            raise self._fail("missing data.attrs['env_args']")
        stray = [k for k in data.keys() if not re.fullmatch(r"demo_\d+", k)]
        if stray:
            raise self._fail(f"unexpected entries under 'data' (expected demo_<i>): {stray[:5]}")
        self._names = sorted(data.keys(), key=_demo_index)
        required = self.required_keys()
        obs_keys: set[str] | None = None
        datasets: set[str] | None = None
        next_obs = bool(self._names)
        self._lengths: dict[str, int] = {}
        for name in self._names:
            g = data[name]
            if "obs" not in g:
                raise self._fail(f"{name} is missing key 'obs' (it has {sorted(g.keys())})")
            for key in required:
                if key not in g:
                    raise self._fail(f"{name} is missing key '{key}' (it has {sorted(g.keys())})")
            if "num_samples" in g.attrs:
                T = int(g.attrs["num_samples"])
            elif robrep:
                raise self._fail(f"{name} is missing attribute 'num_samples'")
            else:
                T = len(g["actions"])
            obs_keys = set(g["obs"]) if obs_keys is None else obs_keys
            present = {k for k in REQUIRED_KEYS if k in g}
            datasets = present if datasets is None else datasets & present
            next_obs = next_obs and "next_obs" in g
            keys = [*(f"obs/{k}" for k in sorted(obs_keys)), *(k for k in REQUIRED_KEYS if k in present)]
            keys += [f"next_obs/{k}" for k in sorted(g["next_obs"])] if "next_obs" in g else []
            for key in keys:
                if key not in g:
                    raise self._fail(f"{name} is missing key '{key}' (its obs/ has {sorted(g['obs'])})")
                if len(g[key]) != T:
                    raise self._fail(f"{name}/{key} has {len(g[key])} rows but num_samples is {T}")
            self._lengths[name] = T
        self.obs_keys: list[str] = sorted(obs_keys or [])
        self._datasets: set[str] = set(datasets or ())
        self._next_obs = next_obs

    @property
    def env_args(self) -> dict[str, Any]:
        """robomimic ``env_args`` (env_name, type, env_kwargs, task, ...); ``{}`` for a foreign file without them."""
        raw = self._f["data"].attrs.get("env_args")
        return {} if raw is None else json.loads(raw)

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
        """The data-efficiency subset ``mask/train_n{n}_seed{seed}`` (``n`` train demos).

        A foreign file has no such masks: its subset is drawn by the same rule (:func:`nested_subset`) from its
        ``mask/train`` demos, or, without that mask, from every demo not in ``mask/valid``."""
        key = subset_key(n, seed)
        if key in self.filter_keys:
            return self.demo_names(key)
        if not self.written_by_robrep:
            valid = set(self.demo_names("valid")) if "valid" in self.filter_keys else set()
            train = (self.demo_names("train") if "train" in self.filter_keys
                     else [d for d in self._names if d not in valid])
            if not 1 <= n <= len(train):
                raise self._fail(f"subset of N={n} demos requested but only {len(train)} train demos are available")
            return nested_subset(train, n, seed)
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
        return self._lengths[name]

    def episode(self, name: str, next_obs: bool = False) -> dict[str, Any]:
        """Load demo ``name`` into memory.

        Returns ``{"obs": {key: (T, ...)}, "actions": float32 (T, A), "rewards": (T,), "dones": (T,),
        "states": float64 (T, S), "attrs": {"num_samples", "seed", "ep_meta" (dict)}}``; ``rewards``, ``dones`` and
        ``states`` only when the file has them (robrep's files always do). With ``next_obs``, also ``"next_obs":
        {key: (T, ...)}`` when the file records it (:attr:`has_next_obs`).
        """
        self._check_name(name)
        g = self._f[f"data/{name}"]
        try:
            out: dict[str, Any] = {"obs": {k: g[f"obs/{k}"][()] for k in self.obs_keys}}
            out.update({k: g[k][()] for k in REQUIRED_KEYS if k in self._datasets})
            if next_obs and self._next_obs:
                out["next_obs"] = {k: g[f"next_obs/{k}"][()] for k in sorted(g["next_obs"])}
        except (OSError, KeyError, RuntimeError) as e:  # checksum, decompression or metadata errors
            raise self._fail(f"cannot read {name}, the file is corrupt: {e}") from e
        attrs = dict(g.attrs)
        attrs["num_samples"] = self._lengths[name]
        meta = attrs.get("ep_meta", "{}")
        attrs["ep_meta"] = json.loads(meta) if isinstance(meta, (str, bytes)) else {}
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
