"""Seed-level statistics: Student-t intervals over training seeds, paired t-tests, Holm–Bonferroni, the area under
success vs log N, and the sweep tables built on them (summary, paired, AUC) with their verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robrep.eval.stats import auc_log_n, holm, paired_seed_diff, seed_diff_test, seed_interval
from robrep.sweep.table import (AUC_COLUMNS, AUC_PAIRED_COLUMNS, PAIRED_COLUMNS, SUMMARY_COLUMNS, auc_paired_rows,
                                auc_rows, complete_ns, default_auc_pairs, format_auc, paired_rows, seed_aucs,
                                summarise)


def record(arm: str, n: int, seed: int, success: list[int], layout: int = 0) -> dict:
    return {"arm": arm, "task": "push", "n": n, "seed": seed, "episodes": len(success), "successes": sum(success),
            "success_rate": sum(success) / len(success),
            "episode_seeds": list(range(1_000_000 + layout, 1_000_000 + layout + len(success))),
            "episode_success": list(success)}


def outcomes(rate: float, episodes: int, rng: np.random.Generator) -> list[int]:
    """``episodes`` 0/1 outcomes with exactly ``round(rate · episodes)`` successes, shuffled."""
    k = int(round(rate * episodes))
    return rng.permutation([1] * k + [0] * (episodes - k)).tolist()


# --- robrep.eval.stats -------------------------------------------------------------------------------------------

def test_seed_interval_is_the_student_t_interval():
    rates = np.array([0.2, 0.35, 0.5, 0.3, 0.45])
    out = seed_interval(rates)
    sem = sps.sem(rates)
    low, high = sps.t.interval(0.95, len(rates) - 1, loc=rates.mean(), scale=sem)
    assert out["mean"] == pytest.approx(rates.mean()) and out["sem"] == pytest.approx(sem) and out["dof"] == 4
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    low90, high90 = sps.t.interval(0.9, 4, loc=rates.mean(), scale=sem)
    assert seed_interval(rates, confidence=0.9)["ci_low"] == pytest.approx(low90)
    assert seed_interval(rates, confidence=0.9)["ci_high"] == pytest.approx(high90)
    episodes = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])  # (seeds, episodes) → per-seed rates
    assert seed_interval(episodes) == seed_interval([0.25, 0.5, 0.75])


def test_seed_interval_with_one_seed_or_no_spread():
    one = seed_interval([0.4])
    assert one["mean"] == 0.4 and one["dof"] == 0 and all(math.isnan(one[k]) for k in ("ci_low", "ci_high", "sem"))
    flat = seed_interval([0.3, 0.3, 0.3])
    assert flat["ci_low"] == flat["ci_high"] == flat["mean"] == pytest.approx(0.3) and flat["sem"] == 0
    for bad in ([], [0.1, np.nan]):
        with pytest.raises(ValueError):
            seed_interval(bad)
    with pytest.raises(ValueError, match="confidence"):
        seed_interval([0.1, 0.2], confidence=1.0)


def test_paired_seed_diff_is_the_paired_t_test_on_per_seed_rates():
    rng = np.random.default_rng(0)
    a = (rng.random((6, 30)) < 0.6).astype(float)
    b = (rng.random((6, 30)) < 0.4).astype(float)
    out = paired_seed_diff(a, b)
    d = a.mean(axis=1) - b.mean(axis=1)
    assert out["seeds"] == 6 and out["diff"] == pytest.approx(d.mean())
    assert out["p_value"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue)
    assert out["p_value"] == pytest.approx(sps.ttest_rel(a.mean(axis=1), b.mean(axis=1)).pvalue)
    low, high = sps.t.interval(0.95, 5, loc=d.mean(), scale=sps.sem(d))
    assert (out["ci_low"], out["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    flipped = paired_seed_diff(b, a)
    assert flipped["diff"] == pytest.approx(-out["diff"]) and flipped["p_value"] == pytest.approx(out["p_value"])
    with pytest.raises(ValueError, match="same shape"):
        paired_seed_diff(a, b[:, :-1])


def test_paired_seed_diff_degenerate_cases():
    same_gain = paired_seed_diff([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0]], [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]])
    assert same_gain["diff"] == 0.25 and same_gain["p_value"] == 0.0  # identical non-zero differences: p = 0
    assert same_gain["ci_low"] == same_gain["ci_high"] == 0.25
    tie = paired_seed_diff([[1, 0], [0, 1]], [[0, 1], [1, 0]])
    assert tie["diff"] == 0.0 and tie["p_value"] == 1.0  # identical zero differences: p = 1
    one = paired_seed_diff([[1, 1, 0]], [[0, 0, 0]])
    assert one["seeds"] == 1 and one["diff"] == pytest.approx(2 / 3)
    assert math.isnan(one["p_value"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
    assert seed_diff_test([0.1, 0.1, 0.1])["p_value"] == 0.0  # the generic per-seed form (e.g. AUC differences)


def test_holm_matches_hand_values_and_is_monotone():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # capped at 1 and monotone: 2·0.4 = 0.8, max(0.8, 0.5)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    # nan stays nan and is not counted in m: the same as Holm over the two finite values
    assert np.array_equal(holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04], equal_nan=True)
    assert holm([]).shape == (0,) and np.isnan(holm([np.nan])).all()
    rng = np.random.default_rng(1)
    p = rng.random(40) ** 3
    adj = holm(p)
    order = np.argsort(p)
    assert (np.diff(adj[order]) >= 0).all() and (adj >= p).all() and (adj <= 1).all()
    assert adj.min() == pytest.approx(40 * p.min())
    with pytest.raises(ValueError):
        holm([0.1, 1.5])


def test_auc_log_n_is_the_mean_success_over_log_n():
    assert auc_log_n([10, 1000], [0.0, 1.0]) == pytest.approx(0.5)
    assert auc_log_n([10, 50, 100, 500], [0.3] * 4) == pytest.approx(0.3)
    # uneven spacing in log N: 10→100 (one decade) at 0→1, 100→1000 at 1: (0.5 + 1) / 2
    assert auc_log_n([1000, 10, 100], [1.0, 0.0, 1.0]) == pytest.approx(0.75)  # any order
    assert auc_log_n([10, 100], [1.0, 1.0]) == 1.0 and auc_log_n([10, 100], [0.0, 0.0]) == 0.0
    for ns, rates in (([10], [0.5]), ([10, 10], [0.1, 0.2]), ([0, 10], [0.1, 0.2]), ([10, 100], [0.1])):
        with pytest.raises(ValueError):
            auc_log_n(ns, rates)


# --- robrep.sweep.table -------------------------------------------------------------------------------------------

def _sweep(seeds: int = 5, episodes: int = 40) -> list[dict]:
    """A synthetic sweep at N = 10, 100, 1000: ``clear`` beats cnn by 0.4 on every seed; ``noisy`` is cnn ± seed
    noise (no real difference); ``clear_random`` is the random-init control of ``clear``."""
    rng = np.random.default_rng(7)
    base = {10: 0.2, 100: 0.4, 1000: 0.5}
    noise = [0.15, -0.1, 0.05, -0.15, 0.1, -0.05, 0.0][:seeds]
    recs = []
    for n, p in base.items():
        for s in range(seeds):
            recs.append(record("cnn", n, s, outcomes(p, episodes, rng)))
            recs.append(record("clear", n, s, outcomes(p + 0.4, episodes, rng)))
            recs.append(record("noisy", n, s, outcomes(p + noise[s], episodes, rng)))
            recs.append(record("clear_random", n, s, outcomes(p - 0.1, episodes, rng)))
    return recs


def test_summary_has_pooled_and_seed_level_intervals():
    summary = summarise(_sweep())
    assert [tuple(r) for r in summary] == [SUMMARY_COLUMNS] * len(summary) and len(summary) == 12
    for r in summary:
        assert r["seed_ci_low"] <= r["seed_mean"] <= r["seed_ci_high"]
        assert r["ci_low"] <= r["success_rate"] <= r["ci_high"]
    noisy = next(r for r in summary if (r["arm"], r["n"]) == ("noisy", 10))
    rates = [0.35, 0.1, 0.25, 0.05, 0.3]  # 0.2 + noise, on 40 episodes each
    low, high = sps.t.interval(0.95, 4, loc=np.mean(rates), scale=sps.sem(rates))
    assert (noisy["seed_ci_low"], noisy["seed_ci_high"]) == (round(low, 4), round(high, 4))
    (one,) = summarise([record("cnn", 10, 0, [1, 0, 1, 0])])
    assert math.isnan(one["seed_ci_low"]) and math.isnan(one["seed_ci_high"]) and one["ci_low"] > 0


def test_paired_rows_resolve_a_clear_winner_and_not_a_noisy_one():
    recs = _sweep()
    rows = paired_rows(recs, [("clear", "cnn"), ("noisy", "cnn"), ("cnn", "clear")], num_resamples=500)
    assert [tuple(r) for r in rows] == [PAIRED_COLUMNS] * 9
    by = {(r["a"], r["b"], r["n"]): r for r in rows}
    for n in (10, 100, 1000):
        clear, noisy, reverse = by["clear", "cnn", n], by["noisy", "cnn", n], by["cnn", "clear", n]
        assert clear["verdict"] == "resolved: a better" and clear["seed_diff"] == pytest.approx(0.4)
        assert clear["seed_ci_low"] > 0 and clear["p_holm"] < 0.05 and clear["diff"] == pytest.approx(0.4)
        assert reverse["verdict"] == "resolved: a worse"
        assert noisy["verdict"] == "unresolved" and noisy["seed_ci_low"] < 0 < noisy["seed_ci_high"]
    # p_holm is Holm over all 9 rows of this table, from the same per-row p-values
    p = np.array([r["p_value"] for r in rows])
    assert [r["p_holm"] for r in rows] == pytest.approx(holm(p), rel=1e-3)
    assert all(r["p_holm"] >= r["p_value"] for r in rows)


def test_auc_rows_and_paired_auc():
    recs = _sweep()
    aucs = seed_aucs(recs, "clear")
    assert sorted(aucs) == [0, 1, 2, 3, 4]
    # rates 0.6, 0.8, 0.9 at N = 10, 100, 1000 (two equal decades): mean of the trapezoids (0.7 + 0.85) / 2
    assert all(v == pytest.approx(0.775) for v in aucs.values())
    rows = auc_rows(recs)
    assert [tuple(r) for r in rows] == [AUC_COLUMNS] * 4
    by = {r["arm"]: r for r in rows}
    assert by["clear"]["auc"] == pytest.approx(0.775) and by["clear"]["seeds"] == 5 and by["cnn"]["ns"] == "10 100 1000"
    assert by["noisy"]["auc_ci_low"] < by["noisy"]["auc"] < by["noisy"]["auc_ci_high"]
    text = format_auc(rows)
    assert text.splitlines()[1].startswith("clear") and "0.775" in text

    pairs = default_auc_pairs(["cnn", "clear", "noisy", "clear_random"])
    assert pairs == [("clear", "cnn"), ("clear", "clear_random"), ("noisy", "cnn")]
    paired = auc_paired_rows(recs, pairs)
    assert [tuple(r) for r in paired] == [AUC_PAIRED_COLUMNS] * 3
    pb = {(r["a"], r["b"]): r for r in paired}
    assert pb["clear", "cnn"]["diff"] == pytest.approx(0.4) and pb["clear", "cnn"]["verdict"] == "resolved: a better"
    assert pb["clear", "clear_random"]["verdict"] == "resolved: a better"
    assert pb["noisy", "cnn"]["verdict"] == "unresolved"
    assert [r["p_holm"] for r in paired] == pytest.approx(holm([r["p_value"] for r in paired]), rel=1e-3)


def test_auc_uses_seeds_present_at_every_n_on_shared_layouts():
    recs = _sweep(seeds=3)
    recs = [r for r in recs if not (r["arm"] == "clear" and r["n"] == 1000 and r["seed"] == 2)]  # seed 2 lacks N=1000
    recs += [record("cnn", 10, 9, [1, 0, 1, 0])]  # a seed only at one N: in no AUC
    assert sorted(seed_aucs(recs, "clear")) == [0, 1] and sorted(seed_aucs(recs, "cnn")) == [0, 1, 2]
    rows = {r["a"]: r for r in auc_paired_rows(recs, [("clear", "cnn"), ("noisy", "cnn")])}
    assert rows["clear"]["seeds"] == 2 and rows["noisy"]["seeds"] == 3
    assert auc_rows(recs, ns=[10, 100])[0]["ns"] == "10 100"
    # other evaluation layouts at one N for one seed of noisy: that seed is not a paired comparison
    moved = [record(r["arm"], r["n"], r["seed"], r["episode_success"], layout=500)
             if (r["arm"], r["n"], r["seed"]) == ("noisy", 100, 0) else r for r in recs]
    assert {r["a"]: r["seeds"] for r in auc_paired_rows(moved, [("noisy", "cnn")])} == {"noisy": 2}
    assert auc_paired_rows(recs, [("clear", "missing_arm")]) == []
    with pytest.raises(ValueError, match="at least 2 distinct N"):
        auc_rows([r for r in recs if r["n"] == 10])


def test_complete_ns_is_the_n_every_arm_has_finished():
    """A sweep run stage by stage: the grid of its AUC tables is the N every (multi-N) arm has for every seed."""
    recs = _sweep(seeds=3)
    assert complete_ns(recs) == [10, 100, 1000]
    started = recs + [record("state", n, s, [1, 1, 0, 1]) for n in (10, 100, 1000, 5000) for s in range(3)]
    started += [record("clear", 5000, 0, [1, 1, 1, 1])]  # N = 5000: the oracle's cells and one seed of one arm
    started += [record("once", 100, 0, [0, 1, 0, 0])]    # a one-off arm at one N does not hold the grid back
    assert complete_ns(started) == [10, 100, 1000]
    assert {r["arm"]: r["ns"] for r in auc_rows(started, complete_ns(started))} == {
        a: "10 100 1000" for a in ("clear", "clear_random", "cnn", "noisy", "state")}
    # over every N of the sweep instead: the oracle and one seed of one arm would be the whole table
    assert {(r["arm"], r["seeds"]) for r in auc_rows(started)} == {("state", 3), ("clear", 1)}
    short = [r for r in started if not (r["arm"] == "cnn" and r["n"] == 100 and r["seed"] == 1)]
    assert complete_ns(short) == [10, 1000]
    fewer = [r for r in recs if not (r["n"] == 1000 and r["seed"] == 2)]  # seeds_by_n: 2 seeds at N = 1000, 3 below
    assert complete_ns(fewer) == [10, 100, 1000]


def test_default_auc_pairs_use_the_family_random_control():
    arms = ["cnn", "resnet18", "mae", "mae_cls", "mae_random", "clip", "clip_spatial", "clip_random", "dift"]
    # a family arm against its own random init (same readout); variants (mae_cls, clip_spatial) against the CNN only
    assert default_auc_pairs(arms) == [("mae", "cnn"), ("mae", "mae_random"), ("mae_cls", "cnn"), ("clip", "cnn"),
                                       ("clip", "clip_random"), ("clip_spatial", "cnn"), ("dift", "cnn")]
    assert default_auc_pairs(["cnn", "resnet18", "mae_random"]) == []
