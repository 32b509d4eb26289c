"""Does imagination add to a BC policy? Rung (c) with the policy as CEM's prior, paired with the policy alone.

    python -m benchmarks.prior_planner --sweep results/sweeps/push_fair2 [--arm mae] [--n 100] [--seeds 0 1 2 3 4]
        [--episodes 50] [--split dev|test] [--set planner.prior_std=0.1 ...] [--commit | --out PATH]

For each training seed of ``--arm`` at ``--n`` demos in a committed sweep, the cell's BC policy is (1) evaluated alone
and (2) used as the prior of rung (c)'s latent planner (:mod:`planners.prior`: CEM starts from the policy's action
chunk, its macro-actions residuals on it; world model, cost and search as the committed push ladder row, see
:data:`RUNG_C`), both on the same ``--episodes`` layouts of ``--split``. Per seed the two success rates; over seeds
the paired difference planner − policy with a seed-level t interval and p-value (:func:`robrep.eval.stats.
paired_seed_diff`). Choose the prior's settings with ``--split dev``; only the final run reads ``--split test``.
Each planner run also adds its row to ``ladder.csv`` (column ``prior``) in the output folder. Writes
runs/benchmarks/prior_planner/ (``--commit``: results/plan/<task>_prior_dev.csv for ``--split dev``, a block of rows
per setting, or results/plan/<task>_prior_vs_bc.csv for ``--split test``; and the ladder rows in
results/plan/ladder.csv); the plan runs' own files go to runs/benchmarks/prior_planner/scratch/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep.results import read_csv, write_csv

NAME = "prior_planner"

#: Rung (c)'s settings of the committed push ladder rows (results/plan/ladder.csv): world model, cost and search.
RUNG_C = ["use_proprio=true", "train.part_loss=true", "planner.horizon=5", "planner.action_repeat=5",
          "dynamics.frameskip=5", "planner.iterations=3", "planner.samples=64", "planner.elites=16",
          "planner.goal_settle=5", "planner.proprio_weight=1"]
#: The prior's settings chosen on development layouts (results/plan/push_prior_dev.csv).
PRIOR = ["planner.prior_std=0.1", "planner.prior_weight=10"]


def settings(extra: list[str]) -> list[str]:
    """:data:`PRIOR` with the keys ``extra`` sets replaced, then ``extra``'s other overrides."""
    keys = {e.split("=", 1)[0] for e in extra}
    return [p for p in PRIOR if p.split("=", 1)[0] not in keys] + list(extra)


def cell_policy(sweep: Path, arm: str, n: int, seed: int) -> tuple[str, dict]:
    """``(policy path, cell record)`` of one sweep cell."""
    cell = json.loads((sweep / "cells" / f"{arm}_n{n}_s{seed}.json").read_text())
    path = Path(cell["policy"])
    if not path.exists():
        raise FileNotFoundError(f"{path}: the BC policy of cell {arm}_n{n}_s{seed} is not on this machine "
                                f"(re-run its sweep to rebuild it)")
    return str(path), cell


def plan_outcomes(task: str, encoder: str, weights: str | None, episodes: int, split: str, extra: list[str],
                  prior: str | None, out_dir: Path, policy=None) -> tuple[dict[int, int], dict]:
    """Rung (c) on the layouts, with the BC policy at ``prior`` (loaded: ``policy``) as CEM's prior (None: without
    one): ``({layout seed: 0/1}, its ladder row)``; the planner's latent comes from ``encoder`` with the arm's
    ``weights`` (None: random init, as the arm's). The plan run writes its own files into the scratch folder
    ``out_dir``."""
    from planners.experiment import run_plan
    from robrep.config import compose

    cfg = compose("plan", [f"task={task}", f"encoder={encoder}", f"weights={weights or 'null'}", *RUNG_C,
                           *settings(extra), "ladder=true", "rungs=[c]", f"eval_split={split}", f"episodes={episodes}",
                           f"planner.prior={prior if prior else 'null'}", f"out_dir={out_dir.as_posix()}",
                           "progress=false"])
    row = run_plan(cfg, prior_policy=policy)
    label = f"{task}_{row['encoder']}_{cfg.dynamics.name}"
    records = json.loads((out_dir / f"{label}.json").read_text())["result"]["records"]
    name = Path(prior).name if prior else ""
    ladder = [r for r in read_csv(out_dir / "ladder.csv")
              if (str(r.get("prior", "")).startswith(name) if prior else not r.get("prior"))][-1]
    return {int(r["seed"]): int(bool(r["success"])) for r in records}, ladder


def run_seed(policy_path: str, task: str, encoder: str, weights: str | None, episodes: int, split: str,
             extra: list[str], out_dir: Path) -> tuple[list[int], list[int], dict]:
    """One training seed: ``(BC outcomes, planner-with-prior outcomes, the planner's ladder row)`` on the same layouts
    (0/1 per episode, in the order of the evaluation seeds)."""
    from policies.policy import load_policy
    from robrep.eval.rollouts import evaluate

    policy = load_policy(policy_path)
    bc = evaluate(policy, episodes, seed_start=0, num_envs=10, progress=False, demo_seeds=[], split=split)
    plan, ladder = plan_outcomes(task, encoder, weights, episodes, split, extra, policy_path, out_dir, policy)
    seeds = [int(r.seed) for r in bc.records]
    if sorted(plan) != sorted(seeds):
        raise RuntimeError("the planner and the policy were evaluated on different layouts")
    return [int(r.success) for r in bc.records], [plan[s] for s in seeds], ladder


def main(argv: list[str] | None = None) -> None:
    from planners.experiment import write_ladder
    from robrep.eval.stats import paired_seed_diff, seed_interval

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", required=True, help="a committed sweep folder (cells/ with their policies)")
    parser.add_argument("--arm", default="mae", help="the sweep arm whose BC policies are the priors")
    parser.add_argument("--n", type=int, default=100, help="demos the BC policies were trained on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds")
    parser.add_argument("--episodes", type=int, default=50, help="layouts: the first E seeds of --split")
    parser.add_argument("--split", default="dev", choices=["dev", "test"], help="dev to choose settings, test to report")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra `robrep plan` overrides (e.g. planner.prior_std=0.2)")
    parser.add_argument("--control", action="store_true",
                        help="also rung (c) without the prior, once (the same world model, cost and search)")
    add_output_args(parser, NAME, "results/plan/<task>_prior_vs_bc.csv")
    args = parser.parse_args(argv)
    sweep = Path(args.sweep)
    rows, bc_all, plan_all, ladder = [], [], [], []
    task = json.loads(next((sweep / "cells").glob(f"{args.arm}_n{args.n}_s*.json")).read_text())["task"]
    out = output_path(args, NAME, f"results/plan/{task}_prior_{'vs_bc' if args.split == 'test' else 'dev'}.csv")
    scratch = Path("runs/benchmarks") / NAME / "scratch"
    for seed in args.seeds:
        policy, cell = cell_policy(sweep, args.arm, args.n, seed)
        bc, plan, row = run_seed(policy, task, str(cell["encoder"]), cell.get("weights"), args.episodes, args.split,
                                 list(args.set), scratch)
        ladder.append(row)
        bc_all.append(bc)
        plan_all.append(plan)
        rows.append({"task": task, "arm": args.arm, "n": args.n, "seed": seed, "split": args.split,
                     "episodes": args.episodes, "policy": Path(policy).name, "prior": row.get("prior", ""),
                     "bc_successes": sum(bc), "planner_successes": sum(plan),
                     "bc_rate": round(sum(bc) / len(bc), 4), "planner_rate": round(sum(plan) / len(plan), 4),
                     "no_prior_rate": "",
                     "diff": round((sum(plan) - sum(bc)) / len(bc), 4), "ci_low": "", "ci_high": "", "p_value": "",
                     "ms_per_action": row["ms_per_action"], "ms_per_plan": row["ms_per_plan"],
                     "settings": " ".join(settings(args.set)), "command": command(NAME, argv)})
        print(f"seed {seed}: BC {sum(bc)}/{len(bc)}, planner with BC prior {sum(plan)}/{len(plan)}", flush=True)
    control = ""
    if args.control:
        outcomes, row = plan_outcomes(task, str(cell["encoder"]), cell.get("weights"), args.episodes, args.split,
                                      list(args.set), None, scratch)
        control = round(sum(outcomes.values()) / len(outcomes), 4)
        ladder.append(row)
        print(f"rung (c) without a prior: {sum(outcomes.values())}/{len(outcomes)}", flush=True)
    test = paired_seed_diff(plan_all, bc_all)
    bc_mean = seed_interval([sum(b) / len(b) for b in bc_all])
    plan_mean = seed_interval([sum(p) / len(p) for p in plan_all])
    rows.append({**{k: "" for k in rows[0]}, "task": task, "arm": args.arm, "n": args.n, "seed": "mean",
                 "split": args.split, "episodes": args.episodes, "bc_rate": round(bc_mean["mean"], 4),
                 "planner_rate": round(plan_mean["mean"], 4), "no_prior_rate": control, "diff": round(test["diff"], 4),
                 "ci_low": round(test["ci_low"], 4), "ci_high": round(test["ci_high"], 4),
                 "p_value": round(test["p_value"], 4), "settings": " ".join(settings(args.set)),
                 "command": command(NAME, argv)})
    block = (args.split, rows[0]["settings"], args.arm, str(args.n))
    kept = [r for r in (read_csv(out) if out.exists() else [])  # earlier settings stay (a dev grid, run by run)
            if (r["split"], r["settings"], r["arm"], str(r["n"])) != block]
    columns = list(dict.fromkeys(k for r in rows + kept for k in r))  # blocks from before a column existed: blank
    write_csv([{k: r.get(k, "") for k in columns} for r in kept + rows], out,
              comments=["python -m benchmarks.prior_planner ... (one block of rows per run; the command of each in "
                        "its rows' `command` column)"])
    write_ladder(out.parent / "ladder.csv", ladder)
    print(f"{args.arm} N={args.n}, {len(args.seeds)} seeds × {args.episodes} {args.split} layouts: BC "
          f"{bc_mean['mean']:.2f}, planner with BC prior {plan_mean['mean']:.2f}; planner − BC {test['diff']:+.3f} "
          f"[{test['ci_low']:+.3f}, {test['ci_high']:+.3f}] (seed-level t 95 %), p {test['p_value']:.3g}\nwrote {out}")


if __name__ == "__main__":
    main()
