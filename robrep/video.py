"""Writing rollout videos (MP4 via imageio-ffmpeg, or GIF), atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import numpy as np

from robrep.results import atomic_path


def write_video(frames: Sequence[np.ndarray] | np.ndarray, path: str | os.PathLike, fps: int = 20) -> Path:
    """Write uint8 frames ``(T, H, W, 3)`` to ``path`` (``.mp4`` or ``.gif``); returns the path.

    The file appears only when complete (written to a temporary name, then renamed).
    """
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be non-empty uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"video path must end in .mp4 or .gif, got {path}")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            imageio.mimsave(tmp, list(frames), duration=1000 / fps, loop=0)
        else:
            # Pad to a multiple of 16 px (H.264 macro blocks) instead of letting ffmpeg rescale.
            h, w = frames.shape[1:3]
            pad = ((0, 0), (0, -h % 16), (0, -w % 16), (0, 0))
            imageio.mimsave(tmp, list(np.pad(frames, pad)), fps=fps, macro_block_size=1)
    return path
