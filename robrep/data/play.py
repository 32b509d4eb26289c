"""Multi-task "play" corpus: exploration episodes for pretraining encoders and world models.

A play episode of a task follows a per-episode *behaviour* that mixes the task's scripted expert
(:func:`envs.experts.make_expert`, with Gaussian action noise) with random-action segments
(:class:`PlayBehaviour`):

* ``noise_std`` -- std of the Gaussian noise the expert adds to its actions (action units; actions
  are clipped to [-1, 1]);
* ``segment_steps`` -- the episode is cut into segments of this many steps (env steps);
* ``random_prob`` -- at the start of each segment, with this probability, one random action
  ``U([-1, 1]^4)`` replaces the expert and is *held constant* over the segment (a straight
  end-effector motion with a fixed gripper command);
* ``random_episode_fraction`` -- with this probability a whole episode is random (every segment).

Every episode is kept, successful or not: it runs for the task's ``max_episode_steps`` unless it
succeeds and the env terminates. Episode ``k`` of every task is reset with seed ``seed_start + k``
from :data:`robrep.seeds.PLAY_SEEDS` = [2_000_000, 3_000_000), disjoint from the demo and
evaluation seeds. Each task goes to ``<out_dir>/<task>.hdf5`` in robomimic's layout
(:class:`robrep.data.demo_file.DemoWriter`: atomic temp file + rename, ``env_args`` with the
``visuals`` setting) with ``data.attrs``: ``kind="play"``, ``task``, ``behaviour`` (JSON of
:class:`PlayBehaviour`), ``visuals``, ``seed_start``, ``episodes``, ``successes``. Each episode's
``ep_meta`` adds ``play_fully_random`` and ``play_random_segments`` (indices of its random segments).
A re-run skips task files that are already complete with the same settings.

Command line (``configs/collect.yaml``, block ``play``; the visual setting is ``task.visuals``)::

    robrep collect mode=play task.visuals=varied                      # -> data/play/varied/<task>.hdf5
    robrep collect mode=play task.visuals=varied play.episodes_per_task=500 play.jobs=2

Pretraining on the corpus (leave-one-task-out: drop the held-out task, e.g. with
``play_files("data/play/varied", exclude=("push_color",))``)::

    robrep pretrain encoder=mae data=[data/play/varied/reach.hdf5,data/play/varied/push.hdf5,\\
        data/play/varied/pick_place.hdf5,data/play/varied/button.hdf5]
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import os
import queue
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from envs import TASK_IDS, make_env
from envs.experts import make_expert
from envs.visuals import check_setting
from robrep.data.collect import rollout_episode
from robrep.data.demo_file import DemoFile, DemoFileError, DemoWriter, split_masks
from robrep.interrupt import Pending, deferred_interrupts
from robrep.seeds import PLAY_SEEDS, check_play_seed
from robrep.threads import thread_limit

#: Tasks of the default corpus (the tabletop tasks of :mod:`envs`).
DEFAULT_TASKS: tuple[str, ...] = ("reach", "push", "pick_place", "button", "push_color")


@dataclass(frozen=True)
class PlayBehaviour:
    """How play episodes mix the scripted expert with random actions (see the module docstring).

    ``noise_std`` >= 0 (action units), ``random_prob`` and ``random_episode_fraction`` in [0, 1],
    ``segment_steps`` >= 1 (env steps).
    """

    noise_std: float = 0.1
    random_prob: float = 0.3
    segment_steps: int = 10
    random_episode_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("random_prob", "random_episode_fraction"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not float(self.noise_std) >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if int(self.segment_steps) != self.segment_steps or self.segment_steps < 1:
            raise ValueError(f"segment_steps must be an integer >= 1, got {self.segment_steps}")

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), as stored in ``data.attrs["behaviour"]``."""
        return json.dumps({k: (int(v) if k == "segment_steps" else float(v)) for k, v in asdict(self).items()},
                          sort_keys=True)


def _stream(seed: int, task: str, stream: int) -> np.random.Generator:
    """An RNG for episode ``seed`` of ``task``: one independent stream per purpose (1 = expert noise,
    2 = random segments), decorrelated from the env's layout RNG and across tasks."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(task.encode()), stream]))


class PlayPolicy:
    """Behaviour policy of one play episode: ``policy(obs) -> float32 (4,)`` in [-1, 1].

    The expert is queried at every step (so its phase machine follows the actual state, and its
    noise stream does not depend on which segments are random); in a random segment its action is
    replaced by the segment's random action. :attr:`fully_random` and :attr:`random_segments` are
    drawn at :meth:`reset` / segment starts from an RNG seeded by ``(seed, task)``.
    """

    def __init__(self, env, behaviour: PlayBehaviour, seed: int, task: str) -> None:
        self.behaviour = behaviour
        self.expert = make_expert(env, noise_std=behaviour.noise_std,
                                  seed=int(_stream(seed, task, 1).integers(2**63)))
        self.rng = _stream(seed, task, 2)
        self.reset()

    def reset(self) -> None:
        """Start the episode: reset the expert and draw whether the whole episode is random."""
        self.expert.reset()
        self.t = 0
        self.fully_random = bool(self.rng.random() < self.behaviour.random_episode_fraction)
        self.random_segments: list[int] = []
        self._random_action: np.ndarray | None = None

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = self.expert(obs)
        segment, offset = divmod(self.t, self.behaviour.segment_steps)
        if offset == 0:
            random = self.fully_random or bool(self.rng.random() < self.behaviour.random_prob)
            self._random_action = self.rng.uniform(-1.0, 1.0, 4).astype(np.float32) if random else None
            if random:
                self.random_segments.append(segment)
        self.t += 1
        return (action if self._random_action is None else self._random_action.copy()).astype(np.float32)


class PlayInterrupted(Exception):
    """Raised inside a collection when a stop was requested (SIGTERM, another worker failed)."""


def _check_tasks(tasks: Sequence[str]) -> list[str]:
    tasks = [str(t) for t in tasks]
    unknown = [t for t in tasks if t not in TASK_IDS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {sorted(TASK_IDS)}")
    if len(set(tasks)) != len(tasks) or not tasks:
        raise ValueError(f"tasks must be a non-empty list without repeats, got {tasks}")
    return tasks


def _check_seeds(seed_start: int, episodes: int) -> None:
    if episodes < 1:
        raise ValueError(f"episodes per task must be >= 1, got {episodes}")
    check_play_seed(seed_start)
    if seed_start + episodes > PLAY_SEEDS.stop:
        raise ValueError(f"seeds {seed_start}..{seed_start + episodes - 1} would leave the play seed range "
                         f"[{PLAY_SEEDS.start}, {PLAY_SEEDS.stop})")


def task_path(out_dir: str | os.PathLike, task: str) -> Path:
    """Path of ``task``'s play file in ``out_dir``: ``<out_dir>/<task>.hdf5``."""
    return Path(out_dir) / f"{task}.hdf5"


def play_files(out_dir: str | os.PathLike, tasks: Sequence[str] = DEFAULT_TASKS, exclude: Iterable[str] = (),
               check: bool = True) -> list[Path]:
    """Play files of ``tasks`` minus ``exclude`` in ``out_dir`` (e.g. leave-one-task-out pretraining:
    ``exclude=("push_color",)``), in ``tasks`` order; ready for ``robrep pretrain data=[...]``.

    Raises ``ValueError`` if ``exclude`` names a task not in ``tasks`` (a typo would silently keep the
    held-out task) or leaves nothing, and ``FileNotFoundError`` (when ``check``) for missing files.
    """
    tasks, exclude = _check_tasks(tasks), set(exclude)
    if exclude - set(tasks):
        raise ValueError(f"exclude names task(s) {sorted(exclude - set(tasks))} not among tasks {tasks}")
    paths = [task_path(out_dir, t) for t in tasks if t not in exclude]
    if not paths:
        raise ValueError(f"excluding {sorted(exclude)} leaves no play files")
    missing = [str(p) for p in paths if not p.is_file()]
    if check and missing:
        raise FileNotFoundError(f"missing play file(s) {missing}; run `robrep collect mode=play` first")
    return paths


def _expected_attrs(task: str, episodes: int, behaviour: PlayBehaviour, visuals: str, seed_start: int) -> dict:
    return {"kind": "play", "task": task, "behaviour": behaviour.to_json(), "visuals": visuals,
            "seed_start": int(seed_start), "episodes": int(episodes)}


def _existing(path: Path, expected: dict[str, Any], image_size: int) -> dict[str, Any] | None:
    """Summary of a complete play file at ``path`` made with the ``expected`` settings, or ``None``
    if there is no usable file (missing, or incomplete/corrupt: it will be re-collected). Raises
    ``ValueError`` for a complete file made with other settings (never overwritten silently)."""
    if not path.exists():
        return None
    try:
        with DemoFile(path) as f:
            attrs, n, size = f.attrs, len(f), f.env_args.get("env_kwargs", {}).get("image_size")
    except DemoFileError as e:
        warnings.warn(f"re-collecting {path}: {e}", stacklevel=3)
        return None
    found = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items() if k in expected}
    found["image_size"], want = size, {**expected, "image_size": image_size}
    diff = {k: (found.get(k), v) for k, v in want.items() if found.get(k) != v}
    if n != expected["episodes"]:
        diff["num_episodes"] = (n, expected["episodes"])
    if diff:
        raise ValueError(f"{path} exists but was made with other settings (found, wanted): {diff}; "
                         "delete it or choose another out_dir")
    return {"task": expected["task"], "visuals": expected["visuals"], "episodes": n, "frames": int(attrs["total"]),
            "successes": int(attrs.get("successes", 0)), "seconds": 0.0, "path": str(path), "skipped": True}


def collect_play_task(
    task: str,
    episodes: int,
    out_path: str | os.PathLike,
    behaviour: PlayBehaviour = PlayBehaviour(),
    image_size: int = 96,
    visuals: str = "clean",
    seed_start: int = PLAY_SEEDS.start,
    valid_fraction: float = 0.1,
    on_episode: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Collect ``episodes`` play episodes of ``task`` into ``out_path`` (skipped if already complete).

    ``on_episode(T)`` is called after each episode (``T`` = its frames); ``should_stop()`` is polled
    between episodes and raises :class:`PlayInterrupted` (no file is left) when true. ``mask/train`` /
    ``mask/valid`` split off the last ``valid_fraction`` of the episodes (see
    :func:`robrep.data.demo_file.split_masks`). Returns ``{"task", "visuals", "episodes", "frames",
    "successes", "seconds", "path", "skipped"}``.
    """
    _check_tasks([task])
    _check_seeds(seed_start, episodes)
    visuals = check_setting(visuals)
    split_masks([f"demo_{i}" for i in range(episodes)], valid_fraction, (), ())  # fail early
    out_path = Path(out_path)
    attrs = _expected_attrs(task, episodes, behaviour, visuals, seed_start)
    done = _existing(out_path, attrs, image_size)
    if done is not None:
        if on_episode is not None:
            on_episode(-episodes)  # signals "skipped": the caller counts these episodes as done
        return done
    t0 = time.perf_counter()
    env = make_env(task, image_size=image_size, visuals=visuals)
    frames = successes = 0
    try:
        # no next_obs: the corpus is read frame by frame, and a second copy of every image would double it
        with DemoWriter(out_path, env.unwrapped.env_args(), valid_fraction=valid_fraction, next_obs=False) as writer:
            for k in range(episodes):
                if should_stop is not None and should_stop():
                    raise PlayInterrupted(f"stopped while collecting {task} (episode {k} of {episodes})")
                seed = check_play_seed(seed_start + k)
                policy = PlayPolicy(env, behaviour, seed, task)
                ep = rollout_episode(env, policy, seed)
                meta = {**ep["ep_meta"], "play_fully_random": policy.fully_random,
                        "play_random_segments": policy.random_segments}
                writer.add_episode(ep["obs"], ep["actions"], ep["rewards"], ep["dones"], ep["states"],
                                   seed=seed, ep_meta=meta)
                frames += len(ep["actions"])
                successes += ep["success"]
                if on_episode is not None:
                    on_episode(len(ep["actions"]))
            writer.attrs.update(attrs, successes=successes, expert="scripted")
    finally:
        env.close()
    return {"task": task, "visuals": visuals, "episodes": episodes, "frames": frames, "successes": successes,
            "seconds": time.perf_counter() - t0, "path": str(out_path), "skipped": False}


# ---------------------------------------------------------------- worker processes
def _worker_task(task: str, kwargs: dict[str, Any], progress: Any, stop: Any) -> dict[str, Any]:
    """:func:`collect_play_task` in a worker process with one BLAS/OpenMP thread (and one torch thread
    if torch is loaded; play workers do not import it), restored afterwards. ``progress`` (queue) and
    ``stop`` (event) are the parent's manager proxies, passed with each task."""
    with thread_limit(1, load_torch=False):
        return collect_play_task(task, **kwargs, on_episode=lambda n: progress.put((task, n)),
                                 should_stop=stop.is_set)


def collect_play(
    tasks: Sequence[str] = DEFAULT_TASKS,
    episodes_per_task: int = 200,
    out_dir: str | os.PathLike = "data/play/clean",
    behaviour: PlayBehaviour = PlayBehaviour(),
    image_size: int = 96,
    visuals: str = "clean",
    seed_start: int = PLAY_SEEDS.start,
    valid_fraction: float = 0.1,
    jobs: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Collect the play corpus: ``episodes_per_task`` episodes of each task into ``<out_dir>/<task>.hdf5``.

    Tasks run in up to ``jobs`` worker processes ('spawn' context, one BLAS/OpenMP thread each while
    collecting; ``jobs=1`` runs in this process). Complete files with the same settings are skipped; on an
    error, Ctrl-C or SIGTERM every unfinished task's temp file is removed (finished tasks keep their
    files, so a re-run resumes). Raises ``ValueError`` for bad arguments before any work.

    Returns ``{"tasks": [per-task summaries of collect_play_task], "frames" (all files), "new_frames"
    (collected now), "seconds", "frames_per_s" (new frames / seconds), "paths"}``.
    """
    tasks = _check_tasks(tasks)
    _check_seeds(seed_start, episodes_per_task)
    visuals = check_setting(visuals)
    split_masks([f"demo_{i}" for i in range(episodes_per_task)], valid_fraction, (), ())
    if int(jobs) != jobs or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs}")
    kwargs = dict(episodes=episodes_per_task, behaviour=behaviour, image_size=image_size, visuals=visuals,
                  seed_start=seed_start, valid_fraction=valid_fraction)
    for task in tasks:  # settings clash with an existing file: fail before any work
        _existing(task_path(out_dir, task), _expected_attrs(task, episodes_per_task, behaviour, visuals, seed_start),
                  image_size)
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(tasks) * episodes_per_task, desc=f"play {visuals}", unit="ep", disable=not progress)
    frames = {"new": 0}

    def advance(task: str, n: int) -> None:
        bar.update(-n if n < 0 else 1)  # n < 0: a skipped file's episodes
        frames["new"] += max(n, 0)
        bar.set_postfix(frames=frames["new"], refresh=False)

    with bar, deferred_interrupts() as pending:
        if jobs == 1 or len(tasks) == 1:
            for task in tasks:
                try:
                    results[task] = collect_play_task(task, out_path=task_path(out_dir, task), **kwargs,
                                                      on_episode=lambda n, t=task: advance(t, n),
                                                      should_stop=lambda: bool(pending))
                except PlayInterrupted:
                    pending.check()  # stopped for a signal: exit as that signal (KeyboardInterrupt / Terminated)
                    raise
        else:
            results = _run_pool(tasks, out_dir, kwargs, int(jobs), advance, pending)
    seconds = time.perf_counter() - t0
    ordered = [results[t] for t in tasks]
    new = sum(r["frames"] for r in ordered if not r["skipped"])
    return {"tasks": ordered, "frames": sum(r["frames"] for r in ordered), "new_frames": new, "seconds": seconds,
            "frames_per_s": new / seconds if seconds > 0 else 0.0, "paths": [r["path"] for r in ordered]}


def _run_pool(tasks: list[str], out_dir: str | os.PathLike, kwargs: dict[str, Any], jobs: int,
              advance: Callable[[str, int], None], pending: Pending) -> dict[str, dict[str, Any]]:
    """Run :func:`collect_play_task` per task in ``jobs`` spawned processes; progress arrives over a
    queue. On any failure or signal the stop event is set and the workers finish aborting first.

    The queue and the event live in a manager process, so their proxies go to each task as plain
    arguments (no worker initializer, module globals or environment variables)."""
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, Any]] = {}
    with ctx.Manager() as manager, cf.ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=ctx) as pool:
        progress, stop = manager.Queue(), manager.Event()

        def drain() -> None:
            with contextlib.suppress(queue.Empty):
                while True:
                    advance(*progress.get_nowait())

        futures = {pool.submit(_worker_task, t, {**kwargs, "out_path": task_path(out_dir, t)}, progress, stop): t
                   for t in tasks}
        try:
            running = set(futures)
            while running:
                pending.check()
                done, running = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                drain()
                for f in done:
                    results[futures[f]] = f.result()  # re-raises a worker's error
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise
        finally:
            pool.shutdown(wait=True)
            drain()
    return results
