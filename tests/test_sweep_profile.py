"""benchmarks/sweep_profile.py: the measured profile of a sweep directory adds up what its records say."""

from __future__ import annotations

import json

from benchmarks import sweep_profile
from robrep import results


def test_profile_splits_each_cell_into_train_policy_and_env_and_sums_runs(tmp_path):
    sweep = tmp_path / "sw"
    (sweep / "cells").mkdir(parents=True)
    cells = [("mae", 10.0, 30.0, 20.0), ("mae", 14.0, 40.0, 25.0), ("cnn", 50.0, 10.0, 2.0)]
    for i, (arm, train, evals, policy) in enumerate(cells):
        (sweep / "cells" / f"{arm}_n10_s{i}.json").write_text(json.dumps(
            {"arm": arm, "train_seconds": train, "eval_seconds": evals, "policy_s": policy, "policy_key": f"k{i}"}))
    results.write_csv([{"started_utc": "x", "wall_min": 1.5}, {"started_utc": "y", "wall_min": 2.25}],
                      sweep / "runs.csv")
    rows = sweep_profile.profile(sweep, tmp_path / "no_cache", tmp_path / "no_policies")
    got = {(r["arm"], r["phase"]): (r["items"], r["seconds"]) for r in rows}
    assert got[("mae", "train")] == (2, 24.0) and got[("mae", "eval_policy")] == (2, 45.0)
    assert got[("mae", "eval_env")] == (2, 25.0) and got[("cnn", "eval_env")] == (1, 8.0)
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-3
    assert {r["runs_wall_min"] for r in rows} == {3.75}
    totals = {t["phase"]: t["seconds"] for t in sweep_profile.phase_totals(rows)}
    assert totals == {"train": 74.0, "eval_policy": 47.0, "eval_env": 33.0}


def test_budget_replay_flags_a_cap_that_binds_and_not_one_that_stops_early():
    from benchmarks.budget_pilot import replay

    falling = [{"step": s, "valid_mse": 1.0 / s} for s in range(10, 1001, 10)]  # still improving at every point
    r = replay(falling, frames=640, batch_size=64, epochs=20, evals=20, patience=5, min_steps=1)
    assert r["budget_steps"] == 200 and r["cap_bound"] and r["stopped"] == "budget" and r["best_step"] == 200
    flat = [{"step": s, "valid_mse": max(1.0 / s, 0.01)} for s in range(10, 1001, 10)]  # best at step 100
    r = replay(flat, frames=640, batch_size=64, epochs=100, evals=20, patience=5, min_steps=1)
    assert r["budget_steps"] == 1000 and r["stopped"] == "early" and not r["cap_bound"] and r["best_step"] == 100
    r = replay(flat, frames=64, batch_size=64, epochs=1, evals=20, patience=5, min_steps=500)  # the floor rules
    assert r["budget_steps"] == 500


def test_replay_with_min_delta_stops_a_curve_that_only_creeps_down():
    """A valid MSE that falls 0.5 % per evaluation binds the cap under min_delta 0 but stops early under 2 %."""
    from benchmarks.budget_pilot import replay

    creeping = [{"step": s, "valid_mse": 0.995 ** (s // 10)} for s in range(10, 2001, 10)]
    plain = replay(creeping, frames=640, batch_size=64, epochs=100, evals=20, patience=5, min_steps=1)
    assert plain["cap_bound"] and plain["stopped"] == "budget"
    strict = replay(creeping, frames=640, batch_size=64, epochs=100, evals=20, patience=5, min_steps=1, min_delta=0.2)
    assert strict["stopped"] == "early" and not strict["cap_bound"] and strict["steps_run"] < 1000
    # the kept weights are still the lowest valid MSE seen, not the last progress point
    assert strict["best_step"] == strict["steps_run"]
