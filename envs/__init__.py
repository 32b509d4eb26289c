"""MuJoCo tabletop tasks with scripted experts (gymnasium API), and the Meta-World adapter.

Importing this package registers the gymnasium ids ``robrep/<Task>-v0``; it does not touch
``os.environ``. MuJoCo reads ``MUJOCO_GL`` when ``mujoco`` is first imported: on a headless machine set
``MUJOCO_GL=egl`` before importing this package (the ``robrep`` command line does); otherwise the first
env raises :class:`envs.rendering.RenderingUnavailableError` saying so.
"""

try:  # Load triton's LLVM before Mesa's (EGL rendering): the other order segfaults when torch or
    import triton  # noqa: F401  transformers import triton later in the same process.
except ImportError:
    pass

from envs.registration import TASK_IDS, make_env, register_tasks  # noqa: E402
from envs.vector import make_vector_env  # noqa: E402

register_tasks()

__all__ = ["TASK_IDS", "make_env", "make_vector_env", "register_tasks"]
