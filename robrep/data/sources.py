"""Where a ``dataset=`` value points: the one place dataset specs are resolved to a robrep demo file.

* ``path/to/file.hdf5`` (or any path): that file, unchanged.
* ``lerobot:<dir>``: the LeRobot v2.x dataset in ``<dir>``, converted once into a robrep demo file cached under
  ``cache/lerobot/<dir name>-<content hash>.hdf5`` (:func:`robrep.data.lerobot.cached_demo_file`; the hash covers
  every metadata, parquet and MP4 byte, so an edited dataset is converted again). Masks: the dataset's own when it
  was exported by robrep, else its ``splits`` and :func:`robrep.data.demo_file.split_masks` subsets.

Commands call :func:`resolve_dataset` on ``cfg.dataset`` before anything opens it, and the library entry points
that take a dataset path (``train_policy``, ``compute_features``) call it too, so every reader of demo files
(training, features, probes, sweeps) takes both forms.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Prefix of a LeRobot dataset directory in a ``dataset=`` value.
LEROBOT_SCHEME = "lerobot:"
#: Where converted LeRobot datasets are cached (beside cache/features).
LEROBOT_CACHE_DIR = "cache/lerobot"


def resolve_dataset(spec: str | os.PathLike, cache_dir: str | os.PathLike = LEROBOT_CACHE_DIR,
                    progress: bool = False) -> Path:
    """The demo file a ``dataset=`` value names: ``lerobot:<dir>`` → its cached conversion (converted on first use),
    anything else → ``Path(spec)``. Raises :class:`robrep.data.lerobot.LeRobotFormatError` for a bad LeRobot dir."""
    text = os.fspath(spec)
    if text.startswith(LEROBOT_SCHEME):
        root = text[len(LEROBOT_SCHEME):]
        if not root:
            raise ValueError("dataset=lerobot: names no directory; use dataset=lerobot:<dir>")
        from robrep.data.lerobot import cached_demo_file

        return cached_demo_file(root, cache_dir, progress=progress)
    return Path(text)
