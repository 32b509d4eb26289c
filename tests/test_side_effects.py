"""No side effects at import (os.environ, torch threads); thread_limit restores what it changes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from robrep.threads import thread_limit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("robrep", "envs", "policies", "planners")

# Runs in a fresh interpreter (modules already imported by the tests would hide import-time effects).
# The baseline is taken after importing the third-party modules that write os.environ themselves when
# imported: torch._dynamo (imported by timm, transformers, ...) sets TORCHINDUCTOR_CACHE_DIR and
# gymnasium sets PYGAME_HIDE_SUPPORT_PROMPT. Neither loads mujoco. The baseline thread count is one
# that no module would pick (3), so setting 1 or the core count at import shows up.
IMPORT_ALL = r"""
import importlib, json, os, pkgutil, sys, traceback
import gymnasium
import torch
import torch._dynamo

assert "mujoco" not in sys.modules

torch.set_num_threads(3)
env, threads = dict(os.environ), torch.get_num_threads()
report = {"modules": [], "errors": {}, "env_changed_by": {}, "threads_changed_by": {}}

def check(name):
    now = dict(os.environ)
    if now != env:
        report["env_changed_by"][name] = {k: [env.get(k), now.get(k)] for k in set(env) | set(now)
                                          if env.get(k) != now.get(k)}
        env.clear(); env.update(now)
    if torch.get_num_threads() != threads:
        report["threads_changed_by"][name] = torch.get_num_threads()
        torch.set_num_threads(threads)

def onerror(name):
    report["errors"][name] = traceback.format_exc(limit=3)

for pkg in PACKAGES:
    try:
        module = importlib.import_module(pkg)
    except Exception:
        onerror(pkg)
        continue
    check(pkg)
    report["modules"].append(pkg)
    # walk_packages imports subpackages to list their modules; each module is then imported in turn
    for info in pkgutil.walk_packages(module.__path__, prefix=pkg + ".", onerror=onerror):
        check(info.name)
        try:
            importlib.import_module(info.name)  # robrep.cli: imported only, main() is not called
        except Exception:
            onerror(info.name)
            continue
        check(info.name)
        report["modules"].append(info.name)
report["mujoco_imported"] = "mujoco" in sys.modules
report["MUJOCO_GL"] = os.environ.get("MUJOCO_GL")
print("REPORT " + json.dumps(report))
"""


def test_importing_every_module_changes_no_environment_or_thread_count():
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    env["PYTHONPATH"] = str(ROOT)
    code = f"PACKAGES = {PACKAGES!r}\n" + IMPORT_ALL
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert not report["errors"], report["errors"]
    for pkg in PACKAGES:
        assert pkg in report["modules"]
    for name in ("robrep.cli", "robrep.threads", "robrep.data.play", "robrep.data.collect", "envs.tabletop",
                 "envs.metaworld_adapter", "envs.rendering"):
        assert name in report["modules"]
    assert report["mujoco_imported"]  # the envs modules really loaded MuJoCo with MUJOCO_GL unset
    assert report["env_changed_by"] == {}
    assert report["threads_changed_by"] == {}
    assert report["MUJOCO_GL"] is None


def blas_threads() -> dict[str, int]:
    return {f"{i['internal_api']}:{i['filepath']}": i["num_threads"] for i in threadpool_info()}


@pytest.fixture
def two_threads():
    """torch and the BLAS/OpenMP pools at 2 threads, so a limit to 1 and its restoration are visible."""
    previous = torch.get_num_threads()
    with threadpool_limits(2):
        torch.set_num_threads(2)
        try:
            before = blas_threads()
            assert before and set(before.values()) == {2}
            yield before
        finally:
            torch.set_num_threads(previous)


def test_thread_limit_sets_and_restores(two_threads):
    with thread_limit(1):
        assert torch.get_num_threads() == 1
        assert set(blas_threads().values()) == {1}
    assert torch.get_num_threads() == 2
    assert blas_threads() == two_threads


def test_thread_limit_restores_after_an_exception(two_threads):
    with pytest.raises(KeyError):
        with thread_limit(1):
            assert torch.get_num_threads() == 1 and set(blas_threads().values()) == {1}
            raise KeyError("boom")
    assert torch.get_num_threads() == 2
    assert blas_threads() == two_threads


@pytest.mark.parametrize("n", [None, 0])
def test_thread_limit_none_leaves_counts(two_threads, n):
    with thread_limit(n):
        assert torch.get_num_threads() == 2 and blas_threads() == two_threads
    assert torch.get_num_threads() == 2 and blas_threads() == two_threads


def test_thread_limit_nests():
    outer = torch.get_num_threads()
    with thread_limit(2):
        with thread_limit(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == outer


def test_thread_limit_rejects_negative():
    with pytest.raises(ValueError, match="thread count"):
        with thread_limit(-1):
            pass
