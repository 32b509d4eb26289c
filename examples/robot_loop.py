"""A fixed-rate control loop: camera frames in, a trained robrep policy, robot commands out.

Meant to be copied and edited. Three pieces, each a small class:

- a **source** (``read() -> Frame | None``): the newest camera image (uint8 ``(H, W, 3)``) and, if the robot reports
  it, the proprio the policy was trained with (TCP xyz in m + finger opening in m per side; zeros otherwise, with a
  warning). Here: :class:`FolderSource` (images sorted by name), :class:`VideoSource` (a video file) and
  :class:`SimSource` (a robrep MuJoCo task, which is also the sink that applies the actions).
- a **controller** (``act(image, proprio) -> action (4,)`` in [-1, 1]): :class:`TorchController` runs
  ``policies.load_policy(path)`` (``Policy.act``); :class:`OnnxController` runs the file of ``robrep export
  format=onnx`` with onnxruntime only, executing its action chunks the way the checkpoint's ``Policy.act`` does
  (temporal ensembling or open loop).
- a **sink** (``send(action)``): :class:`PrintSink` prints the command a robot would get (TCP displacement in m,
  gripper in [-1 open, 1 closed]); replace its ``send`` with your robot's command.

The loop (:func:`run_loop`) starts a step every ``1 / rate_hz`` s (``time.perf_counter``, sleeping until the next
step's start), times each step's read / act / send, and counts a deadline miss when a step ends after its period;
a late step starts the next one at once (no burst of catch-up steps). Per-step latencies and actions go to a CSV.

    python examples/robot_loop.py --policy runs/policies/x.pt --source sim:push --rate-hz 10 --steps 50
    python examples/robot_loop.py --policy runs/policies/x.pt --onnx x.onnx --source folder:frames/ --log loop.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np

log = logging.getLogger("robot_loop")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


# ---------------------------------------------------------------------------------------------------- sources
@dataclass
class Frame:
    """One observation: ``image`` uint8 ``(H, W, 3)``, ``proprio`` float32 ``(P,)`` or ``None`` when the source has
    none, ``new_episode`` true on the first frame of an episode (the controller forgets its history)."""

    image: np.ndarray
    proprio: np.ndarray | None = None
    new_episode: bool = False


class Source(Protocol):
    def read(self) -> Frame | None:
        """The newest frame, or ``None`` when the source is exhausted (the loop stops)."""


class FolderSource:
    """The images of a folder (``.png``/``.jpg``/``.bmp``), sorted by file name, one per step.

    A live camera is the same class with ``read`` returning the camera's newest frame (drop stale frames: the
    policy should see the scene as it is now)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {folder}")
        self.index = 0

    def read(self) -> Frame | None:
        if self.index >= len(self.paths):
            return None
        import imageio.v3 as iio

        image = iio.imread(self.paths[self.index])
        self.index += 1
        return Frame(as_rgb(image), None, self.index == 1)


class VideoSource:
    """The frames of a video file (any format imageio's ffmpeg plugin reads), one per step."""

    def __init__(self, path: str | os.PathLike) -> None:
        import imageio.v2 as imageio

        if not Path(path).is_file():
            raise FileNotFoundError(path)
        self.reader = imageio.get_reader(str(path))
        self.frames: Iterator[np.ndarray] = iter(self.reader)
        self.first = True

    def read(self) -> Frame | None:
        image = next(self.frames, None)
        if image is None:
            self.reader.close()
            return None
        first, self.first = self.first, False
        return Frame(as_rgb(image), None, first)


class SimSource:
    """A robrep task in MuJoCo as the robot: ``read`` gives its camera image and proprio, ``send`` applies the
    action (it is the loop's sink too). Episodes restart on success or time-out from the next layout seed
    (development layouts by default); ``stats`` counts finished episodes and successes."""

    def __init__(self, task: str, seed: int = 1_000_000, **env_kwargs: Any) -> None:
        import envs

        self.env = envs.make_env(task, **env_kwargs)
        self.seed = int(seed)
        self.obs, _ = self.env.reset(seed=self.seed)
        self.new_episode = True
        self.episodes = self.successes = 0
        self.success = False  # of the current (or just finished) episode

    def read(self) -> Frame:
        frame = Frame(self.obs["image"], self.obs["proprio"], self.new_episode)
        self.new_episode = False
        return frame

    def send(self, action: np.ndarray) -> None:
        self.obs, _, terminated, truncated, info = self.env.step(action)
        self.success = bool(info["success"])
        if terminated or truncated:
            self.episodes += 1
            self.successes += self.success
            self.seed += 1
            self.obs, _ = self.env.reset(seed=self.seed)
            self.new_episode = True

    def stats(self) -> dict[str, Any]:
        return {"episodes_done": self.episodes, "successes": self.successes, "success_now": self.success}

    def close(self) -> None:
        self.env.close()


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, RGB, RGBA; uint8) → uint8 ``(H, W, 3)``."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype != np.uint8:
        raise ValueError(f"expected 8-bit images, got {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at the policy's training size ``(H, W)``: centre-cropped to its aspect ratio and resized."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    from PIL import Image

    ih, iw = image.shape[:2]
    scale = min(ih / h, iw / w)
    ch, cw = round(h * scale), round(w * scale)
    top, left = (ih - ch) // 2, (iw - cw) // 2
    crop = Image.fromarray(image[top:top + ch, left:left + cw])
    return np.array(crop.resize((w, h), Image.BILINEAR))


# ---------------------------------------------------------------------------------------------------- controllers
class Controller(Protocol):
    image_size: tuple[int, int]
    proprio_dim: int

    def reset(self) -> None:
        """Forget the frame and action-chunk history (a new episode)."""

    def act(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` + float32 ``(P,)`` → the action to execute now, float32 ``(4,)`` in [-1, 1]."""


def policy_image_size(meta: dict[str, Any]) -> tuple[int, int]:
    """The image size ``(H, W)`` a checkpoint was trained at."""
    size = meta["shape_meta"].get("image_size") or [meta["env_kwargs"].get("image_size", 96)] * 2
    return int(size[0]), int(size[1])


class TorchController:
    """A robrep :class:`policies.policy.Policy` (``load_policy(path)``): ``Policy.act`` handles frame stacking and
    action chunks."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.image_size = policy_image_size(policy.meta)
        self.proprio_dim = int(policy.model.proprio_dim)

    def reset(self) -> None:
        self.policy.reset(1)

    def act(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        return self.policy.act({"image": image, "proprio": proprio})


class OnnxController:
    """The file of ``robrep export format=onnx`` (``image`` uint8 ``(B, H, W, 3)``, ``proprio`` ``(B, P)`` → chunk
    ``(B, k, A)``) in onnxruntime, or in OpenVINO (``runtime="openvino"``: the same file, bfloat16 on CPUs that compute
    it natively, float32 elsewhere — usually the fastest on Intel CPUs). The chunk is executed as ``Policy.act``
    would: ``ensemble`` averages the ``k`` predictions made for this step (ACT temporal ensembling with weights
    ``exp(-decay · age rank)``), ``open_loop`` plays each chunk's ``k`` actions before looking again. Pass the checkpoint's ``chunk_execution`` and
    ``ensemble_decay`` (see :func:`checkpoint_meta`)."""

    def __init__(self, path: str | os.PathLike, chunk_execution: str = "ensemble", ensemble_decay: float = 0.01,
                 threads: int | None = None, runtime: str = "onnxruntime") -> None:
        if chunk_execution not in ("ensemble", "open_loop"):
            raise ValueError(f"chunk_execution must be 'ensemble' or 'open_loop', got {chunk_execution!r}")
        if runtime == "openvino":  # the same file in OpenVINO: bfloat16 on CPUs that compute it natively
            with contextlib.redirect_stderr(sys.__stderr__):  # its absl logging handler keeps (and later closes)
                import openvino as ov                         # the stderr of import time: give it the process's own

            config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {})}
            compiled = ov.Core().compile_model(str(path), "CPU", config)
            request, output = compiled.create_infer_request(), compiled.output(0)
            self._run = lambda feeds: request.infer([feeds["image"], feeds["proprio"]])[output]
            shapes = {next((n for n in ("image", "proprio") if n in i.get_names()), i.get_any_name()):
                      list(i.get_partial_shape()) for i in compiled.inputs}
            out_shape = list(compiled.output(0).get_partial_shape())[1:]
        elif runtime == "onnxruntime":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self._run = lambda feeds: session.run(None, feeds)[0]
            shapes = {i.name: i.shape for i in session.get_inputs()}
            out_shape = session.get_outputs()[0].shape[1:]
        else:
            raise ValueError(f"runtime must be 'onnxruntime' or 'openvino', got {runtime!r}")
        self.image_size = int(str(shapes["image"][1])), int(str(shapes["image"][2]))
        self.proprio_dim = int(str(shapes["proprio"][1]))
        self.chunk, self.action_dim = (int(str(d)) for d in out_shape)
        self.chunk_execution, self.decay = chunk_execution, float(ensemble_decay)
        self.reset()

    def reset(self) -> None:
        from policies.chunking import TemporalEnsembler  # NumPy only: the ONNX path never imports torch

        # ensemble: Policy.act's averaging, one env
        self.ensembler = TemporalEnsembler(self.chunk, self.action_dim, self.decay)
        self.queue: list[np.ndarray] = []    # open_loop: the actions left in the current chunk

    def predict(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """One forward pass: the chunk ``(k, A)`` predicted from this frame."""
        feeds = {"image": np.ascontiguousarray(image[None]), "proprio": np.asarray(proprio, np.float32)[None]}
        return np.asarray(self._run(feeds))[0]

    def act(self, image: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        if self.chunk_execution == "open_loop":
            if not self.queue:
                self.queue = list(self.predict(image, proprio))
            return np.clip(self.queue.pop(0), -1.0, 1.0).astype(np.float32)
        return np.clip(self.ensembler(self.predict(image, proprio)[None])[0], -1.0, 1.0)


# ---------------------------------------------------------------------------------------------------- sinks
class Sink(Protocol):
    def send(self, action: np.ndarray) -> None:
        """Command the robot with ``action`` (4,) in [-1, 1]."""


class PrintSink:
    """Prints the command a robot would receive; **edit** ``send`` to command yours. An action ``a`` (4,) in
    [-1, 1] means: move the tool centre point by ``a[:3] * max_delta`` m (x, y, z in the frame the demos were
    recorded in: the table frame of the robrep tasks) within one control step, and set the gripper to ``a[3]``
    (-1 open ... 1 closed)."""

    def __init__(self, max_delta: float = 0.02) -> None:
        self.max_delta = float(max_delta)

    def send(self, action: np.ndarray) -> None:
        dx, dy, dz = (float(v) * self.max_delta for v in action[:3])
        print(f"move tcp by ({dx:+.4f}, {dy:+.4f}, {dz:+.4f}) m, gripper {float(action[3]):+.2f}")


# ---------------------------------------------------------------------------------------------------- the loop
@dataclass
class LoopReport:
    """What :func:`run_loop` measured: one row per step (``step, t_s, read_ms, act_ms, send_ms, total_ms,
    late_ms, missed, a0..``), the actions ``(steps, A)``, the deadline misses and the source's stats."""

    rate_hz: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    source_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def misses(self) -> int:
        return int(sum(r["missed"] for r in self.rows))

    def latency_ms(self, q: float) -> float:
        """The ``q``-th percentile of the per-step total latency (read + act + send), ms."""
        return float(np.percentile([r["total_ms"] for r in self.rows], q)) if self.rows else float("nan")

    def summary(self) -> str:
        line = (f"{len(self.rows)} steps at {self.rate_hz:g} Hz: latency p50 {self.latency_ms(50):.1f} ms, "
                f"p99 {self.latency_ms(99):.1f} ms, {self.misses} deadline misses "
                f"(period {1000 / self.rate_hz:.1f} ms)")
        return line + "".join(f", {k} {v}" for k, v in self.source_stats.items())

    def write_csv(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[0]) if self.rows else ["step"])
            writer.writeheader()
            writer.writerows(self.rows)
        return path


def run_loop(source: Source, controller: Controller, sink: Sink, rate_hz: float, steps: int,
             clock: Callable[[], float] = time.perf_counter,
             sleep: Callable[[float], None] = time.sleep) -> LoopReport:
    """Run ``steps`` control steps (fewer if the source runs out) at ``rate_hz``: read a frame, act, send. Step
    ``i`` has the period after its start; it misses its deadline when ``send`` returns after that. ``clock`` and
    ``sleep`` are injectable for tests."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    period = 1.0 / rate_hz
    report = LoopReport(rate_hz=float(rate_hz))
    zeros = np.zeros(controller.proprio_dim, np.float32)
    controller.reset()
    start = step_start = clock()
    for i in range(steps):
        t0 = clock()
        frame = source.read()
        if frame is None:
            break
        if frame.new_episode and i:
            controller.reset()
        proprio = frame.proprio
        if proprio is None:
            if i == 0:
                log.warning("the source gives no proprio: the policy gets zeros (%d,); give it the robot's TCP "
                            "position and finger opening if you can", controller.proprio_dim)
            proprio = zeros
        t1 = clock()
        action = controller.act(fit(frame.image, controller.image_size), proprio)
        t2 = clock()
        sink.send(action)
        t3 = clock()
        deadline = step_start + period
        late = t3 - deadline
        report.actions.append(np.asarray(action, np.float32))
        report.rows.append({"step": i, "t_s": round(t0 - start, 6), "read_ms": 1e3 * (t1 - t0),
                            "act_ms": 1e3 * (t2 - t1), "send_ms": 1e3 * (t3 - t2), "total_ms": 1e3 * (t3 - t0),
                            "late_ms": 1e3 * late, "missed": int(late > 0),
                            **{f"a{j}": float(v) for j, v in enumerate(action)}})
        log.debug("step %d: read %.1f ms, act %.1f ms, send %.1f ms%s", i, 1e3 * (t1 - t0), 1e3 * (t2 - t1),
                  1e3 * (t3 - t2), " (deadline missed)" if late > 0 else "")
        if late > 0:
            step_start = t3  # start the next step now: no catch-up burst
        else:
            step_start = deadline
            if i + 1 < steps:
                sleep(max(0.0, deadline - clock()))
    stats = getattr(source, "stats", None)
    report.source_stats = stats() if stats else {}
    return report


# ---------------------------------------------------------------------------------------------------- command line
def checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A robrep policy checkpoint without its weights (``task``, ``env_kwargs``, ``policy_config``, ...)."""
    from policies.checkpoint import read_policy_checkpoint

    return {k: v for k, v in read_policy_checkpoint(path).items() if k != "state_dict"}


def make_source(spec: str, meta: dict[str, Any], seed: int) -> Source:
    """``sim`` | ``sim:<task>`` | ``folder:<dir>`` | ``video:<file>`` → a source (sim: the policy's env settings)."""
    kind, _, arg = spec.partition(":")
    if kind == "sim":
        return SimSource(arg or meta["task"], seed=seed, **meta["env_kwargs"])
    if kind == "folder":
        return FolderSource(arg)
    if kind == "video":
        return VideoSource(arg)
    raise ValueError(f"--source must be sim[:<task>], folder:<dir> or video:<file>, got {spec!r}")


def main(argv: list[str] | None = None) -> LoopReport:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="robrep policy checkpoint (.pt)")
    parser.add_argument("--onnx", help="run this exported file (robrep export format=onnx) instead of PyTorch")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                        help="what runs --onnx (openvino: pip install openvino; bfloat16 where the CPU has it)")
    parser.add_argument("--source", default="sim", help="sim[:<task>] | folder:<dir> | video:<file>")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1_000_000, help="sim: first layout seed")
    parser.add_argument("--log", default="runs/robot_loop.csv", help="CSV of per-step latencies and actions")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering for the sim source
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    meta = checkpoint_meta(args.policy)
    if args.onnx:
        config = meta["policy_config"]
        controller: Controller = OnnxController(args.onnx, config.get("chunk_execution", "ensemble"),
                                                config.get("ensemble_decay", 0.01), runtime=args.runtime)
    else:
        from policies.policy import load_policy

        controller = TorchController(load_policy(args.policy, device=args.device))
    source = make_source(args.source, meta, args.seed)
    sink = source if isinstance(source, SimSource) else PrintSink(meta["env_kwargs"].get("max_delta", 0.02))
    try:
        report = run_loop(source, controller, sink, args.rate_hz, args.steps)
    finally:
        if isinstance(source, SimSource):
            source.close()
    print(f"per-step log: {report.write_csv(args.log)}")
    print(report.summary())
    return report


if __name__ == "__main__":
    main()
