"""The representation gate for every in-domain encoder checkpoint of a budget, on every probe task.

For each encoder ``weights/<encoder>_<budget>.pt`` (or ``--weights-dir``) and each task demo file, runs
``robrep probe`` (ridge and MLP, readouts cls/mean/flat/spatial_softmax, N = 10/50/100, baselines: raw pixels and
the same architecture at random init) into ``<out_dir>/<task>_<encoder>.csv`` and then reads the gate (N = 50, a
spatial readout with ridge R² >= 0.9 on every position variable, above both baselines) from that CSV. Writes one
row per (encoder, task) to ``<out_dir>/gate.csv``: verdict, the readouts that pass, and for each position variable
the encoder's best spatial ridge R² next to the best baseline's. CLIP is reported, not gated.

``<out_dir>`` is runs/benchmarks/probe_gate/probe_<budget>/ by default; ``--commit`` writes the committed
reference results/probe_<budget>/, ``--out-dir DIR`` any folder.

Resumable: probe CSVs that exist are reused. One torch thread per probe; ``--jobs 2`` runs two at a time.

    python -m benchmarks.probe_gate --budget full --jobs 2 [--commit | --out-dir DIR]

``--feature-layers 2 3 4 5 6`` also chooses the ViT families' read-out block (``encoder.arch.feature_layer``,
as DIFT's up block and t): each ViT encoder is probed once per layer into ``<task>_<encoder>_L<k>.csv`` (the
random-init baseline read at the same layer) and ``gate.csv`` gets one row per layer; DIFT is probed as is.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep import results
from robrep.probe.state_probe import SPATIAL_READOUTS, gate, is_baseline, read_probe_csv

NAME = "probe_gate"

TASKS = {"push": "data/push_demos.hdf5", "pick_place": "data/pick_place_demos.hdf5"}
#: Demos per probe file (made by ``robrep collect task=<task> num_demos=150`` when missing): 135 train, 15 valid.
NUM_DEMOS = 150
GATED = ("mae", "dift", "voltron")
REPORTED = ("clip",)


VIT_FAMILIES = ("mae", "voltron", "clip")


def probe(encoder: str, weights: Path, task: str, dataset: str, out: Path, layer: int | None = None) -> Path:
    """``robrep probe`` one checkpoint on one task, ViTs read after block ``layer`` (``None``: the checkpoint's
    default); skipped when ``out`` exists; returns ``out``."""
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    args = [sys.executable, "-m", "robrep.cli", "probe", f"encoder={encoder}", f"weights={weights}",
            f"dataset={dataset}", "threads=1", f"out={out}", "progress=false", f"gate={str(encoder in GATED).lower()}"]
    if layer is not None:
        args.append(f"+encoder.arch.feature_layer={layer}")
    with open(log, "w") as f:
        proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"probe failed for {encoder} on {task}; see {log}")
    return out


def best_spatial(rows: list[dict], keep, var: str, n: int) -> float:
    """Best ridge R² at ``n`` demos over the spatial readouts of the rows ``keep`` selects (NaN if none)."""
    vals = [r["r2"] for r in rows if keep(r) and r["variable"] == var and r["probe"] == "ridge"
            and r["n_demos"] == n and r["readout"] in SPATIAL_READOUTS and not math.isnan(r["r2"])]
    return max(vals, default=float("nan"))


def gate_row(encoder: str, task: str, budget: str, rows: list[dict], n: int = 50, layer: int | None = None) -> dict:
    """One summary row: verdict, passing readouts, per-variable encoder vs best-baseline R²."""
    mine = [r for r in rows if not is_baseline(r["encoder"])]
    passed, details = gate(rows, n=n)
    out = {"encoder": encoder, "task": task, "budget": budget, "feature_layer": "" if layer is None else layer,
           "weights_hash": mine[0]["weights_hash"] if mine else "",
           "gate": ("pass" if passed else "fail") if encoder in GATED else "reported",
           "passing_readouts": "/".join(details["passed_readouts"])}
    for var in sorted({r["variable"] for r in rows if r["variable"].endswith(("_pos", "_xy", "_z"))}):
        out[f"{var}"] = round(best_spatial(rows, lambda r: not is_baseline(r["encoder"]), var, n), 3)
        out[f"{var}_baseline"] = round(best_spatial(rows, lambda r: is_baseline(r["encoder"]), var, n), 3)
    cls_rows = [r for r in mine if r["readout"] == "cls" and r["probe"] == "ridge" and r["n_demos"] == n
                and r["variable"].endswith("_pos")]
    out["global_token_worst_pos"] = round(min((r["r2"] for r in cls_rows), default=float("nan")), 3)  # `cls` readout
    out["reason"] = details["reason"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="full", help="<weights-dir>/<encoder>_<budget>.pt")
    parser.add_argument("--weights-dir", default="weights", help="folder of the checkpoints, e.g. runs/weights/matched "
                        "with --budget 2000 for the matched run's chunk at step 2,000 (scripts/pretrain_matched.sh)")
    parser.add_argument("--encoders", nargs="+", default=[*GATED, *REPORTED])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--feature-layers", type=int, nargs="*", default=[],
                        help="ViT read-out blocks to probe (1-based); default: each checkpoint's own")
    add_output_args(parser, NAME, "results/probe_<budget>", out_flag="--out-dir",
                    what="folder of the probe CSVs and gate.csv")
    args = parser.parse_args(argv)
    out_dir = output_path(args, NAME, f"results/probe_{args.budget}", out_attr="out_dir")
    jobs = []
    for enc in args.encoders:
        weights = Path(args.weights_dir) / f"{enc}_{args.budget}.pt"
        if not weights.exists():
            raise FileNotFoundError(f"{weights} is missing: make it with `bash scripts/pretrain_weights.sh "
                                    f"{args.budget} <minutes> {enc}`")
        layers = args.feature_layers if enc in VIT_FAMILIES and args.feature_layers else [None]
        jobs += [(enc, weights, task, TASKS[task], out_dir / f"{task}_{enc}{'' if k is None else f'_L{k}'}.csv", k)
                 for task in args.tasks for k in layers]
    for task in args.tasks:
        if not Path(TASKS[task]).exists():
            subprocess.run([sys.executable, "-m", "robrep.cli", "collect", f"task={task}", f"num_demos={NUM_DEMOS}",
                            f"out={TASKS[task]}", "progress=false"], check=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        done = list(pool.map(lambda j: (j, probe(*j)), jobs))
    summary = [gate_row(enc, task, args.budget, read_probe_csv(csv), layer=k) for (enc, _, task, _, _, k), csv in done]
    columns = list(dict.fromkeys(k for row in summary for k in row))
    path = results.write_csv([{c: row.get(c, "") for c in columns} for row in summary], out_dir / "gate.csv",
                             [command(NAME, argv)])
    for row in summary:
        print(f"{row['encoder']:<8} {row['task']:<11} L{row['feature_layer'] or '-':<2} {row['gate']:<8} {row['reason']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
