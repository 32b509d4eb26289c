"""robrep: robot learning with frozen visual encoders.

Importing the package (or any of its modules) has no side effects on ``os.environ`` or thread
counts. The ``robrep`` command line sets ``MUJOCO_GL=egl`` (when unset) so MuJoCo renders headless;
a library user on a headless machine sets it before importing ``mujoco`` (see :mod:`envs.rendering`).
"""
