"""What pretraining compute bought, per family, in one table: cost, probe and closed loop of each checkpoint stage.

``python -m benchmarks.compute_bought [--commit | --out PATH]``

One row per (family, stage) whose checkpoint is committed, stages in order of compute: ``full`` (the wall-clock
checkpoint, clean corpus), ``matched_2000`` (the compute-matched run's step-2,000 chunk) and ``matched`` (that run at
its 8,000-step budget; ``scripts/pretrain_matched.sh``). Nothing is recomputed; each column is read from the committed
CSV that owns it:

- cost: ``results/checkpoints.csv`` (steps, TFLOP, wall hours, corpus, final loss);
- probe: the push position probes' best spatial ridge R² at N = 50 (``results/probe_full/gate.csv`` and
  ``results/probe_matched/step_<steps>/gate.csv``; ``benchmarks.probe_gate``);
- closed loop on push: the seed-mean success per N and the AUC with its seed-level t 95 % interval
  (``results/sweeps/<sweep>/summary.csv`` / ``auc.csv``; sweeps ``push_fair2``, ``push_matched_2000``,
  ``push_matched``), and the paired AUC difference against the ``full`` stage with its Holm-corrected p
  (``results/compare_sweeps/push_matched*_vs_full.csv``; ``benchmarks.compare_sweeps``).

A probe row whose weights hash is not the stage's committed checkpoint's is an error, not a row. An empty cell means
its source does not exist yet (a family whose matched run has not finished, a sweep not run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep.results import read_csv, write_csv

NAME = "compute_bought"
COMMITTED = "results/compute_bought.csv"
FAMILIES = ("mae", "dift", "voltron", "clip")
#: The push sweep arm that reads each family's checkpoint (CLIP's patch tokens, as in ``push_matched``).
ARM = {"clip": "clip_spatial"}
#: stage → (checkpoint suffix, probe gate CSV, push sweep, paired comparison against ``full`` or None)
STAGES = {
    "full": ("full", "probe_full/gate.csv", "push_fair2", None),
    "matched_2000": ("matched_2000", "probe_matched/step_2000/gate.csv", "push_matched_2000",
                     "compare_sweeps/push_matched_2000_vs_full.csv"),
    "matched": ("matched", "probe_matched/step_8000/gate.csv", "push_matched",
                "compare_sweeps/push_matched_vs_full.csv"),
}
PROBES = ("gripper_pos", "block_pos", "goal_pos")
NS = (10, 50, 100, 500)


def _rows(path: Path) -> list[dict]:
    return read_csv(path) if path.exists() else []


def stage_row(res: Path, family: str, stage: str, checkpoints: dict[str, dict]) -> dict | None:
    """The table's row for ``family`` at ``stage`` from the CSVs under ``res`` (``results/``); None when the stage's
    checkpoint is not in ``checkpoints`` (weights path → row of results/checkpoints.csv)."""
    suffix, gate_csv, sweep, paired_csv = STAGES[stage]
    ckpt = checkpoints.get(f"weights/{family}_{suffix}.pt")
    if ckpt is None:
        return None
    arm = ARM.get(family, family)
    row = {"family": family, "stage": stage, "arm": arm, "steps": ckpt["steps"], "tflop": ckpt["tflop"],
           "wall_h": ckpt["wall_h"], "corpus": ckpt["corpus"], "final_loss": ckpt["final_loss"]}
    gate = next((r for r in _rows(res / gate_csv) if r["encoder"] == family and r["task"] == "push"
                 and not r.get("feature_layer")), {})
    if gate.get("weights_hash") and ckpt.get("hash") and gate["weights_hash"] != ckpt["hash"]:
        raise ValueError(f"{gate_csv} probed {family} weights {gate['weights_hash']}, not the committed "
                         f"weights/{family}_{suffix}.pt ({ckpt['hash']})")
    for var in PROBES:
        row[f"push_{var}_r2"] = gate.get(var, "")
    row["push_gripper_pos_r2_baseline"] = gate.get("gripper_pos_baseline", "")
    summary = {int(r["n"]): r for r in _rows(res / "sweeps" / sweep / "summary.csv") if r["arm"] == arm}
    for n in NS:
        row[f"success_n{n}"] = summary[n]["seed_mean"] if n in summary else ""
    auc = next((r for r in _rows(res / "sweeps" / sweep / "auc.csv") if r["arm"] == arm), {})
    row.update(auc=auc.get("auc", ""), auc_ci_low=auc.get("auc_ci_low", ""), auc_ci_high=auc.get("auc_ci_high", ""),
               auc_ns=auc.get("ns", ""))
    paired = next((r for r in _rows(res / paired_csv) if r["arm"] == arm and r["n"].startswith("auc")), {}) \
        if paired_csv else {}
    row.update(auc_vs_full=paired.get("diff", ""), auc_vs_full_ci_low=paired.get("ci_low", ""),
               auc_vs_full_ci_high=paired.get("ci_high", ""), auc_vs_full_p_holm=paired.get("p_holm", ""),
               auc_vs_full_resolved=paired.get("resolved", ""))
    return row


def table(res: Path) -> list[dict]:
    """Every (family, stage) row whose checkpoint is committed, families in :data:`FAMILIES` order."""
    checkpoints = {r["weights"]: r for r in _rows(res / "checkpoints.csv")}
    rows = [stage_row(res, f, s, checkpoints) for f in FAMILIES for s in STAGES]
    return [r for r in rows if r is not None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    rows = table(Path("results"))
    for r in rows:
        print(f"{r['family']:<8} {r['stage']:<13} {r['steps']:>5} steps {r['tflop'] or '–':>7} TFLOP  gripper R² "
              f"{r['push_gripper_pos_r2'] or '–':<6} AUC {r['auc'] or '–':<7} vs full {r['auc_vs_full'] or '–'} "
              f"(Holm p {r['auc_vs_full_p_holm'] or '–'})")
    out = output_path(args, NAME, COMMITTED)
    write_csv(rows, out, comments=[command(NAME, argv)])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
