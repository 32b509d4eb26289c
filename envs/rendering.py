"""Creating MuJoCo renderers, with a clear error when no OpenGL context can be made.

MuJoCo picks its OpenGL backend from the environment variable ``MUJOCO_GL`` once, when ``mujoco``
is first imported (unset: GLFW, which needs a display). Importing :mod:`envs` does not set it; the
``robrep`` command line sets ``MUJOCO_GL=egl`` (when unset) before it imports anything that loads
MuJoCo, and so does ``tests/conftest.py``. A library user on a headless machine sets it
before importing ``mujoco`` or :mod:`envs`, e.g. ``MUJOCO_GL=egl python my_script.py``.
"""

from __future__ import annotations

import os

import mujoco


class RenderingUnavailableError(RuntimeError):
    """MuJoCo could not create an OpenGL context (typically: ``MUJOCO_GL`` unset on a headless machine)."""


def gl_backend() -> str:
    """Module of the OpenGL context class MuJoCo chose at import (``"mujoco.egl"``, ``"mujoco.glfw"``, ...)."""
    context = getattr(mujoco, "GLContext", None)
    return getattr(context, "__module__", "none (MUJOCO_GL disables rendering)")


def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """``mujoco.Renderer(model, height, width)``; raises :class:`RenderingUnavailableError` naming
    ``MUJOCO_GL=egl`` if MuJoCo cannot create an OpenGL context (the original error is chained)."""
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as e:
        now = repr(os.environ["MUJOCO_GL"]) if "MUJOCO_GL" in os.environ else "unset"
        raise RenderingUnavailableError(
            f"MuJoCo could not create an OpenGL context to render ({type(e).__name__}: {e}). "
            f"MuJoCo chose its OpenGL backend ({gl_backend()}) from MUJOCO_GL when `mujoco` was first imported "
            f"(MUJOCO_GL is now {now}). On a headless machine set MUJOCO_GL=egl "
            "(or osmesa) before importing mujoco or envs, e.g. `MUJOCO_GL=egl python ...` or "
            "os.environ['MUJOCO_GL'] = 'egl' at the top of the script; the robrep CLI sets it for you."
        ) from e
