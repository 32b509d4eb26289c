"""Statistics of success rates: Wilson intervals, paired bootstrap differences, the seed noise floor.

All functions take plain numbers or numpy arrays of per-episode outcomes (1 = success, 0 = failure)
and use numpy/scipy only.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from scipy.stats import norm


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion ``successes / n``.

    Exact at the edges: ``low == 0.0`` when ``successes == 0`` and ``high == 1.0`` when ``successes == n``.

    Raises:
        ValueError: ``n < 1``, ``successes`` outside ``[0, n]``, or ``confidence`` outside (0, 1).
    """
    k, n = operator.index(successes), operator.index(n)
    if n < 1:
        raise ValueError(f"wilson_interval needs n >= 1 episodes, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {k}")
    z2 = _z(confidence) ** 2
    p = k / n
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom * math.sqrt(z2)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def _as_matrix(x: Any, name: str) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    if m.ndim == 1:
        m = m[None]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{name} must be a non-empty (episodes,) or (train_seeds, episodes) array, got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} has non-finite values")
    return m


def paired_bootstrap_diff(a: Any, b: Any, num_resamples: int = 10000, confidence: float = 0.95,
                          seed: int = 0) -> dict[str, float]:
    """Mean difference ``a − b`` of two arms evaluated on the same episodes, with a percentile bootstrap interval.

    ``a`` and ``b`` are per-episode outcomes, ``(episodes,)`` or ``(train_seeds, episodes)``; column ``j`` of
    both must be the same evaluation seed (the same layout), row ``i`` the same training seed. Each resample
    draws training seeds and episodes with replacement, independently (seeds and layouts are crossed factors),
    and takes the mean of ``a − b`` over the drawn sub-matrix, so the pairing by episode seed is kept.

    Returns:
        ``{"diff", "ci_low", "ci_high", "a_mean", "b_mean", "confidence", "num_resamples"}``.
    """
    da, db = _as_matrix(a, "a"), _as_matrix(b, "b")
    if da.shape != db.shape:
        raise ValueError(f"a and b must have the same shape (paired by training seed and episode), "
                         f"got {da.shape} and {db.shape}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    _z(confidence)
    d = da - db
    s, e = d.shape
    rng = np.random.default_rng(seed)
    # Multiplicities of each training seed / episode in each resample: the mean over the drawn sub-matrix
    # is w_seeds @ d @ w_episodes / (s * e), without materialising (num_resamples, s, e).
    w_seeds = rng.multinomial(s, np.full(s, 1.0 / s), size=num_resamples).astype(np.float64)
    w_eps = rng.multinomial(e, np.full(e, 1.0 / e), size=num_resamples).astype(np.float64)
    diffs = np.einsum("rs,se,re->r", w_seeds, d, w_eps) / (s * e)
    alpha = 1.0 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1.0 - alpha / 2])
    return {"diff": float(d.mean()), "ci_low": float(low), "ci_high": float(high), "a_mean": float(da.mean()),
            "b_mean": float(db.mean()), "confidence": float(confidence), "num_resamples": int(num_resamples)}


def noise_floor(success: Any) -> dict[str, float]:
    """Spread of success rates across the training seeds of one cell (same arm, same N).

    ``success`` is either per-seed success rates ``(train_seeds,)`` or per-episode outcomes
    ``(train_seeds, episodes)``. Returns ``{"seeds", "mean", "std" (ddof=1; 0 for one seed), "min", "max",
    "range"}``; for per-episode input also ``"binomial_std"``, the seed-to-seed std expected from episode
    sampling alone (``sqrt(p(1-p)/episodes)`` at the pooled rate p) — a ``std`` well above it means training
    seeds really differ.
    """
    x = np.asarray(success, dtype=np.float64)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"success must be a non-empty (train_seeds,) or (train_seeds, episodes) array, got {x.shape}")
    rates = x if x.ndim == 1 else x.mean(axis=1)
    out = {"seeds": int(len(rates)), "mean": float(rates.mean()),
           "std": float(rates.std(ddof=1)) if len(rates) > 1 else 0.0,
           "min": float(rates.min()), "max": float(rates.max()), "range": float(rates.max() - rates.min())}
    if x.ndim == 2:
        p = float(x.mean())
        out["binomial_std"] = math.sqrt(p * (1.0 - p) / x.shape[1])
    return out
