"""Behaviour cloning on the planner's layouts (issue 21: "beside it BC at 100 demos on the same layouts").

    python -m benchmarks.bc_beside_planner --sweep results/sweeps/push_fair2 [--n 100] [--episodes 50]
        [--commit | --out PATH]

Reads a committed sweep's cell records (``<sweep>/cells/*.json``) at ``--n`` demos and keeps, of each cell's test
episodes, those on the planner's test layouts — the first ``--episodes`` test seeds
(:func:`robrep.seeds.eval_seeds`), which every ``robrep plan eval_split=test episodes=<E>`` row of the ladder uses —
so each BC arm is scored on exactly the planner's layouts. Per arm: the training seeds, successes pooled over them
with a Wilson 95 % interval, and the mean over seeds with a seed-level Student-t interval
(:func:`robrep.eval.stats.seed_interval`). Writes runs/benchmarks/bc_beside_planner/ (``--commit``:
results/plan/<task>_bc_beside_planner.csv).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv

NAME = "bc_beside_planner"


def bc_rows(sweep: Path, n: int, episodes: int) -> list[dict]:
    """One row per arm of ``sweep`` at ``n`` demos: success on the first ``episodes`` test layouts."""
    from robrep.eval.stats import seed_interval, wilson_interval
    from robrep.seeds import eval_seeds

    layouts = eval_seeds(episodes, 0, "test")
    by_arm: dict[str, list[tuple[int, list[int]]]] = {}
    task = None
    for path in sorted((sweep / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if int(cell["n"]) != n or cell.get("eval_split") != "test":
            continue
        outcome = dict(zip(cell["episode_seeds"], cell["episode_success"]))
        missing = [s for s in layouts if s not in outcome]
        if missing:
            raise ValueError(f"{path}: {len(missing)} of the planner's {episodes} test layouts were not evaluated")
        task = task or cell["task"]
        by_arm.setdefault(cell["arm"], []).append((int(cell["seed"]), [int(bool(outcome[s])) for s in layouts]))
    if not by_arm:
        raise ValueError(f"{sweep}: no test cells at N={n}")
    rows = []
    for arm, cells in sorted(by_arm.items()):
        cells.sort()
        wins = sum(sum(o) for _, o in cells)
        total = len(cells) * episodes
        lo, hi = wilson_interval(wins, total)
        seed = seed_interval([sum(o) / episodes for _, o in cells])
        rows.append({"task": task, "arm": arm, "n": n, "train_seeds": len(cells),
                     "layouts": f"test {layouts[0]}..{layouts[-1]}", "episodes_per_seed": episodes,
                     "successes": wins, "episodes": total, "success_rate": round(wins / total, 4),
                     "ci_low": round(lo, 4), "ci_high": round(hi, 4), "seed_mean": round(seed["mean"], 4),
                     "seed_ci_low": round(seed["ci_low"], 4), "seed_ci_high": round(seed["ci_high"], 4),
                     "sweep": sweep.as_posix()})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="a committed sweep folder (with cells/)")
    parser.add_argument("--n", type=int, default=100, help="demos per training set")
    parser.add_argument("--episodes", type=int, default=50, help="the planner's test layouts: the first E test seeds")
    add_output_args(parser, NAME, "results/plan/<task>_bc_beside_planner.csv")
    args = parser.parse_args(argv)
    rows = bc_rows(Path(args.sweep), args.n, args.episodes)
    out = output_path(args, NAME, f"results/plan/{rows[0]['task']}_bc_beside_planner.csv")
    for r in rows:
        print(f"{r['arm']:>16} N={r['n']}: {r['successes']}/{r['episodes']} = {r['success_rate']:.2f} "
              f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}] pooled; seed mean {r['seed_mean']:.2f} "
              f"[{r['seed_ci_low']:.2f}, {r['seed_ci_high']:.2f}] over {r['train_seeds']} seeds")
    write_csv(rows, out, comments=[command(NAME, argv)])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
