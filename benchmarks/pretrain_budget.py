"""Choose the matched pretraining budget from the loss-vs-steps curves of the committed checkpoints.

``python -m benchmarks.pretrain_budget [--budgets 4000 8000 12000] [--lanes 2] [--commit | --out PATH]``

Reads each family's committed loss curve (``weights/<family>_<budget>.loss.csv``, written by ``robrep pretrain``;
default the wall-clock-matched ``full`` checkpoints and the 100-minute ``mae_long``) and reports per run: the steps it
reached, its seconds per step (as recorded, under its own thread count and load), the smoothed loss (mean over a
window of 10 % of the run) at half the run and at its end, and the relative drop of the loss over the run's second
half — a curve still falling there has not used up its data. Then, per candidate budget in optimizer steps (the
same for every family), how many times each family's current steps it is and its predicted cost from the recorded
seconds per step: core-hours in all and hours of wall with ``--lanes`` families running side by side (longest
lane, greedy packing). A prediction
from the recorded speeds, not a measurement; the checkpoints the budget makes record their own steps, FLOPs and time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "pretrain_budget"
COMMITTED = "results/pretrain_budget.csv"
DEFAULT_RUNS = ("mae_full", "dift_full", "voltron_full", "clip_full", "mae_long")


def curve_summary(path: Path) -> dict:
    """Steps, seconds per step and the smoothed loss at half and at the end of one loss curve (CSV: step, loss,
    seconds)."""
    rows = results.read_csv(path)
    step = np.array([float(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    secs = np.array([float(r["seconds"]) for r in rows])
    window = max(1, int(round(0.1 * len(rows))))
    smooth = lambda i: float(np.mean(loss[max(0, i - window // 2): i + window // 2 + 1]))  # noqa: E731
    half = int(np.searchsorted(step, step[-1] / 2))
    mid, end = smooth(half), float(np.mean(loss[-window:]))
    return {"steps": int(step[-1]), "s_per_step": float(secs[-1] / step[-1]), "loss_half": mid, "loss_end": end,
            "second_half_drop": (mid - end) / mid}


def lane_hours(costs: list[float], lanes: int) -> float:
    """Wall hours of jobs with ``costs`` (hours) on ``lanes`` parallel lanes: longest first, each to the least
    loaded lane."""
    load = [0.0] * lanes
    for c in sorted(costs, reverse=True):
        load[int(np.argmin(load))] += c
    return max(load)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="weights/<run>.loss.csv to read")
    parser.add_argument("--budgets", nargs="+", type=int, default=[4000, 8000, 12000])
    parser.add_argument("--lanes", type=int, default=2, help="families pretrained side by side (one thread each)")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)

    rows, summaries = [], {}
    for run in args.runs:
        s = summaries[run] = curve_summary(Path("weights") / f"{run}.loss.csv")
        rows.append({"kind": "run", "run": run, "family": run.split("_")[0], **{k: round(v, 4) if isinstance(v, float)
                                                                                else v for k, v in s.items()}})
        print(f"{run:14s} {s['steps']:6d} steps  {s['s_per_step']:.2f} s/step  loss {s['loss_half']:.4f} at half "
              f"-> {s['loss_end']:.4f} at the end ({100 * s['second_half_drop']:.1f} % lower over the second half)")
    matched = {r: s for r, s in summaries.items() if r.endswith("_full")}
    for budget in args.budgets:
        hours = {r.split("_")[0]: budget * s["s_per_step"] / 3600 for r, s in matched.items()}
        ratios = {r.split("_")[0]: budget / s["steps"] for r, s in matched.items()}
        wall = lane_hours(list(hours.values()), args.lanes)
        rows.append({"kind": "budget", "run": f"steps={budget}", "steps": budget,
                     **{f"x_{f}": round(x, 2) for f, x in ratios.items()},
                     "core_hours": round(sum(hours.values()), 2), "wall_hours": round(wall, 2), "lanes": args.lanes})
        print(f"steps={budget}: " + ", ".join(f"{f} {x:.1f}x" for f, x in ratios.items())
              + f"; {sum(hours.values()):.1f} core-h, {wall:.1f} h of wall on {args.lanes} lanes")
    out = output_path(args, NAME, COMMITTED)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    comments = [command(NAME), "kind=run: one committed loss curve (s_per_step as recorded, under its own threads "
                "and load); kind=budget: a candidate matched budget, x_<family> = budget / that family's "
                "full-checkpoint steps, cost predicted from s_per_step"]
    results.write_csv([{c: r.get(c, "") for c in columns} for r in rows], out, comments=comments)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
