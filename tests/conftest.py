import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

# Tiny test models run fastest on one thread (and do not fight other processes for the cores).
torch.set_num_threads(1)
