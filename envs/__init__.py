"""MuJoCo tabletop tasks with scripted experts (gymnasium API), and the Meta-World adapter.

Importing this package sets ``MUJOCO_GL=egl`` when unset (headless rendering) and registers
the gymnasium ids ``robrep/<Task>-v0``. Import it before ``mujoco`` so the setting takes effect.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

try:  # Load triton's LLVM before Mesa's (EGL rendering): the other order segfaults when torch or
    import triton  # noqa: F401,E402  transformers import triton later in the same process.
except ImportError:
    pass

from envs.registration import TASK_IDS, make_env, register_tasks  # noqa: E402
from envs.vector import make_vector_env  # noqa: E402

register_tasks()

__all__ = ["TASK_IDS", "make_env", "make_vector_env", "register_tasks"]
