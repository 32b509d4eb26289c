"""Map one function over many items, here or elsewhere: ``launcher.map(fn, items) -> list[Outcome]``.

One :class:`Outcome` per item, in the order of ``items``; an item whose call raises gets ``error`` (the formatted
traceback) and does not stop the others. Where ``fn(item)`` runs:

* :class:`InProcess` — in this process, one item after another (debugging, tests);
* :class:`Joblib` — ``n_jobs`` worker processes on this machine (joblib, loky backend);
* :class:`Submitit` — one submitit job per item: local processes, a Slurm array, or this process (``debug``);
* :class:`Ray` — one Ray task per item, on a private loopback-only Ray instance started and stopped by ``map``
  (``address=None``) or on the cluster at ``address``.

Except in-process, ``fn`` and the items are pickled: use a module-level function and picklable items (a frozen
dataclass), importable where the workers run. ``threads_per_job`` limits torch/BLAS threads inside each call.
Local workers stop with the process that launched them: each watches its launcher's pid and, once that process is
gone (killed, even by SIGKILL), interrupts its call and exits — no orphan finishes a cell behind a restarted sweep.
(Slurm jobs and Ray tasks on a remote cluster are left to run: their results are records on shared storage.)
:func:`make_launcher` builds a launcher from a ``configs/launcher/*.yaml`` mapping. Importing this module
imports only the standard library; the backends, torch, threadpoolctl and omegaconf load where they are used.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

#: The only address a private local Ray instance listens on.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Outcome:
    """One item's result: ``value`` when ``fn(item)`` returned, else ``error`` (a formatted traceback)."""

    item: Any
    value: Any | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Launcher(Protocol):
    """Anything with ``map(fn, items) -> list[Outcome]`` (one outcome per item, in order)."""

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]: ...


#: Thread-count variables that OpenMP/MKL/OpenBLAS (and torch's intra-op pool) read when they are first loaded.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """A worker's thread limit: :func:`robrep.threads.thread_limit` (torch only if already imported, so a call that
    never needs torch does not pay for importing it) plus :data:`THREAD_VARIABLES` set for the block, which reach
    libraries first loaded inside it (a fresh worker's torch). Everything is as before after the block."""
    if not n:
        yield
        return
    from robrep.threads import thread_limit as limit

    with _environ({name: str(int(n)) for name in THREAD_VARIABLES}), limit(n, load_torch=False):
        yield


@contextlib.contextmanager
def _environ(values: Mapping[str, str], restore_all: bool = False) -> Iterator[None]:
    """``os.environ`` with ``values`` inside the block; afterwards those variables are as before (or unset), and
    with ``restore_all`` every variable is (``ray.init`` adds ``RAY_AUTH_MODE``, ``PYTHONBREAKPOINT``, ...)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for key in (set(os.environ) - set(saved)) if restore_all else set(values) - set(saved):
            os.environ.pop(key, None)
        for key in saved if restore_all else set(values) & set(saved):
            if os.environ.get(key) != saved[key]:
                os.environ[key] = saved[key]


#: Seconds between a worker's checks that its launcher still runs, and the grace after interrupting its call.
OWNER_POLL_S, OWNER_GRACE_S = 0.5, 5.0
_watched: set[int] = set()


def _watch_owner(owner: int) -> None:
    """In a worker process: a daemon thread that, once process ``owner`` (the launcher) is gone, interrupts the main
    thread (``KeyboardInterrupt``: temp files are removed on the way out) and ends the process after
    :data:`OWNER_GRACE_S` seconds whatever it is doing. Started once per worker process."""
    from robrep.process import alive

    if owner in _watched:
        return
    _watched.add(owner)

    def watch() -> None:
        while alive(owner):
            time.sleep(OWNER_POLL_S)
        import _thread

        _thread.interrupt_main()
        time.sleep(OWNER_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name=f"robrep-owner-{owner}", daemon=True).start()


@dataclass(frozen=True)
class _Call:
    """``fn`` as shipped to a worker: runs under :func:`thread_limit` in the caller's working directory (``cwd``,
    taken where the call is made: specs hold paths relative to it; a Ray or Slurm worker starts elsewhere) and
    returns ``(value, None)`` or ``(None, traceback)``, so a raising item never fails the batch. With
    ``stop_with_owner``, a call running in another process of the caller's machine ends when the caller
    (``owner``, its pid) is gone (:func:`_watch_owner`)."""

    fn: Callable[[Any], Any]
    threads: int | None = None
    cwd: str = field(default_factory=os.getcwd)
    stop_with_owner: bool = True
    owner: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)

    def __call__(self, item: Any) -> tuple[Any, str | None]:
        if os.getpid() != self.owner:  # a worker process: the library's messages as plain lines on its stdout
            from robrep.logs import console_logging

            console_logging()
        if self.stop_with_owner and os.getpid() != self.owner and socket.gethostname() == self.host:
            _watch_owner(self.owner)
        try:
            with thread_limit(self.threads), _chdir(self.cwd):
                return self.fn(item), None
        except Exception:
            return None, traceback.format_exc()


@contextlib.contextmanager
def _chdir(path: str) -> Iterator[None]:
    """The working directory ``path`` inside the block, the previous one after it (``contextlib.chdir`` is 3.11+)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _run(call: _Call, item: Any) -> tuple[Any, str | None]:
    """Module-level task body for Ray (``ray.remote`` wants a function)."""
    return call(item)


@dataclass
class InProcess:
    """Every call in this process, one after another: no pickling, tracebacks point at your code."""

    threads_per_job: int | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        call = _Call(fn, self.threads_per_job)
        return [Outcome(item, *call(item)) for item in items]


@dataclass
class Joblib:
    """``n_jobs`` worker processes on this machine through joblib (``backend="loky"``: reusable processes).
    ``threads_per_job=None``: 1 thread per call when ``n_jobs != 1`` (jobs share the cores), else unchanged.
    If the pool itself breaks (a worker killed), the items without a result get that error."""

    n_jobs: int = 2
    backend: str = "loky"
    threads_per_job: int | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        from joblib import Parallel, delayed

        items, outcomes = list(items), []
        call = _Call(fn, 1 if self.threads_per_job is None and self.n_jobs != 1 else self.threads_per_job)
        try:
            parallel = Parallel(n_jobs=self.n_jobs, backend=self.backend, return_as="generator")
            for item, result in zip(items, parallel(delayed(call)(item) for item in items)):
                outcomes.append(Outcome(item, *result))
        except Exception:
            error = traceback.format_exc()
            outcomes += [Outcome(item, None, error) for item in items[len(outcomes):]]
        return outcomes


@dataclass
class Submitit:
    """One submitit job per item (``AutoExecutor.map_array``; pickles and logs in ``folder``). ``cluster="local"``:
    local processes, all items at once (small batches; else :class:`Joblib`); ``"slurm"``: one Slurm array, with
    ``slurm`` options passed as ``slurm_<key>`` (``partition``, ``mem_gb``, ``array_parallelism``, ...);
    ``"debug"``: in this process. ``threads_per_job=None``: ``cpus_per_task``. A job that dies (timeout, node
    failure) gives an outcome with submitit's error."""

    folder: str = "runs/submitit"
    cluster: str = "local"
    timeout_min: int = 120
    cpus_per_task: int = 1
    slurm: dict[str, Any] = field(default_factory=dict)
    threads_per_job: int | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        import submitit

        if not (items := list(items)):
            return []
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(timeout_min=int(self.timeout_min), cpus_per_task=int(self.cpus_per_task),
                                   **{f"slurm_{key}": value for key, value in (self.slurm or {}).items()})
        call = _Call(fn, self.threads_per_job or self.cpus_per_task, stop_with_owner=self.cluster != "slurm")
        outcomes = []
        for item, job in zip(items, executor.map_array(call, items)):
            try:
                outcomes.append(Outcome(item, *job.result()))
            except Exception:
                outcomes.append(Outcome(item, None, traceback.format_exc()))
        return outcomes


@dataclass
class Ray:
    """One Ray task per item, each reserving ``cpus_per_task`` CPUs. ``address=None``: a private Ray instance on
    this machine (``num_cpus`` CPUs, default all), listening on 127.0.0.1 only, no dashboard or usage stats, shut
    down after ``map``. ``address="auto"``/``"host:port"``/``"ray://…"``: that running cluster (robrep installed on
    its nodes), disconnected after ``map``. An already initialised Ray session is used and left running.
    ``threads_per_job=None``: ``cpus_per_task`` threads per call; ``init``: more ``ray.init`` keyword arguments."""

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: float = 1
    threads_per_job: int | None = None
    init: dict[str, Any] = field(default_factory=dict)

    def _start(self) -> None:
        import ray

        if self.address is not None:
            ray.init(address=self.address, **self.init)
            return
        # Ray's servers bind to the node address, and ray.init turns a loopback _node_ip_address into the machine's
        # outward IP (ray._private.services.resolve_ip_for_localhost): keep 127.0.0.1 during this call only.
        services = ray._private.services
        original = services.resolve_ip_for_localhost
        services.resolve_ip_for_localhost = lambda host: host if host == LOOPBACK else original(host)
        try:
            context = ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                               _node_ip_address=LOOPBACK, **self.init)
        finally:
            services.resolve_ip_for_localhost = original
        if (node := context.address_info.get("node_ip_address")) != LOOPBACK:
            ray.shutdown()
            raise RuntimeError(f"the local Ray instance listens on {node}, not {LOOPBACK}; refusing to use it")

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Outcome]:
        import ray

        if not (items := list(items)):
            return []
        with contextlib.ExitStack() as stack:
            if not ray.is_initialized():
                stack.enter_context(_environ({"RAY_USAGE_STATS_ENABLED": "0"}, restore_all=True))
                self._start()
                stack.callback(ray.shutdown)
            call = _Call(fn, self.threads_per_job or max(1, int(self.cpus_per_task)), stop_with_owner=self.address is None)
            task = ray.remote(_run).options(num_cpus=self.cpus_per_task)
            outcomes = []
            for item, ref in zip(items, [task.remote(call, item) for item in items]):
                try:
                    outcomes.append(Outcome(item, *ray.get(ref)))
                except Exception:  # the task's worker died, or its result could not be shipped back
                    outcomes.append(Outcome(item, None, traceback.format_exc()))
            return outcomes


#: ``name`` in a ``configs/launcher/*.yaml`` file -> launcher class.
LAUNCHERS: dict[str, type] = {"inprocess": InProcess, "joblib": Joblib, "submitit": Submitit, "ray": Ray}


def make_launcher(cfg: Mapping[str, Any]) -> Launcher:
    """The launcher a config describes: ``name`` (one of :data:`LAUNCHERS`) plus its keyword arguments, e.g. a
    ``configs/launcher/*.yaml`` file (an OmegaConf node is resolved to plain containers first)."""
    from omegaconf import DictConfig, OmegaConf

    options = dict(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg)
    name = options.pop("name", None)
    if name not in LAUNCHERS:
        raise ValueError(f"unknown launcher {name!r} (known: {sorted(LAUNCHERS)})")
    return LAUNCHERS[name](**options)
