"""Image augmentation shared by feature caching and pretraining: whole-pixel random translation."""

from __future__ import annotations

import numpy as np


def shift_images(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(T, H, W, C)`` → each frame translated by its own offset in [-pad, pad]² px (edge pixels
    replicated into the gap), same shape and dtype. Stack frames along C to move them together."""
    if pad <= 0:
        return images
    t, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, t))
    rows = dy[:, None] + np.arange(h)  # (T, H)
    cols = dx[:, None] + np.arange(w)  # (T, W)
    return padded[np.arange(t)[:, None, None], rows[:, :, None], cols[:, None, :]]
