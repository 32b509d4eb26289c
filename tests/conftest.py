import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["HF_HUB_OFFLINE"] = "1"  # no test touches the network: public weights come from fake local caches

import torch  # noqa: E402

# Tiny test models run fastest on one thread (and do not fight other processes for the cores).
torch.set_num_threads(1)
