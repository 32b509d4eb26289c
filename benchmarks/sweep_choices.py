"""The evidence behind two choices of the default sweep, both made off the test layouts, as committed CSVs.

``python -m benchmarks.sweep_choices grid POLICY_DIR [--commit | --out PATH]``
    One row per tuning checkpoint (``<arm>_n<N>_s<seed>_<key>.pt`` trained on the ``train`` demos, scored on the
    ``valid`` demos): arm, N, seed, lr, weight decay, best valid MSE. Prints, per (arm, N), how far weight decay moves the
    valid MSE at a fixed lr against how far lr moves it at a fixed weight decay (mean absolute difference): the
    reason ``configs/sweep.yaml`` tunes lr only.
``python -m benchmarks.sweep_choices acting SWEEP_DIR... [--commit | --out PATH]``
    One row per cell record of pilot sweeps on development layouts (``eval_split=dev``) that differ only in how chunks
    are executed: arm, N, seed, chunk, execution, successes / episodes, mean length, evaluation seconds, ms per step.
    Test-split cells are refused: the acting rule may not be chosen on the layouts that report results.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "sweep_choices"
COMMITTED = {"grid": "results/tuning_grid_pilot.csv", "acting": "results/acting_pilot.csv"}


def grid_rows(policy_dir: Path) -> list[dict]:
    """Rows of every policy checkpoint in ``policy_dir``: arm, n, seed, lr, weight_decay, valid_mse."""
    from policies.checkpoint import read_policy_checkpoint

    rows = []
    for path in sorted(policy_dir.glob("*.pt")):
        data = read_policy_checkpoint(path)  # hash-checked; no pickle
        train = data["policy_config"]["train"]
        arm = path.stem.rsplit("_", 3)[0]  # <arm>_n<N>_s<seed>_<key>
        rows.append({"arm": arm, "n": int(data["n"]), "seed": int(data["seed"]), "lr": float(train["lr"]),
                     "weight_decay": float(train["weight_decay"]),
                     "valid_mse": round(float(data["train"]["valid_mse"]), 6), "checkpoint": path.name})
    return rows


def grid_effects(rows: list[dict]) -> list[tuple[str, int, float, float]]:
    """Per (arm, n) with a full grid: (arm, n, mean |Δ valid MSE| across weight decays at fixed lr, the same across
    lrs at fixed weight decay)."""
    by: dict[tuple[str, int], dict[tuple[float, float], float]] = defaultdict(dict)
    for r in rows:
        by[(r["arm"], r["n"])][(r["lr"], r["weight_decay"])] = r["valid_mse"]
    out = []
    for (arm, n), g in sorted(by.items()):
        lrs, wds = sorted({k[0] for k in g}), sorted({k[1] for k in g})
        if len(g) != len(lrs) * len(wds) or len(lrs) < 2 or len(wds) < 2:
            continue
        d_wd = [abs(g[(lr, a)] - g[(lr, b)]) for lr in lrs for a, b in itertools.combinations(wds, 2)]
        d_lr = [abs(g[(a, wd)] - g[(b, wd)]) for wd in wds for a, b in itertools.combinations(lrs, 2)]
        out.append((arm, n, float(np.mean(d_wd)), float(np.mean(d_lr))))
    return out


def acting_rows(sweep_dirs: list[Path]) -> list[dict]:
    """Rows of every cell record in ``sweep_dirs`` (development layouts only)."""
    rows = []
    for d in sweep_dirs:
        for path in sorted((d / "cells").glob("*.json")):
            rec = json.loads(path.read_text())
            if rec.get("eval_split") != "dev":
                raise SystemExit(f"{path}: eval_split {rec.get('eval_split')!r}; acting pilots run on dev layouts only")
            pol = rec["policy_config"]
            rows.append({"arm": rec["arm"], "n": rec["n"], "seed": rec["seed"], "chunk": int(pol.get("chunk", 1)),
                         "chunk_execution": pol.get("chunk_execution", "ensemble"), "episodes": rec["episodes"],
                         "successes": rec["successes"], "mean_length": rec["mean_length"],
                         "valid_mse": round(float(rec["valid_mse"]), 6), "eval_seconds": rec["eval_seconds"],
                         "ms_per_step": rec["ms_per_step"], "sweep_dir": d.name})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=sorted(COMMITTED))
    parser.add_argument("paths", nargs="+", type=Path)
    add_output_args(parser, NAME, "results/<what>_pilot.csv")
    args = parser.parse_args(argv)
    if args.what == "grid":
        rows = grid_rows(args.paths[0])
        effects = grid_effects(rows)
        for arm, n, d_wd, d_lr in effects:
            print(f"{arm:>16} N={n:<4} |Δ valid MSE|: weight decay {d_wd:.4f}, lr {d_lr:.4f}")
        if effects:
            wd, lr = (float(np.mean([e[i] for e in effects])) for i in (2, 3))
            print(f"mean over {len(effects)} (arm, N): weight decay {wd:.4f}, lr {lr:.4f} (ratio {wd / lr:.2f})")
    else:
        rows = acting_rows(args.paths)
        for r in rows:
            print(f"{r['arm']:>8} N={r['n']} chunk {r['chunk']} {r['chunk_execution']:>9}: {r['successes']}/"
                  f"{r['episodes']}, {r['ms_per_step']} ms/step, eval {r['eval_seconds']} s")
    path = output_path(args, NAME, COMMITTED[args.what])
    results.write_csv(rows, path, comments=[command(NAME, argv)])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
