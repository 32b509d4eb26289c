"""The same arms in two sweep directories, paired cell by cell: what one change to every arm bought in closed loop.

    python -m benchmarks.compare_sweeps A_DIR B_DIR [--arms mae dift ...] [--label matched_vs_full]
        [--commit | --out PATH]

Typical use: the compute-matched checkpoints against the wall-clock ones (issue 23 point 3),
``robrep sweep task=push weights_budget=matched name=push_matched ...`` beside ``results/sweeps/push_fair2``. For every
arm both directories hold and every N, the cells of the training seeds both hold are paired seed by seed — the same
demonstration subset and the same evaluation layouts (the episode seeds are checked equal) — and the difference of
success rates ``a − b`` gets the seed-level mean, t 95 % interval and p-value (:func:`robrep.eval.stats.
paired_seed_diff`); per arm, the difference of the primary metric (area under success vs log N over the Ns both hold,
:func:`robrep.eval.stats.auc_log_n`) gets the same seed-level test. Holm's correction runs across every row of the
output; ``resolved`` means a corrected p < 0.05. Reads ``cells/*.json`` only.

``discordant`` counts the (seed, episode) pairs that one side solved and the other did not. ``same_demo_bytes``
says whether the paired cells trained on byte-identical demo files (their ``dataset_hash``; ``""`` when a record
lacks it). A demo file re-collected on another machine can differ in bytes (the HDF5 writer, the renderer);
reproduce one reference cell on the new file before reading a difference as the change's effect.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._output import add_output_args, command, output_path
from robrep.eval.stats import holm, paired_seed_diff, seed_diff_test
from robrep.results import write_csv
from robrep.sweep import table

NAME = "compare_sweeps"
COMMITTED = "results/compare_sweeps/{label}.csv"


def load_cells(sweep_dir: Path) -> dict[tuple[str, int, int], dict]:
    """``(arm, n, seed) → cell record`` of a sweep directory's finished cells (:func:`robrep.sweep.table.load_cells`:
    records still being written are not read)."""
    return {(r["arm"], int(r["n"]), int(r["seed"])): r for r in table.load_cells(sweep_dir)}


def compare(a: dict, b: dict, arms: list[str] | None = None) -> list[dict]:
    """Rows ``a − b`` per (arm, N) and per arm's AUC over the shared Ns, Holm across all rows (see the module doc)."""
    shared = defaultdict(list)  # (arm, n) -> seeds in both
    for key in sorted(set(a) & set(b)):
        arm, n, seed = key
        if arms is None or arm in arms:
            shared[arm, n].append(seed)
    rows, ns_of = [], defaultdict(list)
    for (arm, n), seeds in sorted(shared.items()):
        ea = np.array([a[arm, n, s]["episode_success"] for s in seeds], dtype=float)
        eb = np.array([b[arm, n, s]["episode_success"] for s in seeds], dtype=float)
        for s in seeds:
            if a[arm, n, s]["episode_seeds"] != b[arm, n, s]["episode_seeds"]:
                raise ValueError(f"{arm} N={n} seed {s}: the two sweeps evaluated different layouts")
        t = paired_seed_diff(ea, eb)
        ns_of[arm].append(n)
        rows.append({"arm": arm, "n": n, "seeds": len(seeds), "episodes": ea.shape[1], "a": round(ea.mean(), 4),
                     "b": round(eb.mean(), 4), "diff": round(t["diff"], 4), "ci_low": round(t["ci_low"], 4),
                     "ci_high": round(t["ci_high"], 4), "p_value": t["p_value"],
                     "discordant": int((ea != eb).sum()),  # (seed, episode) pairs one side solved and the other not
                     "same_demo_bytes": _same_demo_bytes([(a[arm, n, s], b[arm, n, s]) for s in seeds])})
    for arm, ns in sorted(ns_of.items()):
        if len(ns) < 2:
            continue
        # each side's per-seed AUC over the Ns both hold (robrep.sweep.table.seed_aucs), on the seeds both complete
        auc_a, auc_b = (table.seed_aucs(list(side.values()), arm, ns) for side in (a, b))
        seeds = sorted(set(auc_a) & set(auc_b))
        if not seeds:
            continue
        auc = [np.array([side[s] for s in seeds]) for side in (auc_a, auc_b)]
        t = seed_diff_test(auc[0] - auc[1])
        rows.append({"arm": arm, "n": "auc " + " ".join(map(str, ns)), "seeds": len(seeds), "episodes": "",
                     "a": round(float(auc[0].mean()), 4), "b": round(float(auc[1].mean()), 4),
                     "diff": round(t["diff"], 4), "ci_low": round(t["ci_low"], 4), "ci_high": round(t["ci_high"], 4),
                     "p_value": t["p_value"], "discordant": "",
                     "same_demo_bytes": _same_demo_bytes([(a[arm, n, s], b[arm, n, s]) for n in ns for s in seeds])})
    valid = [i for i, r in enumerate(rows) if np.isfinite(r["p_value"])]
    adjusted = holm([rows[i]["p_value"] for i in valid]) if valid else []
    for i, r in enumerate(rows):
        r["p_value"] = round(float(r["p_value"]), 5) if np.isfinite(r["p_value"]) else ""
        r["p_holm"], r["resolved"] = "", False
    for i, p in zip(valid, adjusted):
        rows[i]["p_holm"] = round(float(p), 5)
        rows[i]["resolved"] = bool(p < 0.05)
    return rows


def _same_demo_bytes(pairs: list[tuple[dict, dict]]) -> bool | str:
    """Whether every pair of cell records names the same demo file hash (``""``: some record has none)."""
    hashes = [(ra.get("dataset_hash"), rb.get("dataset_hash")) for ra, rb in pairs]
    if any(ha is None or hb is None for ha, hb in hashes):
        return ""
    return all(ha == hb for ha, hb in hashes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="sweep directory a (the change)")
    parser.add_argument("b", type=Path, help="sweep directory b (the reference)")
    parser.add_argument("--arms", nargs="+", default=None, help="arms to compare (default: every shared arm)")
    parser.add_argument("--label", default=None, help="output name (default <a>_vs_<b>)")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    label = args.label or f"{args.a.name}_vs_{args.b.name}"
    rows = compare(load_cells(args.a), load_cells(args.b), args.arms)
    if not rows:
        raise SystemExit(f"{args.a} and {args.b} share no (arm, N, seed) cell")
    for r in rows:
        print(f"{r['arm']:<14} N={r['n']:<18} {r['a']:.3f} vs {r['b']:.3f}: {r['diff']:+.3f} [{r['ci_low']:+.3f}, "
              f"{r['ci_high']:+.3f}] ({r['seeds']} seeds), Holm p {r['p_holm']}{' resolved' if r['resolved'] else ''}"
              f"{'; demo files differ in bytes' if r['same_demo_bytes'] is False else ''}")
    out = output_path(args, NAME, COMMITTED.format(label=label))
    write_csv(rows, out, comments=[command(NAME, argv), f"a = {args.a}, b = {args.b}: a − b per (arm, N) paired by "
                                   "training seed on the same layouts, and per arm the AUC over the shared Ns; "
                                   "seed-level t intervals, Holm across rows"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
