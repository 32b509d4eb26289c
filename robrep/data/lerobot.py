"""LeRobot v2.1 datasets (the on-disk format only; the ``lerobot`` package is not used): export a robrep demo file,
read one back, and convert one into a robrep demo file.

Layout written by :func:`write_lerobot` (``N`` episodes, episode ``e`` of ``T_e`` frames, chunk ``c = e // 1000``)::

    meta/info.json                 codebase_version "v2.1", robot_type, totals, chunks_size 1000, fps, splits,
                                   data_path / video_path templates, features {key: {dtype, shape, names[, info]}}
    meta/episodes.jsonl            {"episode_index", "tasks": [str], "length"} per episode
    meta/tasks.jsonl               {"task_index", "task"} per distinct task string
    meta/episodes_stats.jsonl      {"episode_index", "stats": {key: {min, max, mean, std, count}}} per episode
    meta/robrep.json               what LeRobot has no place for (env_args, data attrs, masks, per-demo seed and
                                   ep_meta), so that reading the export back restores the demo file
    data/chunk-{c:03d}/episode_{e:06d}.parquet                       one row per frame
    videos/chunk-{c:03d}/observation.images.<key>/episode_{e:06d}.mp4  H.264, one video frame per row

Mapping of a demo ``data/demo_e`` (robomimic layout, :mod:`robrep.data.demo_file`) to features:

=============================  =========================================  =====================================
feature                        from                                       dtype, shape
=============================  =========================================  =====================================
``observation.images.<key>``   ``obs/<key>`` uint8 ``(T, H, W, 3)``       video ``[H, W, 3]`` (MP4, lossy)
``observation.state``          ``obs/proprio``                            float32 ``[P]``
``action``                     ``actions``                                float32 ``[A]``
``next.reward``                ``rewards``                                float32 ``[1]``
``next.done``                  ``dones``                                  bool ``[1]``
``robrep.state``               ``obs/state`` (privileged task state)      float32 ``[D]``
``robrep.sim_state``           ``states`` (MuJoCo state before the step)  float64 ``[S]``
``observation.<key>``          any other float ``obs/<key>``              float32 ``[K]``
``timestamp``                  ``frame_index / fps`` (s)                  float32 ``[1]``
``frame_index``, ``episode_index``, ``index`` (global frame), ``task_index``   int64 ``[1]``
=============================  =========================================  =====================================

The privileged entries are named ``robrep.*`` (not ``observation.*``) on purpose: LeRobot policies pick their inputs
from the ``observation.*`` keys, so they see what robrep's policies see (camera + proprio), not the simulator's truth.
The task string of an episode is its instruction (``ep_meta["instruction"]``), else the task name of ``env_args``.
Image statistics are per channel, shape ``(3, 1, 1)``, of frames scaled to [0, 1], over evenly spaced frames
(all frames up to 100, then ``T**0.75``), as LeRobot computes them; every other feature's are per dimension.

Everything but the frames round-trips bit for bit. The frames pass through H.264: with the defaults (crf 18,
``yuv420p``, which keeps one colour sample per 2x2 pixels, so sharp coloured edges lose the most) push frames come
back with a mean absolute error of 2.1 of 255 at 96 px (3.8 at 32 px); ``pix_fmt=yuv444p crf=0`` leaves only the
RGB <-> YUV rounding (max error 1). An export is 0.6x the size of its gzip-compressed demo file (96 px push).

:func:`to_demo_file` reads any v2.x dataset of this layout. One without ``meta/robrep.json`` (a foreign one) gets
``obs/image`` from its camera (the one named ``image``, or the only one; others keep their names), ``obs/proprio``
from ``observation.state``, an empty ``states`` ``(T, 0)``, ``ep_meta = {"instruction": task}``, the ``train`` and
``valid`` ranges of its ``splits`` as masks (when they name only ``train``, the last tenth of it, at least one
episode, becomes ``valid``) and the nested subsets ``train_n{N}_seed{s}`` of
:func:`robrep.data.demo_file.split_masks` for N in :data:`DEFAULT_SUBSET_SIZES` and seeds 0-2.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robrep.data.demo_file import DemoFile, DemoFileError, DemoWriter, split_masks

CODEBASE_VERSION = "v2.1"
#: Episodes per chunk directory (LeRobot's default).
CHUNKS_SIZE = 1000
INFO_PATH = "meta/info.json"
EPISODES_PATH = "meta/episodes.jsonl"
TASKS_PATH = "meta/tasks.jsonl"
EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
#: robrep's own metadata (ignored by LeRobot): env_args, data attrs, masks, per-demo seed and ep_meta.
ROBREP_PATH = "meta/robrep.json"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
#: fps when neither the caller nor the demo file's env_args give one (robrep's tabletop tasks run at 25 Hz).
DEFAULT_FPS = 25
#: MuJoCo timestep (s) of the tabletop scenes (``envs.scene.build_scene_xml``): control period = frame_skip × this.
TABLETOP_TIMESTEP_S = 0.002
#: Meta-World's control rate (Hz): frame_skip 5 × timestep 2.5 ms.
METAWORLD_FPS = 80
#: Subset sizes and seeds given to a foreign dataset converted by :func:`to_demo_file`: robrep collect's N (10, 50,
#: 100, 500) and the small ones a short dataset allows (each size up to the number of train episodes).
DEFAULT_SUBSET_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
DEFAULT_SUBSET_SEEDS = (0, 1, 2)
#: Bumped whenever :func:`to_demo_file` changes what it writes (part of the conversion cache key).
CONVERTER_VERSION = 1

_BASE_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
#: (dataset dir, ((file, size, mtime_ns), ...)) -> content hash, for :meth:`LeRobotDataset.content_hash`.
_HASH_MEMO: dict[tuple, str] = {}


class LeRobotFormatError(ValueError):
    """A LeRobot dataset directory is missing, incomplete or not of the v2.x layout; or an export target exists."""


# ----------------------------------------------------------------------------------------------- writing
def control_fps(env_args: Mapping[str, Any]) -> float:
    """Control rate (Hz, steps per second) of the env that recorded a demo file: ``env_args["fps"]`` or
    ``["control_freq"]`` when recorded; Meta-World tasks 80; tabletop tasks ``1 / (frame_skip × 2 ms)`` (25 Hz at the
    default frame_skip 20); otherwise :data:`DEFAULT_FPS`."""
    for key in ("fps", "control_freq"):
        if env_args.get(key):
            return float(env_args[key])
    if str(env_args.get("task", "")).startswith("metaworld/") or str(env_args.get("env_name", "")).startswith("metaworld/"):
        return float(METAWORLD_FPS)
    frame_skip = (env_args.get("env_kwargs") or {}).get("frame_skip")
    if frame_skip:
        return 1.0 / (float(frame_skip) * TABLETOP_TIMESTEP_S)
    return float(DEFAULT_FPS)


def _robot_type(env_args: Mapping[str, Any]) -> str:
    if "robot_type" in env_args:
        return str(env_args["robot_type"])
    task = str(env_args.get("task", ""))
    return "metaworld_sawyer" if task.startswith("metaworld/") else "robrep_floating_gripper"


def _spec_names(spec: Sequence[Sequence[Any]], size: int) -> list[str] | None:
    """Per-dimension names from a ``state_spec`` ``[(name, size), ...]`` (``goal_pos_0``, ...), if it has ``size`` dims."""
    names = []
    for name, n in spec:
        names += [str(name)] if int(n) == 1 else [f"{name}_{i}" for i in range(int(n))]
    return names if len(names) == size else None


def _fps_value(fps: float) -> int | float:
    return int(round(fps)) if abs(fps - round(fps)) < 1e-9 else float(fps)


def _feature_plan(demos: DemoFile, first: Mapping[str, Any], fps: float, codec: str, pix_fmt: str) -> dict[str, dict]:
    """``{feature key: {"dtype", "shape", "names"[, "info"], "source": (kind, key)}}`` of a demo file, in column order."""
    env_args = demos.env_args
    spec = env_args.get("state_spec") or []
    plan: dict[str, dict] = {}
    obs = first["obs"]
    for key in sorted(obs):  # cameras first, then the vectors
        v = obs[key]
        if v.dtype == np.uint8 and v.ndim == 4:
            if v.shape[-1] != 3:
                raise LeRobotFormatError(f"{demos.path}: obs/{key} has {v.shape[-1]} channels; LeRobot videos are RGB")
            h, w = int(v.shape[1]), int(v.shape[2])
            plan[f"observation.images.{key}"] = {
                "dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                "info": {"video.height": h, "video.width": w, "video.codec": codec, "video.pix_fmt": pix_fmt,
                         "video.is_depth_map": False, "video.fps": _fps_value(fps), "video.channels": 3,
                         "has_audio": False},
                "source": ("obs", key)}
    a_dim = int(first["actions"].shape[1])
    plan["action"] = {"dtype": "float32", "shape": [a_dim],
                      "names": ["delta_x", "delta_y", "delta_z", "gripper"] if a_dim == 4 else None,
                      "source": ("actions", None)}
    if "proprio" in obs:
        p = int(obs["proprio"].shape[1])
        plan["observation.state"] = {"dtype": "float32", "shape": [p], "names": _spec_names(spec[:2], p),
                                     "source": ("obs", "proprio")}
    for key in sorted(obs):
        v = obs[key]
        if key in ("proprio", "state") or (v.dtype == np.uint8 and v.ndim == 4):
            continue
        if v.ndim != 2 or v.dtype.kind != "f":
            raise LeRobotFormatError(f"{demos.path}: obs/{key} {v.dtype} {v.shape[1:]} has no LeRobot mapping "
                                     "(only RGB uint8 frames and float vectors)")
        plan[f"observation.{key}"] = {"dtype": "float32", "shape": [int(v.shape[1])], "names": None, "source": ("obs", key)}
    plan["next.reward"] = {"dtype": "float32", "shape": [1], "names": None, "source": ("rewards", None)}
    plan["next.done"] = {"dtype": "bool", "shape": [1], "names": None, "source": ("dones", None)}
    if "state" in obs:
        d = int(obs["state"].shape[1])
        plan["robrep.state"] = {"dtype": "float32", "shape": [d], "names": _spec_names(spec, d), "source": ("obs", "state")}
    plan["robrep.sim_state"] = {"dtype": "float64", "shape": [int(first["states"].shape[1])], "names": None,
                                "source": ("states", None)}
    plan["timestamp"] = {"dtype": "float32", "shape": [1], "names": None, "source": ("timestamp", None)}
    for key in _BASE_KEYS[1:]:
        plan[key] = {"dtype": "int64", "shape": [1], "names": None, "source": (key, None)}
    return plan


def stats_sample_indices(length: int) -> np.ndarray:
    """Evenly spaced frame indices (``(n,)`` int64) whose images enter an episode's image statistics: all frames up to
    100, then ``int(length ** 0.75)`` of them (at most 10 000)."""
    n = min(length, 100) if length <= 100 else max(100, min(int(length ** 0.75), 10_000))
    return np.round(np.linspace(0, length - 1, n)).astype(np.int64)


def _vector_stats(values: np.ndarray) -> dict[str, list]:
    """min/max/mean/std per dimension (``(K,)``) of ``values`` ``(T, K)`` or ``(T,)`` (then shape ``(1,)``), count ``[T]``."""
    x = np.asarray(values, dtype=np.float64)
    x = x.reshape(len(x), -1)
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
            "count": [int(len(x))]}


def _image_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel stats, shape ``(3, 1, 1)``, of uint8 ``frames`` ``(T, H, W, 3)`` scaled to [0, 1]."""
    sample = frames[stats_sample_indices(len(frames))].astype(np.float64) / 255.0
    nested = lambda v: [[[float(c)]] for c in v]  # noqa: E731  (3,) -> (3, 1, 1)
    return {"min": nested(sample.min((0, 1, 2))), "max": nested(sample.max((0, 1, 2))),
            "mean": nested(sample.mean((0, 1, 2))), "std": nested(sample.std((0, 1, 2))), "count": [int(len(sample))]}


def _hf_features(plan: Mapping[str, dict]) -> dict[str, Any]:
    """The ``huggingface`` schema metadata of the parquet files (Hugging Face ``datasets`` feature types)."""
    out: dict[str, Any] = {}
    for key, ft in plan.items():
        if ft["dtype"] == "video":
            continue
        value = {"dtype": ft["dtype"], "_type": "Value"}
        out[key] = value if ft["shape"] == [1] else {"feature": value, "length": ft["shape"][0], "_type": "Sequence"}
    return out


def _arrow_schema(plan: Mapping[str, dict]):
    import pyarrow as pa

    types = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}
    fields = []
    for key, ft in plan.items():
        if ft["dtype"] == "video":
            continue
        t = types[ft["dtype"]]
        fields.append(pa.field(key, t if ft["shape"] == [1] else pa.list_(t, ft["shape"][0]), nullable=False))
    meta = {b"huggingface": json.dumps({"info": {"features": _hf_features(plan)}}).encode()}
    return pa.schema(fields, metadata=meta)


def _write_video(frames: np.ndarray, path: Path, fps: float, crf: int, gop: int, pix_fmt: str) -> None:
    """Encode uint8 ``frames`` ``(T, H, W, 3)`` into an H.264 MP4 at ``fps`` (one thread, bit-exact muxing, no
    metadata: the same frames give the same bytes)."""
    import imageio_ffmpeg

    h, w = int(frames.shape[1]), int(frames.shape[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out=pix_fmt, quality=None,
        macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", str(int(crf)), "-g", str(int(gop)), "-preset", "medium", "-threads", "1",
                       "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _episode_task(episode: Mapping[str, Any], env_args: Mapping[str, Any]) -> str:
    meta = episode["attrs"].get("ep_meta") or {}
    text = meta.get("instruction") if isinstance(meta, Mapping) else None
    return str(text or env_args.get("task") or env_args.get("env_name") or "unknown task")


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise LeRobotFormatError(f"out={out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise LeRobotFormatError(f"out={out_dir} exists and is not empty; pass overwrite=true to replace it, "
                                 "or choose another out")


def write_lerobot(
    demo_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    fps: float | None = None,
    crf: int = 18,
    gop: int = 2,
    pix_fmt: str = "yuv420p",
    robot_type: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Export the robrep demo file ``demo_path`` as a LeRobot v2.1 dataset in ``out_dir`` (layout and mapping: module
    docstring); returns ``{"path", "episodes", "frames", "tasks", "fps", "bytes", "video_bytes", "source_bytes"}``.

    ``fps`` (Hz) defaults to the recorded control rate (:func:`control_fps`). Videos are H.264 (libx264) with
    constant rate factor ``crf`` (0-51, lower = closer), a keyframe every ``gop`` frames (LeRobot decodes frames by
    timestamp, so short GOPs seek fast) and pixel format ``pix_fmt`` (``yuv420p``, the one every player decodes, or
    ``yuv444p``, full chroma resolution). The same file and settings give the same bytes. The dataset is written into
    a temporary directory beside ``out_dir`` and renamed onto it when complete; an existing non-empty ``out_dir``
    raises :class:`LeRobotFormatError` unless ``overwrite`` (then it is replaced only once the new one is complete).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    out_dir = Path(out_dir)
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise ValueError(f"pix_fmt must be yuv420p or yuv444p, got {pix_fmt!r}")
    if not 0 <= int(crf) <= 51 or int(gop) < 1:
        raise ValueError(f"crf must be in [0, 51] and gop >= 1, got crf={crf}, gop={gop}")
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        with DemoFile(demo_path) as demos:
            env_args = demos.env_args
            names = demos.demo_names()
            fps = float(fps) if fps else control_fps(env_args)
            if fps <= 0:
                raise ValueError(f"fps must be > 0, got {fps}")
            first = demos.episode(names[0])
            plan = _feature_plan(demos, first, fps, "h264", pix_fmt)
            schema = _arrow_schema(plan)
            video_keys = [k for k, ft in plan.items() if ft["dtype"] == "video"]
            tasks: dict[str, int] = {}
            episodes, stats_rows, extras = [], [], []
            index = video_bytes = 0
            for e, name in enumerate(tqdm(names, desc="export lerobot", unit="demo", disable=not progress)):
                ep = first if e == 0 else demos.episode(name)
                T = int(ep["attrs"]["num_samples"])
                task = _episode_task(ep, env_args)
                task_index = tasks.setdefault(task, len(tasks))
                frame_index = np.arange(T, dtype=np.int64)
                values: dict[str, np.ndarray] = {
                    "timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
                    "episode_index": np.full(T, e, np.int64), "index": index + frame_index,
                    "task_index": np.full(T, task_index, np.int64)}
                for key, ft in plan.items():
                    kind, src = ft["source"]
                    if kind == "obs":
                        values[key] = ep["obs"][src]
                    elif kind in ("actions", "rewards", "dones", "states"):
                        values[key] = ep[kind]
                    got = list(values[key].shape[1:])
                    if got != ft["shape"] and not (ft["shape"] == [1] and got == []):
                        raise LeRobotFormatError(f"{demos.path}: {name} {kind}{'/' + src if src else ''} has shape "
                                                 f"{got} per step, the first demo's {ft['shape']}")
                chunk = e // CHUNKS_SIZE
                columns = []
                for field in schema:
                    v = values[field.name]
                    if pa.types.is_fixed_size_list(field.type):
                        flat = np.ascontiguousarray(v, dtype=field.type.value_type.to_pandas_dtype()).reshape(-1)
                        columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), field.type.list_size))
                    else:
                        columns.append(pa.array(np.asarray(v).reshape(T).astype(field.type.to_pandas_dtype())))
                data_file = tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=e)
                data_file.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.Table.from_arrays(columns, schema=schema), data_file, compression="snappy")
                for key in video_keys:
                    video = tmp / VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=e)
                    _write_video(values[key], video, fps, crf, gop, pix_fmt)
                    video_bytes += video.stat().st_size
                stats = {key: (_image_stats(values[key]) if plan[key]["dtype"] == "video" else _vector_stats(values[key]))
                         for key in plan}
                episodes.append({"episode_index": e, "tasks": [task], "length": T})
                stats_rows.append({"episode_index": e, "stats": stats})
                extras.append({"name": name, "seed": int(ep["attrs"].get("seed", e)), "ep_meta": ep["attrs"]["ep_meta"]})
                index += T
            masks = {k: demos.demo_names(k) for k in demos.filter_keys}
            attrs = {k: _jsonable(v) for k, v in demos.attrs.items() if k not in ("env_args", "complete", "total", "demo_seeds")}
            obs_keys = list(demos.obs_keys)
        n = len(names)
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": robot_type or _robot_type(env_args),
            "total_episodes": n, "total_frames": index, "total_tasks": len(tasks),
            "total_videos": n * len(video_keys), "total_chunks": math.ceil(n / CHUNKS_SIZE), "chunks_size": CHUNKS_SIZE,
            "fps": _fps_value(fps), "splits": _splits(masks, names),
            "data_path": DATA_PATH, "video_path": VIDEO_PATH if video_keys else None,
            "features": {k: {f: v for f, v in ft.items() if f != "source"} for k, ft in plan.items()},
        }
        robrep_meta = {"format": 1, "source": {"path": str(demo_path), "sha256": _file_sha256(Path(demo_path))},
                       "env_args": env_args, "attrs": attrs, "obs_keys": obs_keys, "masks": masks, "episodes": extras,
                       "video": {"codec": "libx264", "crf": int(crf), "gop": int(gop), "pix_fmt": pix_fmt}}
        _write_json(tmp / INFO_PATH, info)
        _write_jsonl(tmp / EPISODES_PATH, episodes)
        _write_jsonl(tmp / TASKS_PATH, [{"task_index": i, "task": t} for t, i in tasks.items()])
        _write_jsonl(tmp / EPISODES_STATS_PATH, stats_rows)
        _write_json(tmp / ROBREP_PATH, robrep_meta)
        _check_target(out_dir, overwrite)  # again: another process may have filled it meanwhile
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {"path": str(out_dir), "episodes": n, "frames": index, "tasks": list(tasks), "fps": fps, "bytes": total,
            "video_bytes": video_bytes, "source_bytes": Path(demo_path).stat().st_size}


def _splits(masks: Mapping[str, list[str]], names: list[str]) -> dict[str, str]:
    """``{"train": "0:K", "valid": "K:N"}`` when the file's train/valid masks are those two contiguous ranges of the
    episodes (as :func:`split_masks` makes them), else ``{"train": "0:N"}`` (the exact masks are in robrep.json)."""
    pos = {n: i for i, n in enumerate(names)}
    train, valid = [pos[n] for n in masks.get("train", [])], [pos[n] for n in masks.get("valid", [])]
    k = len(train)
    if train == list(range(k)) and valid == list(range(k, len(names))) and valid:
        return {"train": f"0:{k}", "valid": f"{k}:{len(names)}"}
    return {"train": f"0:{len(names)}"}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4) + "\n")


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _file_sha256(path: Path) -> str:
    """Full sha256 hex digest of a file's bytes (the project's :func:`robrep.digest.file_hash`)."""
    from robrep.digest import file_hash

    return file_hash(path, digits=64)


# ----------------------------------------------------------------------------------------------- reading
class LeRobotDataset:
    """A LeRobot v2.x dataset directory, validated on opening (``meta/info.json``, ``episodes.jsonl``,
    ``tasks.jsonl`` present and consistent). :meth:`episode` loads one episode: its parquet columns (vectors
    ``(T, K)``, scalars ``(T,)``) and its decoded video frames (uint8 ``(T, H, W, 3)``)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LeRobotFormatError(f"LeRobot dataset not found (or not a directory): {self.root}")
        self.info: dict[str, Any] = self._json(INFO_PATH)
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v2."):
            raise LeRobotFormatError(f"{self.root}: codebase_version {version!r} in {INFO_PATH}; only the v2.x layout "
                                     "(parquet and MP4 per episode, jsonl metadata) is read")
        missing = [k for k in ("fps", "features", "data_path", "total_episodes") if k not in self.info]
        if missing:
            raise LeRobotFormatError(f"{self.root}/{INFO_PATH} lacks {missing}")
        self.features: dict[str, dict] = self.info["features"]
        self.fps = float(self.info["fps"])
        self.chunks_size = int(self.info.get("chunks_size", CHUNKS_SIZE))
        self.video_keys = [k for k, ft in self.features.items() if ft.get("dtype") == "video"]
        if self.video_keys and not self.info.get("video_path"):
            raise LeRobotFormatError(f"{self.root}/{INFO_PATH} has video features {self.video_keys} but no video_path")
        self.tasks = {int(r["task_index"]): str(r["task"]) for r in self._jsonl(TASKS_PATH)}
        self.episodes = sorted(self._jsonl(EPISODES_PATH), key=lambda r: int(r["episode_index"]))
        indices = [int(r["episode_index"]) for r in self.episodes]
        if indices != list(range(len(indices))) or len(indices) != int(self.info["total_episodes"]):
            raise LeRobotFormatError(f"{self.root}/{EPISODES_PATH} lists episodes {indices[:5]}...; expected 0..N-1 with "
                                     f"N = total_episodes = {self.info['total_episodes']}")
        robrep = self.root / ROBREP_PATH
        self.robrep: dict[str, Any] | None = self._json(ROBREP_PATH) if robrep.exists() else None

    def _json(self, rel: str) -> Any:
        path = self.root / rel
        if not path.is_file():
            raise LeRobotFormatError(f"{self.root}: missing {rel} (not a LeRobot v2.x dataset, or an incomplete copy)")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LeRobotFormatError(f"{path}: not valid JSON ({e})") from e

    def _jsonl(self, rel: str) -> list[dict]:
        path = self.root / rel
        if not path.is_file():
            raise LeRobotFormatError(f"{self.root}: missing {rel} (not a LeRobot v2.x dataset, or an incomplete copy)")
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LeRobotFormatError(f"{path}: not valid JSON lines ({e})") from e

    def __len__(self) -> int:
        return len(self.episodes)

    def files(self) -> list[Path]:
        """Every file the dataset consists of (metadata, one parquet per episode, one MP4 per episode and camera)."""
        out = [self.root / p for p in (INFO_PATH, EPISODES_PATH, TASKS_PATH, EPISODES_STATS_PATH, ROBREP_PATH)
               if (self.root / p).is_file()]
        for e in range(len(self)):
            out.append(self.data_file(e))
            out += [self.video_file(e, k) for k in self.video_keys]
        return out

    def data_file(self, e: int) -> Path:
        return self.root / self.info["data_path"].format(episode_chunk=e // self.chunks_size, episode_index=e)

    def video_file(self, e: int, key: str) -> Path:
        return self.root / self.info["video_path"].format(episode_chunk=e // self.chunks_size, video_key=key,
                                                          episode_index=e)

    def content_hash(self) -> str:
        """sha256 (hex) over the relative path and bytes of every file of the dataset (:meth:`files`); remembered in
        this process while no file's size or mtime changes (a sweep resolves its dataset once per cell)."""
        files, stamp = self.files(), []
        for path in files:
            try:
                st = path.stat()
            except FileNotFoundError:
                raise LeRobotFormatError(f"{self.root}: {path.relative_to(self.root)} is missing (its {EPISODES_PATH} "
                                         f"lists {len(self)} episodes)") from None
            stamp.append((str(path.relative_to(self.root)), st.st_size, st.st_mtime_ns))
        memo_key = (str(self.root.resolve()), tuple(stamp))
        if memo_key not in _HASH_MEMO:
            h = hashlib.sha256()
            for (rel, size, _), path in zip(stamp, files):
                h.update(f"{rel}\0{size}\0".encode())
                h.update(_file_sha256(path).encode())
            _HASH_MEMO[memo_key] = h.hexdigest()
        return _HASH_MEMO[memo_key]

    def episode(self, e: int) -> dict[str, Any]:
        """Episode ``e``: ``{"length": T, "tasks": [str], "columns": {key: (T,) or (T, K)}, "frames": {video key:
        uint8 (T, H, W, 3)}}``; raises :class:`LeRobotFormatError` naming the file when one is missing, truncated or
        disagrees with the metadata."""
        import pyarrow.parquet as pq

        meta = self.episodes[e]
        T = int(meta["length"])
        path = self.data_file(e)
        if not path.is_file():
            raise LeRobotFormatError(f"{self.root}: episode {e}'s parquet file {path.relative_to(self.root)} is missing")
        try:
            table = pq.read_table(path)
        except Exception as e2:  # pyarrow raises ArrowInvalid / OSError on truncated or damaged files
            raise LeRobotFormatError(f"{path}: cannot read the parquet file, it is truncated or corrupt ({e2})") from e2
        if table.num_rows != T:
            raise LeRobotFormatError(f"{path}: {table.num_rows} rows but {EPISODES_PATH} says length {T}")
        columns: dict[str, np.ndarray] = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if hasattr(col.type, "value_type"):  # (fixed-size) list column -> (T, K)
                flat = col.flatten().to_numpy(zero_copy_only=False)
                columns[name] = flat.reshape(T, -1) if T else flat.reshape(0, 0)
            else:
                columns[name] = col.to_numpy(zero_copy_only=False)
        for key in ("frame_index", "episode_index"):
            if key in columns:
                want = np.arange(T) if key == "frame_index" else np.full(T, e)
                if not np.array_equal(columns[key], want):
                    raise LeRobotFormatError(f"{path}: column {key} is not {'0..T-1' if key == 'frame_index' else e}")
        frames = {k: self._decode(self.video_file(e, k), T, self.features[k]) for k in self.video_keys}
        return {"length": T, "tasks": [str(t) for t in meta.get("tasks", [])], "columns": columns, "frames": frames}

    def _decode(self, path: Path, T: int, feature: Mapping[str, Any]) -> np.ndarray:
        import imageio_ffmpeg

        if not path.is_file():
            raise LeRobotFormatError(f"{self.root}: video {path.relative_to(self.root)} is missing")
        try:
            gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
            meta = next(gen)
            w, h = meta["size"]
            frames = [np.frombuffer(buf, np.uint8).reshape(h, w, 3) for buf in gen]
        except (OSError, RuntimeError, StopIteration, ValueError) as err:
            raise LeRobotFormatError(f"{path}: cannot decode the video, it is truncated or corrupt ({err})") from err
        if len(frames) < T:
            raise LeRobotFormatError(f"{path}: {len(frames)} video frames for an episode of {T} frames (truncated?)")
        shape = list(feature.get("shape") or [])
        if len(shape) == 3 and shape[-1] != 3 and shape[0] == 3:  # a channels-first declaration
            shape = shape[1:] + shape[:1]
        if shape and [h, w, 3] != shape:
            raise LeRobotFormatError(f"{path}: frames are {h}x{w}, {INFO_PATH} declares {shape}")
        return np.stack(frames[:T]) if T else np.zeros((0, h, w, 3), np.uint8)


def read_lerobot(root: str | os.PathLike) -> LeRobotDataset:
    """Open the LeRobot v2.x dataset directory ``root`` (validated metadata; episodes load on demand)."""
    return LeRobotDataset(root)


def _parse_range(text: str, n: int) -> list[int] | None:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
    if not m:
        return None
    a, b = int(m.group(1)), int(m.group(2))
    return list(range(a, b)) if 0 <= a <= b <= n else None


def _foreign_masks(splits: Mapping[str, str], names: list[str]) -> dict[str, list[str]]:
    n = len(names)
    train = _parse_range(splits.get("train", ""), n) if "train" in splits else None
    valid = _parse_range(splits.get("valid", splits.get("validation", "")), n)
    if train and valid is not None and not set(train) & set(valid):
        masks = split_masks([names[i] for i in train], 0.0, DEFAULT_SUBSET_SIZES, DEFAULT_SUBSET_SEEDS)
        masks["valid"] = [names[i] for i in valid]
        return masks
    pool = [names[i] for i in train] if train else names
    return split_masks(pool, 0.1 if len(pool) > 1 else 0.0, DEFAULT_SUBSET_SIZES, DEFAULT_SUBSET_SEEDS)


def to_demo_file(root: str | os.PathLike, out_path: str | os.PathLike, progress: bool = False) -> Path:
    """Convert the LeRobot dataset ``root`` into a robrep demo file at ``out_path`` (written atomically; mapping
    and what a foreign dataset gets: module docstring). Returns ``out_path``."""
    import h5py
    from tqdm import tqdm

    ds = read_lerobot(root)
    out_path = Path(out_path)
    meta = ds.robrep or {}
    names = [f"demo_{e}" for e in range(len(ds))]
    if meta:
        env_args = dict(meta["env_args"])
        masks = {k: list(v) for k, v in meta.get("masks", {}).items()}
        extras = meta.get("episodes", [])
        if len(extras) != len(ds):
            raise LeRobotFormatError(f"{ds.root}/{ROBREP_PATH} describes {len(extras)} episodes, the dataset has {len(ds)}")
    else:
        env_args = {"env_name": f"lerobot/{ds.root.name}", "type": 2, "env_kwargs": {}, "task": ds.root.name,
                    "fps": ds.fps, "robot_type": ds.info.get("robot_type"), "source": f"lerobot:{ds.root}"}
        masks = _foreign_masks(ds.info.get("splits") or {}, names)
        extras = []
    cams = {k: k.removeprefix("observation.images.") for k in ds.video_keys}
    if not meta and len(cams) == 1:
        cams = {k: "image" for k in cams}
    part = out_path.with_name(f".{out_path.name}.part-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with DemoWriter(part, env_args, valid_fraction=0.0) as writer:
            for e in tqdm(range(len(ds)), desc=f"convert {ds.root.name}", unit="episode", disable=not progress):
                ep = ds.episode(e)
                cols, T = ep["columns"], ep["length"]
                obs: dict[str, np.ndarray] = {cams[k]: v for k, v in ep["frames"].items()}
                for key, v in cols.items():
                    if key == "observation.state":
                        obs["proprio"] = v.astype(np.float32, copy=False)
                    elif key == "robrep.state":
                        obs["state"] = v.astype(np.float32, copy=False)
                    elif key.startswith("observation.") and not key.startswith("observation.images."):
                        name = key.removeprefix("observation.").replace(".", "_").replace("/", "_")
                        obs[name] = v.reshape(T, -1).astype(np.float32, copy=False)
                if "action" not in cols:
                    raise LeRobotFormatError(f"{ds.data_file(e)}: no 'action' column")
                rewards = cols.get("next.reward", np.zeros(T, np.float32)).reshape(T)
                if "next.done" in cols:
                    dones = cols["next.done"].reshape(T).astype(np.uint8)
                else:
                    dones = (np.arange(T) == T - 1).astype(np.uint8)
                states = cols.get("robrep.sim_state", np.zeros((T, 0), np.float64))
                if extras:
                    seed, ep_meta = int(extras[e]["seed"]), extras[e]["ep_meta"]
                else:
                    task = ep["tasks"][0] if ep["tasks"] else ""
                    if not task and "task_index" in cols and T:
                        task = ds.tasks.get(int(cols["task_index"][0]), "")
                    seed, ep_meta = e, {"instruction": task}
                writer.add_episode(obs, cols["action"].reshape(T, -1), rewards, dones, states, seed=seed, ep_meta=ep_meta)
            writer.attrs.update({k: v for k, v in meta.get("attrs", {}).items() if v is not None})
            writer.attrs["source_format"] = f"lerobot {ds.info['codebase_version']}"
        with h5py.File(part, "r+") as f:  # the dataset's own masks replace the writer's (all demos in train)
            del f["mask"]
            for key, demo_names in masks.items():
                bad = [n for n in demo_names if n not in names]
                if bad:
                    raise LeRobotFormatError(f"{ds.root}/{ROBREP_PATH}: mask {key} names unknown demos {bad[:3]}")
                f.create_dataset(f"mask/{key}", data=np.array(demo_names, dtype="S"))
        os.replace(part, out_path)
    finally:
        part.unlink(missing_ok=True)
    return out_path


def cached_demo_file(root: str | os.PathLike, cache_dir: str | os.PathLike = "cache/lerobot",
                     progress: bool = False) -> Path:
    """The robrep demo file of the LeRobot dataset ``root``, converted once (:func:`to_demo_file`) into
    ``<cache_dir>/<dataset dir name>-<content hash>.hdf5``; the key hashes every metadata, parquet and MP4 byte and
    the converter version, so an edited dataset gets a new file. A damaged cached file is converted again."""
    ds = read_lerobot(root)
    key = hashlib.sha256(f"{CONVERTER_VERSION}:{ds.content_hash()}".encode()).hexdigest()[:16]
    out = Path(cache_dir) / f"{ds.root.resolve().name}-{key}.hdf5"
    if out.is_file():
        try:
            DemoFile(out).close()
            return out
        except DemoFileError:
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    return to_demo_file(ds.root, out, progress=progress)
