"""Fault injection: a real ``robrep sweep`` / ``robrep collect`` process killed at a named point (``ROBREP_FAILPOINTS``,
:mod:`robrep.failpoints`) — during training, during evaluation, between writing table.csv and summary.csv — leaves no
worker running, and the same command run again finishes with the table an uninterrupted run gives; a collect killed
mid-file leaves a temp file the next collect removes; a second sweep or collect on the same output is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from robrep import results
from robrep.data.collect import collect_demos
from robrep.launch import OWNER_GRACE_S, OWNER_POLL_S
from robrep.locks import LockedError, exclusive_lock
from robrep.process import alive

ROOT = Path(__file__).resolve().parent.parent
#: Columns that depend on timing or on the output folder, not on what was computed.
VOLATILE = ("train_seconds", "eval_seconds", "ms_per_step", "policy")
SWEEP = ["sweep", "task=reach", "task.image_size=32", "arms=[cnn]", "demos=[4]", "seeds=[0,1]", "episodes=2",
         "num_envs=2", "tune.grid=null", "launcher=joblib", "jobs=2", "progress=false", "bootstrap_resamples=100", "dataset=../reach.hdf5",
         'arm_overrides=["policy.train.steps=30","policy.train.eval_every=2","policy.cnn.channels=8"]']


def start(args: list[str], cwd: Path, failpoint: str | None = None) -> subprocess.Popen:
    """``robrep <args>`` as a real process in ``cwd``, with ``failpoint=pause`` set (markers in ``cwd/markers``)."""
    env = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    env.pop("ROBREP_FAILPOINTS", None)
    if failpoint:
        env.update(ROBREP_FAILPOINTS=f"{failpoint}=pause", ROBREP_FAILPOINT_DIR=str(cwd / "markers"))
        (cwd / "markers").mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", "import sys; from robrep.cli import main; sys.exit(main())", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_marker(proc: subprocess.Popen, cwd: Path, point: str, timeout: float = 120) -> int:
    """Wait until some process pauses at ``point``; returns that process's pid."""
    deadline = time.monotonic() + timeout
    while not (hits := list((cwd / "markers").glob(f"{point}.*"))):
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before {point}:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"{point} not reached in {timeout} s"
        time.sleep(0.1)
    return int(hits[0].suffix[1:])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def assert_all_gone(pids: set[int]) -> None:
    """Every process in ``pids`` ends within the workers' watch period (poll + grace + slack)."""
    deadline = time.monotonic() + OWNER_POLL_S + OWNER_GRACE_S + 20
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes still running after their sweep was killed: {left}"


def finish(args: list[str], cwd: Path) -> str:
    proc = start(args, cwd)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def table(cwd: Path, sweep_dir: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in results.read_csv(cwd / sweep_dir / "table.csv")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A reach demo file and the uninterrupted sweep's table (the reference every resumed run must reproduce)."""
    root = tmp_path_factory.mktemp("faults")
    collect_demos("reach", 6, root / "reach.hdf5", image_size=32, subset_sizes=(4,), subset_seeds=(0, 1),
                  progress=False)
    (root / "ref").mkdir()
    finish([*SWEEP, "sweep_dir=out"], root / "ref")
    return root


@pytest.mark.parametrize("point", ["train.eval", "eval.step", "sweep.table"])
def test_a_sweep_killed_anywhere_resumes_to_the_uninterrupted_table(workdir, point):
    """SIGKILL on the sweep (no handler runs) while a worker trains / evaluates, or while the sweep writes its
    tables: its workers end by themselves, and the same command then finishes with the reference table; runs.csv
    credits each cell to exactly one invocation."""
    cwd = workdir / point
    cwd.mkdir()
    proc = start([*SWEEP, "sweep_dir=out"], cwd, failpoint=point)
    wait_for_marker(proc, cwd, point)
    workers = descendants(proc.pid)
    if point != "sweep.table":
        assert workers, "the joblib workers should be running"
    proc.kill()
    proc.communicate(timeout=60)
    assert_all_gone(workers)
    trained = {p.name: p.stat().st_mtime_ns for p in (cwd / "runs/sweeps/out/policies").glob("*.pt")}
    out = finish([*SWEEP, "sweep_dir=out"], cwd)
    assert table(cwd, "out") == table(workdir / "ref", "out")
    runs = results.read_csv(cwd / "out/runs.csv")  # the killed invocation keeps its row (wall from its heartbeat)
    assert sum(int(r["finished_here"]) for r in runs) == 2 and runs[-1]["status"] == "finished"
    assert [r["status"] for r in runs] == [("finished" if point == "sweep.table" else "killed"), "finished"]
    for name, mtime in trained.items():  # a policy trained before the kill is reused, not trained again
        assert (cwd / "runs/sweeps/out/policies" / name).stat().st_mtime_ns == mtime
    if point == "sweep.table":
        assert "2 already done" in out


def test_sigterm_stops_the_sweep_and_its_workers_and_logs_the_interruption(workdir):
    """SIGTERM while cells train: exit code 143, no worker left, no temp file left, runs.csv says interrupted and
    lists nothing as finished; the next run does both cells."""
    cwd = workdir / "sigterm"
    cwd.mkdir()
    proc = start([*SWEEP, "sweep_dir=out"], cwd, failpoint="train.eval")
    wait_for_marker(proc, cwd, "train.eval")
    workers = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "interrupted: 2 cells not done (cnn_n4_s0, cnn_n4_s1)" in out
    assert_all_gone(workers)
    (row,) = results.read_csv(cwd / "out/runs.csv")
    assert (row["status"], row["finished_here"]) == ("interrupted", "0")
    assert not [p for p in cwd.rglob("*") if ".tmp-" in p.name]
    finish([*SWEEP, "sweep_dir=out"], cwd)
    assert table(cwd, "out") == table(workdir / "ref", "out")


def test_a_restarted_sweep_removes_temp_files_of_dead_writers_only(workdir, tmp_path):
    """Temp files whose writer is gone (SIGKILL runs no cleanup) are deleted when the sweep starts again; a temp
    file of a process that still runs is left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cwd = workdir / "stale"
    (cwd / "out/cells").mkdir(parents=True)
    (cwd / "runs/sweeps/out/policies").mkdir(parents=True)
    stale = [cwd / f"out/cells/.cnn_n4_s0.tmp-{dead.pid}.json", cwd / f"runs/sweeps/out/policies/.x.tmp-{dead.pid}.pt",
             cwd / f"out/.table.tmp-{dead.pid}.csv"]
    live = cwd / f"out/cells/.cnn_n4_s1.tmp-{os.getpid()}.json"
    for p in [*stale, live]:
        p.write_text("partial")
    out = finish([*SWEEP, "sweep_dir=out"], cwd)
    assert "removed 3 temp files left by interrupted writers" in out
    assert not any(p.exists() for p in stale) and live.exists()


def test_a_second_sweep_on_the_same_directory_is_refused(workdir, tmp_path, monkeypatch):
    from robrep.cli import main

    monkeypatch.chdir(workdir / "ref")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with exclusive_lock(workdir / "ref/out", "a test", directory=True):
        with pytest.raises(LockedError, match=rf"out is being written by another process \(pid {os.getpid()} on .*\); "
                                              r"robrep sweep into out would write the same place"):
            main([*SWEEP, "sweep_dir=out"])


COLLECT = ["collect", "task=reach", "num_demos=5", "task.image_size=32", "subset_sizes=[2]", "subset_seeds=[0]",
           "out=reach.hdf5", "progress=false"]


def demos_of(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {f"{d}/{k}": f[f"data/{d}/{k}"][()] for d in f["data"] for k in ("actions", "obs/image", "states")}


def test_a_killed_collect_leaves_a_temp_file_that_the_next_collect_removes(tmp_path):
    """SIGKILL after the first demo: no final file, one temp file; the same command again removes it and writes
    the file an uninterrupted collect writes."""
    (tmp_path / "ref").mkdir()
    finish([*COLLECT], tmp_path / "ref")
    proc = start(COLLECT, tmp_path, failpoint="collect.demo")
    wait_for_marker(proc, tmp_path, "collect.demo")
    proc.kill()
    proc.communicate(timeout=60)
    assert not (tmp_path / "reach.hdf5").exists() and len(list(tmp_path.glob("reach.hdf5.tmp-*"))) == 1
    finish(COLLECT, tmp_path)
    assert not list(tmp_path.glob("reach.hdf5.tmp-*"))
    got, want = demos_of(tmp_path / "reach.hdf5"), demos_of(tmp_path / "ref/reach.hdf5")
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


def test_two_collects_to_one_file_the_second_is_refused(tmp_path):
    first = start(COLLECT, tmp_path, failpoint="collect.demo")
    try:
        pid = wait_for_marker(first, tmp_path, "collect.demo")
        second = start(COLLECT, tmp_path)
        out, _ = second.communicate(timeout=120)
        assert second.returncode != 0
        assert f"reach.hdf5 is being written by another process (pid {pid} on" in out
        assert "robrep collect into reach.hdf5 would write the same place" in out
    finally:
        first.kill()
        first.communicate(timeout=60)
