"""How long must every arm train? The training budget of the default sweep, chosen on the ``valid`` demos only.

``python -m benchmarks.budget_pilot [--arms a,b] [--demos 10,50,100,500] [--epochs 120] [--jobs 2] [--commit | --out PATH]``

Each arm of the default push sweep (its config as ``robrep sweep`` builds it: the same ``arm_overrides``, data,
weights and feature caches) trains once per N on the tuning seed's subset, at the middle of the tuning grid's
learning rates, for ``--epochs`` passes over its training frames with the valid-demo MSE recorded every
``--every`` epochs and no early stopping, so the whole curve is seen. No evaluation layout is read.

Then, for each candidate budget E (``--candidates``, epochs), the sweep's rule is replayed on the recorded curve:
validation ``evals`` times over the budget, stop after ``patience`` evaluations without a lower valid MSE, ``cap_bound``
when the budget ends it while the best is within the last ``patience`` evaluations — the definition
``policies.train.fit`` uses — with the budget's floor ``min_steps``. Rows: one per (arm, N, E) with ``cap_bound``,
the rule's best valid MSE, the curve's best over the whole run, and the gap between them. The budget to commit is the
smallest E at which no (arm, N) is cap-bound and every gap is small; the printout says which E that is.

Trainings are content-addressed policy files under ``runs/sweeps/budget_pilot/policies`` (a re-run resumes); the
curves are written beside the rows (``*_curves.csv``).
"""

from __future__ import annotations

import argparse
import math
import statistics

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "budget_pilot"
COMMITTED = "results/budget_pilot.csv"
DEFAULT_CANDIDATES = (20, 40, 60, 80, 100, 120)


def pilot_cells(arms: list[str] | None, demos: list[int], epochs: float, every: float, jobs: int) -> tuple:
    """The sweep's cells (seed = the tuning seed) with the training rule replaced by a long, fully recorded run."""
    from omegaconf import OmegaConf

    from robrep.config import compose
    from robrep.precision import resolve_precision
    from robrep.sweep.run import sweep_arms, sweep_cells

    base = compose("sweep", ["task=push"])
    evals = max(1, int(round(epochs / every)))
    overrides = [*list(base.arm_overrides), f"policy.train.epochs={epochs}", f"policy.train.evals={evals}",
                 f"policy.train.patience={evals + 1}", "policy.train.steps=1000000", "policy.train.min_delta=0.0",
                 f"policy.train.lr={sorted(base.tune.grid.lr)[len(base.tune.grid.lr) // 2]}",
                 f"policy.train.weight_decay={base.tune.grid.weight_decay[0]}"]
    extra = ["arm_overrides=[" + ",".join(f"'{o}'" for o in overrides) + "]", f"demos=[{','.join(map(str, demos))}]",
             f"seeds=[{int(base.tune.seed)}]", "name=budget_pilot", f"jobs={jobs}", "progress=false", "policy_dir=runs/sweeps/budget_pilot/policies"]
    if arms:
        extra.append(f"arms=[{','.join(arms)}]")
    cfg = compose("sweep", ["task=push", *extra])
    OmegaConf.resolve(cfg)
    precision = resolve_precision(cfg.encoder_precision, cfg.device)
    return sweep_cells(cfg, sweep_arms(cfg), precision), cfg


def replay(history: list[dict], frames: int, batch_size: int, epochs: float, evals: int, patience: int,
           min_steps: int, min_delta: float = 0.0) -> dict:
    """The sweep's rule with a budget of ``epochs`` replayed on a recorded ``history`` (``step``, ``valid_mse``): at
    each of its evaluation steps the recorded point at or just after that step stands in for it. Progress and
    ``cap_bound`` are :func:`policies.train.made_progress` and ``fit``'s definitions."""
    from policies.train import made_progress

    budget = max(int(min_steps), math.ceil(epochs * frames / batch_size))
    every = math.ceil(budget / evals)
    steps = [h["step"] for h in history]
    best, best_step, reference, progress_step, stale, stopped, last = math.inf, 0, math.inf, 0, 0, "budget", 0
    for s in range(every, budget + every, every):
        s = min(s, budget)
        j = next((i for i, t in enumerate(steps) if t >= s), None)
        if j is None:
            raise ValueError(f"the recorded curve ends at step {steps[-1]}, before the budget's step {s}")
        v, last = float(history[j]["valid_mse"]), s
        if v < best:
            best, best_step = v, s
        if made_progress(v, reference, min_delta):
            reference, progress_step, stale = v, s, 0
        else:
            stale += 1
            if stale >= patience:
                stopped = "early"
                break
        if s >= budget:
            break
    cap_bound = stopped == "budget" and progress_step > last - patience * every
    return {"budget_steps": budget, "stopped": stopped, "best_step": best_step, "steps_run": last,
            "rule_valid_mse": best, "cap_bound": cap_bound}


def evaluation_noise(history: list[dict], after_step: int) -> float:
    """The largest relative change of the valid MSE between consecutive recorded points after ``after_step``: how
    far the running minimum can fall by evaluation noise alone once a run has plateaued (``min_delta``'s scale)."""
    values = [float(h["valid_mse"]) for h in history if h["step"] > after_step]
    return max((abs(b / a - 1.0) for a, b in zip(values, values[1:])), default=float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=None, help="comma-separated arms (default: the default sweep's arms)")
    parser.add_argument("--demos", default="10,50,100,500")
    parser.add_argument("--epochs", type=float, default=120.0, help="length of each recorded run, in epochs")
    parser.add_argument("--every", type=float, default=2.5, help="epochs between recorded valid-MSE points")
    parser.add_argument("--candidates", default=",".join(map(str, DEFAULT_CANDIDATES)))
    parser.add_argument("--min-deltas", default=None,
                        help="comma-separated relative min_delta values replayed (default: the committed rule's)")
    parser.add_argument("--jobs", type=int, default=2)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)

    from omegaconf import OmegaConf

    from policies.checkpoint import read_policy_checkpoint
    from robrep.launch import make_launcher
    from robrep.sweep.cell import cell_features, ensure_policy
    from robrep.sweep.run import ensure_dataset

    arms = args.arms.split(",") if args.arms else None
    cells, cfg = pilot_cells(arms, [int(n) for n in args.demos.split(",")], args.epochs, args.every, args.jobs)
    ensure_dataset(cfg)
    for arm in dict.fromkeys(c.arm for c in cells):  # each frozen encoder's cache once (shared with the sweep)
        cell_features(next(c for c in cells if c.arm == arm), threads=args.jobs)
    launcher = make_launcher(OmegaConf.to_container(cfg.launcher, resolve=True))
    outcomes = launcher.map(ensure_policy, cells)
    failed = [(o.item.name, o.error) for o in outcomes if o.error is not None]
    if failed:
        raise SystemExit("\n".join(f"--- {n}\n{e}" for n, e in failed))

    from robrep.config import compose

    rule_train = dict(compose("cell", ["arm=mae"]).policy.train)  # the committed rule's evals / patience / min_steps
    deltas = args.min_deltas.split(",") if args.min_deltas else [rule_train.get("min_delta", 0.0)]
    rows, curves = [], []
    smallest = min(c.n for c in cells)  # the smallest N plateaus inside the recorded run (its budget is the floor)
    noise = []
    for cell, out in zip(cells, outcomes):
        train = read_policy_checkpoint(out.value)["train"]
        history = train["history"]
        frames = int(train["frames"])
        if cell.n == smallest:
            half = int(args.epochs / 2 * frames / cell.policy["train"]["batch_size"])
            noise.append({"arm": cell.arm, "n": cell.n, "after_epoch": args.epochs / 2,
                          "max_rel_change": round(evaluation_noise(history, half), 4)})
        curve_best = min(float(h["valid_mse"]) for h in history)
        for h in history:
            curves.append({"arm": cell.arm, "n": cell.n, "step": h["step"],
                           "epoch": round(h["step"] * cell.policy["train"]["batch_size"] / frames, 3),
                           "train_loss": round(float(h["train_loss"]), 6), "valid_mse": round(float(h["valid_mse"]), 6)})
        for e, delta in ((float(x), float(d)) for x in args.candidates.split(",") for d in deltas):
            r = replay(history, frames, int(cell.policy["train"]["batch_size"]), e, int(rule_train["evals"]),
                       int(rule_train["patience"]), int(rule_train["min_steps"]), delta)
            rows.append({"arm": cell.arm, "n": cell.n, "epochs": e, "min_delta": delta, **r,
                         "rule_valid_mse": round(r["rule_valid_mse"], 6),
                         "run_best_valid_mse": round(curve_best, 6),
                         "gap": round(r["rule_valid_mse"] / curve_best - 1.0, 4), "frames": frames,
                         "lr": cell.policy["train"]["lr"], "seed": cell.seed})
    levels = sorted(r["max_rel_change"] for r in noise)
    median_noise = statistics.median(levels)
    print(f"evaluation noise at N={smallest} (largest consecutive relative change of the valid MSE after epoch "
          f"{args.epochs / 2:g}): median over arms {median_noise:.3f}, range {levels[0]:.3f}-{levels[-1]:.3f}")
    rules = list(dict.fromkeys((r["min_delta"], r["epochs"]) for r in rows))
    for delta, e in rules:
        sel = [r for r in rows if (r["min_delta"], r["epochs"]) == (delta, e)]
        bound = [f"{r['arm']}@{r['n']}" for r in sel if r["cap_bound"]]
        print(f"min_delta={delta:g} E={e:g} epochs: cap-bound {len(bound)}/{len(sel)} (arm@N: {', '.join(bound) or 'none'}); "
              f"steps run {sum(r['steps_run'] for r in sel)}; largest gap to the run's best valid MSE "
              f"{max(r['gap'] for r in sel):.3f}, mean {sum(r['gap'] for r in sel) / len(sel):.3f}")
    for delta in dict.fromkeys(d for d, _ in rules):
        ok = [e for d, e in rules if d == delta and not any(r["cap_bound"] for r in rows
                                                            if (r["min_delta"], r["epochs"]) == (d, e))]
        print(f"min_delta={delta:g}: " + (f"smallest budget with no binding cap: {ok[0]:g} epochs" if ok
                                          else "every candidate budget binds somewhere"))
    out = output_path(args, NAME, COMMITTED)
    notes = [command(NAME, argv), "valid demos only (seed = the tuning seed); see benchmarks/budget_pilot.py"]
    results.write_csv(rows, out, comments=notes)
    results.write_csv(curves, out.with_name(out.stem + "_curves.csv"), comments=notes)
    results.write_csv(noise, out.with_name(out.stem + "_noise.csv"), comments=notes)
    print(f"wrote {out} and {out.with_name(out.stem + '_curves.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
