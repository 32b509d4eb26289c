"""robrep: robot learning with frozen visual encoders.

Importing the package sets ``MUJOCO_GL=egl`` when unset, so MuJoCo renders headless.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
