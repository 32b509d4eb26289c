"""Closed-form ridge probes scored on held-out *episodes*.

Features are centred and divided by one global scale, targets standardised (both on training folds);
the penalty is chosen per target by grouped inner cross-validation over a relative grid; R² comes
from pooled out-of-fold predictions of whole held-out episodes.
"""

from __future__ import annotations

import numpy as np

#: Ridge penalties, relative to the largest squared singular value of the training features.
REL_ALPHAS = np.logspace(-6, 0, 13)


def fold_ids(episode: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index ``(N,)`` per frame, whole episodes per fold."""
    eps = np.unique(episode)
    perm = np.random.default_rng(seed).permutation(eps)
    fold_of = {e: i % k for i, e in enumerate(perm)}
    return np.array([fold_of[e] for e in episode])


def ridge_path(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions ``(len(alphas), N_te, K)`` of ridge fits on centred data, via one SVD."""
    u, s, vt = np.linalg.svd(x_tr, full_matrices=False)
    uty, xv = u.T @ y_tr, x_te @ vt.T
    return np.stack([xv @ ((s / (s**2 + a))[:, None] * uty) for a in alphas])


def centre(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre per feature and divide by one global scale (per-feature scaling would blow up near-constant
    channels that vary only in held-out episodes)."""
    mu = x_tr.mean(0)
    scale = float(np.sqrt(((x_tr - mu) ** 2).mean())) + 1e-12
    return (x_tr - mu) / scale, (x_te - mu) / scale


def fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, groups: np.ndarray,
                inner_folds: int = 3, seed: int = 0) -> np.ndarray:
    """Ridge from ``x_tr (N, F)`` to ``y_tr (N, K)`` with the penalty picked per target by inner CV over
    episode ``groups (N,)``; returns predictions for ``x_te`` ``(N_te, K)``."""
    xs_tr, xs_te = centre(x_tr, x_te)
    y_mu, y_sd = y_tr.mean(0), y_tr.std(0) + 1e-6
    ys_tr = (y_tr - y_mu) / y_sd
    alphas = REL_ALPHAS * np.linalg.norm(xs_tr, ord=2) ** 2
    inner, err = fold_ids(groups, inner_folds, seed=seed + 1), np.zeros((len(alphas), y_tr.shape[1]))
    for g in range(inner_folds):
        a, b = inner != g, inner == g
        if not a.any() or not b.any():
            continue
        xa, xb = centre(xs_tr[a], xs_tr[b])
        ya_mu = ys_tr[a].mean(0)
        err += ((ridge_path(xa, ys_tr[a] - ya_mu, xb, alphas) + ya_mu - ys_tr[b]) ** 2).sum(1)
    best = err.argmin(0)
    path = ridge_path(xs_tr, ys_tr, xs_te, alphas)
    return path[best, :, np.arange(y_tr.shape[1])].T * y_sd + y_mu


def r2_score(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficient of determination per target ``(K,)``."""
    return 1.0 - ((pred - y) ** 2).sum(0) / (((y - y.mean(0)) ** 2).sum(0) + 1e-12)


def probe_r2(x: np.ndarray, y: np.ndarray, episode: np.ndarray, folds: int) -> np.ndarray:
    """Held-out-episode R² per target ``(K,)`` (pooled out-of-fold predictions, per-target CV'd penalty)."""
    outer, pred = fold_ids(episode, folds), np.zeros_like(y)
    for f in range(folds):
        tr, te = outer != f, outer == f
        pred[te] = fit_predict(x[tr], y[tr], x[te], episode[tr], seed=f)
    return r2_score(pred, y)
