#!/usr/bin/env bash
# Idempotent set-up: system GL libraries for headless MuJoCo rendering (EGL), then a virtualenv
# in .venv with robrep, its test extras, the `cluster` extra (submitit, ray: ~10 s and ~250 MB more), so the
# launcher tests run, and the `deploy` extra (openvino, ~180 MB), so both runtimes of exported files are tested.
# torch/torchvision are pinned in pyproject.toml to the builds this machine serves from local disk.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri libglvnd0 >/dev/null
  else
    echo "warning: libEGL.so.1 not found; install Mesa EGL (e.g. libegl1 libgl1-mesa-dri) for rendering" >&2
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! MUJOCO_GL=egl .venv/bin/python -c "import robrep, torch, mujoco, h5py, hydra, pytest, submitit, ray, openvino" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.robrep-installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,cluster,deploy]'
  touch .venv/.robrep-installed
fi
