"""benchmarks.report: the committed results/REPORT.md and README's costs block are current, and the renderer turns
CSVs into tables, generated sentences and the commands from their comment lines."""

from __future__ import annotations

import pytest

from benchmarks import report
from robrep.results import read_csv, write_csv

SWEEP_CMD = "robrep sweep task=push fake=1"


def _sweep(root):
    d = root / "results" / "sweeps" / "push"
    common = {"task": "push", "n": 10, "seeds": 2, "episodes": 40}
    write_csv([{"arm": "mae", **common, "successes": 10, "success_rate": 0.25, "ci_low": 0.12, "ci_high": 0.44,
                "seed_mean": 0.25, "seed_std": 0.07, "seed_min": 0.2, "seed_max": 0.3},
               {"arm": "cnn", **common, "successes": 20, "success_rate": 0.5, "ci_low": 0.3, "ci_high": 0.7,
                "seed_mean": 0.5, "seed_std": 0.14, "seed_min": 0.4, "seed_max": 0.6}],
              d / "summary.csv", comments=[SWEEP_CMD])
    write_csv([{"arm": arm, "encoder": enc, "n": 10, "seed": s, "episodes": 20, "train_seconds": 60.0,
                "eval_seconds": 30.0} for arm, enc in (("mae", "mae"), ("cnn", "")) for s in (0, 1)],
              d / "table.csv", comments=[SWEEP_CMD])
    write_csv([{"a": "mae", "b": "cnn", "n": 10, "seeds": 2, "episodes": 20, "diff": -0.25, "ci_low": -0.45,
                "ci_high": -0.05}], d / "paired.csv", comments=[SWEEP_CMD])


def test_committed_report_and_readme_block_are_current():
    """What the generator renders from the committed CSVs is what is committed (else: `python -m benchmarks.report`)."""
    root = report.ROOT
    assert (root / "results" / "REPORT.md").read_text() == report.render_report(root)
    readme = (root / "README.md").read_text()
    assert readme == report.fill_costs(readme, report.render_costs(root))
    report.main(["--check"])  # the CLI agrees (SystemExit(1) when stale)


def test_renders_a_synthetic_sweep(tmp_path):
    _sweep(tmp_path)
    text = report.render_report(tmp_path)
    assert "| mae | 25 % [12, 44] (20–30) |" in text
    assert "| cnn | 50 % [30, 70] (40–60) |" in text
    assert ("- N = 10: best frozen arm mae 25 % [12, 44]; best from scratch cnn 50 % [30, 70]; "
            "mae − cnn -0.25 [-0.45, -0.05] (resolved below). Against cnn: resolved above none; "
            "resolved below mae.") in text
    assert "| mae − cnn | 10 | 2 × 20 | -0.25 [-0.45, -0.05] (resolved below) |" in text
    assert "0.1 worker-hours, the from-scratch arms 50 % of it" in text
    assert SWEEP_CMD in text and "# --- sweeps/push/summary.csv" in text
    assert report.render_report(tmp_path) == text  # deterministic


def test_renders_a_synthetic_gate(tmp_path):
    row = {"encoder": "dift", "task": "push", "budget": "full", "weights_hash": "0", "gate": "pass",
           "passing_readouts": "flat", "global_token_worst_pos": "nan", "reason": ""}
    row.update({k: 0.95 for k in report.POS})
    row.update({f"{k}_baseline": 0.85 for k in report.POS})
    write_csv([row], tmp_path / "results" / "probe_full" / "gate.csv", comments=["python -m benchmarks.probe_gate"])
    text = report.render_report(tmp_path)
    assert "| dift | push | pass | flat | 0.950 (0.850) | 0.950 (0.850) | 0.950 (0.850) | – |" in text
    assert "Verdicts — pass: dift on push (flat); fail: none; reported: none." in text


def test_costs_block_and_check(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.BEGIN}\nold\n{report.END}\n\nrest\n")
    with pytest.raises(SystemExit) as stale:
        report.main(["--root", str(tmp_path), "--check"])
    assert stale.value.code == 1
    report.main(["--root", str(tmp_path)])
    assert "not measured yet" in readme.read_text() and readme.read_text().endswith("\n\nrest\n")
    report.main(["--root", str(tmp_path), "--check"])
    write_csv([{"cpu": "test-cpu", "native_bf16": "true", "what": w, "minutes": m, "size_gb": g, "command": c,
                "date": "2030-01-01"} for w, m, g, c in (("install", 3.0, 4.5, "bash scripts/setup.sh"),
                                                        ("tests", 12.25, "", "pytest -q"),
                                                        ("quickstart", 20.0, "", "robrep quickstart"))],
              tmp_path / "results" / "costs.csv")
    with pytest.raises(SystemExit):
        report.main(["--root", str(tmp_path), "--check"])
    report.main(["--root", str(tmp_path)])
    assert "| test-cpu | yes | 3.0 min, 4.5 GB | 12.2 min | 20.0 min |" in readme.read_text()
    report.main(["--root", str(tmp_path), "--check"])
    assert "stale" in capsys.readouterr().out


def test_budget_pilot_rows_are_aggregated_per_rule(tmp_path):
    rows = [{"arm": a, "n": "10", "epochs": "20", "min_delta": "0.05", "steps_run": "100", "budget_steps": "200",
             "cap_bound": str(a == "cnn"), "gap": g} for a, g in (("cnn", "0.1"), ("mae", "0.3"))]
    (agg,) = report._budget_rows(rows)
    assert agg == {"min_delta": "0.05", "epochs": "20", "runs": "2", "cap_bound": "1", "steps_run": "200",
                   "mean_gap": "0.200", "max_gap": "0.300", "bound": "cnn@10"}
    path = write_csv(rows, tmp_path / "budget_pilot.csv", comments=["python -m benchmarks.budget_pilot --x"])
    text = "\n".join(report.budget_section(tmp_path, path))
    assert "| 0.05 | 20 | 2 | 1 | 200 | 0.200 | 0.300 | cnn@10 |" in text and "budget_pilot --x" in text


def test_the_cross_task_table_has_a_column_per_committed_task(tmp_path):
    res = tmp_path / "results" / "sweeps"
    for task, name, auc in (("push", "push_fair2", 0.4), ("pick_place", "pick_place_fair", 0.2)):
        d = res / name
        write_csv([{"arm": a, "task": task, "ns": "10 500", "seeds": 5, "auc": auc + i / 10, "auc_ci_low": auc,
                    "auc_ci_high": auc + 0.2, "auc_std": 0.1} for i, a in enumerate(("cnn", "mae"))], d / "auc.csv",
                  comments=[f"robrep sweep task={task}"])
        write_csv([{"arm": a, "task": task, "n": n, "seeds": 5, "episodes": 500, "successes": int(500 * m),
                    "success_rate": m, "ci_low": m - 0.05, "ci_high": m + 0.05, "seed_mean": m, "seed_ci_low": m - 0.1,
                    "seed_ci_high": m + 0.1, "seed_std": 0.1, "seed_min": m - 0.1, "seed_max": m + 0.1}
                   for a, m10, m500 in (("cnn", 0.1, 0.9), ("mae", 0.3, 0.8), ("state", 0.5, 0.95))
                   for n, m in ((10, m10), (500, m500))],
                  d / "summary.csv")
        write_csv([{"wall_min": 30.5}, {"wall_min": 20.0}], d / "runs.csv")
    text = report.render_report(tmp_path)
    assert "| arm | push | pick_place |" in text
    assert "| mae | 0.500 [0.400, 0.600] | 0.300 [0.200, 0.400] |" in text
    assert ("- pick_place (`pick_place_fair`): N = 10, 500; 50 min of wall over its runs (runs.csv: interrupted and "
            "killed invocations included, except those SIGKILLed before its rows had a heartbeat, which left none); "
            "best vision arm (seed mean) at N = 10: mae 30 % [20, 40] (state oracle 50 % [40, 60]), its "
            "interval overlapped by cnn; at N = 500: cnn 90 % [80, 100] (state oracle 95 % [85, 105]), its interval "
            "overlapped by mae.") in text
    assert "Success at N = 500 per arm and task" in text and "| mae | 80.0 % [70.0, 90.0] | 80.0 % [70.0, 90.0] |" in text
    assert "Chance floor" not in text
    write_csv([{"task": "push", "env": "push", "policy": k, "split": "test", "seed_start": 0, "episodes": 100,
                "successes": s, "success_rate": s / 100, "ci_low": 0.0, "ci_high": 0.05 * (s + 1), "mean_length": 80,
                "wall_s": 1.0} for k, s in (("zero", 0), ("random", 2))], tmp_path / "results" / "chance_floor.csv",
              comments=["python -m benchmarks.chance_floor --commit"])
    text = report.render_report(tmp_path)
    assert "| push | test | 0/100 = 0 % [0, 5] | 2/100 = 2 % [0, 15] |" in text
    assert "python -m benchmarks.chance_floor --commit" in text
    summary = read_csv(res / "push_fair2" / "summary.csv")  # a stage where only the oracle's cells landed
    summary.append({**summary[-1], "n": 1000, "seed_mean": 0.99, "seed_ci_low": 0.98, "seed_ci_high": 1.0})
    write_csv(summary, res / "push_fair2" / "summary.csv")
    assert "at N = 1000: no vision arm recorded yet (state oracle 99 % [98, 100])." in report.render_report(tmp_path)
    summary.append({**summary[0], "n": 1000})  # then one of its two vision arms
    write_csv(summary, res / "push_fair2" / "summary.csv")
    assert ("at N = 1000: cnn 10 % [0, 20] (state oracle 99 % [98, 100]) (only 1 of the sweep's 2 vision arms "
            "recorded at this N), its interval overlapped by none.") in report.render_report(tmp_path)
    assert report.rate({"success_rate": 0.002, "ci_low": -0.0036, "ci_high": 0.0076}) == "0 % [0, 1]"  # not -0


def test_the_state_oracle_is_named_as_such_and_never_the_best_arm(tmp_path):
    """A sweep with the privileged-state oracle: listed as the oracle, neither the best frozen nor the best
    from-scratch arm, however high it scores."""
    _sweep(tmp_path)
    d = tmp_path / "results" / "sweeps" / "push"
    summary, table = read_csv(d / "summary.csv"), read_csv(d / "table.csv")
    summary.append({**summary[0], "arm": "state", "successes": 36, "success_rate": 0.9, "seed_mean": 0.9})
    table += [{**table[0], "arm": "state", "encoder": ""}, {**table[1], "arm": "state", "encoder": ""}]
    write_csv(summary, d / "summary.csv", comments=[SWEEP_CMD])
    write_csv(table, d / "table.csv", comments=[SWEEP_CMD])
    text = report.render_report(tmp_path)
    assert "From scratch: cnn. Privileged-state oracle" in text and "state." in text
    assert "best frozen arm mae 25 % [12, 44]; best from scratch cnn 50 % [30, 70]" in text


def test_the_matched_run_sections_appear_once_their_files_exist(tmp_path):
    """The compute-matched run's probe gates (results/probe_matched/step_<N>/gate.csv, in step order) and its
    closed-loop comparison render only when committed."""
    assert "compute-matched run" not in report.render_report(tmp_path)
    row = {"encoder": "mae", "task": "push", "budget": "2000", "weights_hash": "ab", "gate": "fail",
           "passing_readouts": "", "block_pos": 0.9, "block_pos_baseline": 0.95, "goal_pos": 0.9,
           "goal_pos_baseline": 0.95, "gripper_pos": 0.8, "gripper_pos_baseline": 0.85, "global_token_worst_pos": 0.7,
           "reason": "x"}
    for step in (8000, 2000):
        write_csv([{**row, "budget": str(step)}], tmp_path / "results" / "probe_matched" / f"step_{step}" / "gate.csv",
                  comments=[f"python -m benchmarks.probe_gate --budget {step}"])
    write_csv([{"arm": "mae", "n": 10, "seeds": 5, "episodes": 100, "a": 0.2, "b": 0.1, "diff": 0.1, "ci_low": 0.0,
                "ci_high": 0.2, "p_value": 0.04, "p_holm": 0.04, "resolved": True}],
              tmp_path / "results" / "compare_sweeps" / "push_matched_vs_full.csv", comments=["python -m x"])
    text = report.render_report(tmp_path)
    assert text.index("compute-matched run at step 2000") < text.index("compute-matched run at step 8000")
    assert "What the matched compute bought in closed loop" in text
    assert "Resolved after Holm: mae N = 10 +0.100 [+0.000, +0.200] (a better). Not resolved: 0 of 1 rows." in text


def test_a_figure_saved_twice_has_the_same_bytes(tmp_path):
    """Plots regenerated from unchanged results leave the committed files as they were (no date, fixed SVG ids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robrep.results import save_figure

    def draw(path):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [0.1, 0.5, 0.4], label="a")
        ax.fill_between([0, 1, 2], 0, 0.2)
        ax.legend()
        return save_figure(fig, path)

    first = {p.suffix: p.read_bytes() for p in draw(tmp_path / "a" / "fig")}
    second = {p.suffix: p.read_bytes() for p in draw(tmp_path / "b" / "fig")}
    assert first == second and set(first) == {".png", ".svg"}
