"""Statistics of success rates: Wilson intervals, paired bootstrap differences, the seed noise floor, seed-level
Student-t intervals and paired t-tests, Holm–Bonferroni adjustment, and the area under success vs log N.

All functions take plain numbers or numpy arrays of per-episode outcomes (1 = success, 0 = failure)
and use numpy/scipy only.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from scipy.stats import norm, t as student_t, ttest_1samp


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


def _t_half_width(sem: float, dof: int, confidence: float) -> float:
    return float(student_t.ppf(0.5 + confidence / 2.0, dof)) * sem


def seed_interval(values: Any, confidence: float = 0.95) -> dict[str, float]:
    """Mean over training seeds of per-seed success rates, with a Student-t interval.

    ``values`` is per-seed success rates ``(train_seeds,)`` (fractions in [0, 1]) or per-episode outcomes
    ``(train_seeds, episodes)``, reduced to per-seed rates by the row mean. The interval is
    ``mean ± t_{dof}(0.5 + confidence/2) · sem`` with ``sem = std(ddof=1) / sqrt(seeds)`` and ``dof = seeds − 1``:
    it treats the training seeds as the sampled unit (episodes only enter through each seed's rate).

    Returns:
        ``{"mean", "ci_low", "ci_high", "sem", "dof"}``. With one seed there is no spread to measure: ``sem``,
        ``ci_low`` and ``ci_high`` are nan (``dof`` 0). When every seed has the same rate the interval is
        ``[mean, mean]`` (sem 0).

    Raises:
        ValueError: empty or non-finite ``values``, or ``confidence`` outside (0, 1).
    """
    _z(confidence)
    x = np.asarray(values, dtype=np.float64)
    if x.ndim not in (1, 2) or x.size == 0:
        raise ValueError(f"values must be a non-empty (train_seeds,) or (train_seeds, episodes) array, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values has non-finite entries")
    rates = x if x.ndim == 1 else x.mean(axis=1)
    k, mean = len(rates), float(rates.mean())
    if k < 2:
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "sem": math.nan, "dof": 0}
    sem = float(rates.std(ddof=1)) / math.sqrt(k)
    half = _t_half_width(sem, k - 1, confidence)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sem": sem, "dof": k - 1}


def seed_diff_test(diffs: Any, confidence: float = 0.95) -> dict[str, float]:
    """Mean of per-seed paired differences ``(train_seeds,)`` with a Student-t interval and a two-sided one-sample
    t-test of mean 0 (:func:`scipy.stats.ttest_1samp`): the seed-level test behind :func:`paired_seed_diff`, for any
    per-seed quantity (success rate, area under the success curve, ...).

    Returns:
        ``{"diff", "ci_low", "ci_high", "p_value", "seeds"}``. With fewer than 2 seeds ``ci_low``, ``ci_high`` and
        ``p_value`` are nan. When every per-seed difference is the same (zero spread, where the t statistic is
        undefined) the interval is ``[diff, diff]`` and ``p_value`` is 0 if that difference is non-zero, 1 if it is 0.

    Raises:
        ValueError: ``diffs`` not a non-empty finite 1-D array, or ``confidence`` outside (0, 1).
    """
    _z(confidence)
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diffs must be a non-empty (train_seeds,) array, got {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("diffs has non-finite entries")
    k, mean = len(d), float(d.mean())
    if k < 2:
        return {"diff": mean, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "seeds": k}
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        return {"diff": mean, "ci_low": mean, "ci_high": mean, "p_value": 0.0 if mean != 0.0 else 1.0, "seeds": k}
    half = _t_half_width(float(d.std(ddof=1)) / math.sqrt(k), k - 1, confidence)
    p = float(ttest_1samp(d, 0.0).pvalue)
    return {"diff": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": p, "seeds": k}


def paired_seed_diff(a: Any, b: Any, confidence: float = 0.95) -> dict[str, float]:
    """Seed-level paired difference of success rates ``a − b``.

    ``a`` and ``b`` are per-episode outcomes ``(train_seeds, episodes)`` (0/1) on the same evaluation layouts (column
    ``j`` the same episode seed in both) and row ``i`` of ``a`` paired with row ``i`` of ``b`` (the same training
    seed index, hence the same demonstration subset). Each seed gives one difference of success rates
    ``mean(a[i]) − mean(b[i])``; their mean gets a Student-t interval and a two-sided one-sample t-test against 0
    (equivalently :func:`scipy.stats.ttest_rel` on the per-seed rates), see :func:`seed_diff_test`.

    Returns:
        ``{"diff", "ci_low", "ci_high", "p_value", "seeds"}``; nan interval and p-value with fewer than 2 seeds;
        identical per-seed differences give the interval ``[diff, diff]`` and ``p_value`` 0 (diff ≠ 0) or 1 (diff 0).

    Raises:
        ValueError: shapes differ, non-finite values, or ``confidence`` outside (0, 1).
    """
    da, db = _as_matrix(a, "a"), _as_matrix(b, "b")
    if da.shape != db.shape:
        raise ValueError(f"a and b must have the same shape (paired by training seed and episode), "
                         f"got {da.shape} and {db.shape}")
    # Sum then divide: equal success counts give bit-identical differences (the zero-spread case is exact).
    return seed_diff_test((da - db).sum(axis=1) / da.shape[1], confidence=confidence)


def holm(p_values: Any) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, same shape and order as ``p_values``.

    Step-down: with the ``m`` finite p-values sorted ascending ``p_(1) ≤ … ≤ p_(m)``, the adjusted value of ``p_(i)``
    is ``min(1, max_{j ≤ i} (m − j + 1) · p_(j))`` — monotone in ``p`` and capped at 1. Rejecting where the adjusted
    value is below α controls the family-wise error rate at α. nan entries stay nan and do not count in ``m``.

    Raises:
        ValueError: a finite p-value outside [0, 1], or infinite values.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat, res = p.ravel(), out.ravel()
    ok = ~np.isnan(flat)
    vals = flat[ok]
    if np.isinf(vals).any() or ((vals < 0) | (vals > 1)).any():
        raise ValueError(f"p-values must be in [0, 1] or nan, got {flat[ok].tolist()}")
    m = len(vals)
    if m:
        order = np.argsort(vals, kind="stable")
        adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * vals[order]))
        idx = np.flatnonzero(ok)[order]
        res[idx] = adjusted
    return res.reshape(p.shape)


def auc_log_n(ns: Any, rates: Any) -> float:
    """Area under success rate vs ``log10(N)`` by the trapezoid rule, divided by ``log10(max N) − log10(min N)``:
    the mean success over log N between the smallest and the largest N, in [0, 1] for rates in [0, 1] (a constant
    rate r gives r).

    ``ns`` are demonstration counts ``(points,)`` (positive, distinct; any order) and ``rates`` the success rates
    ``(points,)`` at them.

    Raises:
        ValueError: shapes differ, fewer than 2 points, repeated or non-positive N, or non-finite rates.
    """
    n = np.asarray(ns, dtype=np.float64)
    r = np.asarray(rates, dtype=np.float64)
    if n.ndim != 1 or n.shape != r.shape:
        raise ValueError(f"ns and rates must be 1-D arrays of the same length, got {n.shape} and {r.shape}")
    if len(np.unique(n)) < 2:
        raise ValueError(f"auc_log_n needs at least 2 distinct N, got {n.tolist()}")
    if len(np.unique(n)) != len(n):
        raise ValueError(f"auc_log_n needs each N once (one rate per N), got {n.tolist()}")
    if not (np.isfinite(n).all() and (n > 0).all()) or not np.isfinite(r).all():
        raise ValueError(f"N must be positive and finite and rates finite, got ns={n.tolist()}, rates={r.tolist()}")
    order = np.argsort(n)
    x, y = np.log10(n[order]), r[order]
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)) / (x[-1] - x[0]))
