"""Issue-8 headline table: per transfer protocol, does any frozen encoder beat the augmented from-scratch CNN,
and does CLIP's spatial readout beat its class token? Reads finished sweeps (no training, seconds):

    python benchmarks/transfer_protocols.py [--task push] [--out results/transfer/push_protocols.csv]

Protocols (each one sweep directory, made by the command in its summary.csv's first line):
  clean           results/sweeps/<task>_confirm         robrep sweep preset=confirm seeds_by_n='{10: [0,1,2,3,4]}' arms=[...]
  varied→heldout  results/sweeps/<task>_varied_heldout  robrep sweep preset=visual_heldout
  leave-one-out   results/sweeps/<task>_loto            robrep sweep preset=loto
Writes the CSV (one row per protocol × pair × N) and a forest plot beside it (.png/.svg); prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from robrep.results import command_line, write_csv  # noqa: E402
from robrep.sweep.protocols import PROTOCOL_COLUMNS, plot_protocols, protocol_rows  # noqa: E402

PAIRS = [("mae", "cnn"), ("dift", "cnn"), ("voltron", "cnn"), ("clip", "cnn"), ("clip_spatial", "cnn"),
         ("clip_spatial", "clip")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="push")
    parser.add_argument("--out", default=None, help="CSV path (default results/transfer/<task>_protocols.csv)")
    args = parser.parse_args()
    sweeps = ROOT / "results" / "sweeps"
    protocols = {"clean (control)": sweeps / f"{args.task}_confirm",
                 "varied -> heldout": sweeps / f"{args.task}_varied_heldout",
                 "leave-one-task-out": sweeps / f"{args.task}_loto"}
    rows = protocol_rows(protocols, PAIRS)
    for r in rows:
        r["sweep"] = str(Path(r["sweep"]).relative_to(ROOT))
    out = Path(args.out or ROOT / "results" / "transfer" / f"{args.task}_protocols.csv")
    write_csv([{c: r[c] for c in PROTOCOL_COLUMNS} for r in rows], out,
              comments=[command_line(program="python benchmarks/transfer_protocols.py")])
    png, _ = plot_protocols(rows, out.with_suffix(""),
                            title=f"{args.task}: arm − baseline on shared episodes (paired bootstrap 95 %)")
    print(f"{'protocol':<20}{'a - b':<22}{'N':>4}{'a':>18}{'b':>18}{'a - b [95 %]':>24}  verdict")
    for r in rows:
        print(f"{r['protocol']:<20}{r['arm'] + ' - ' + r['baseline']:<22}{r['n']:>4}"
              f"{r['success_rate']:>7.0%} [{r['ci_low']:.2f},{r['ci_high']:.2f}]"
              f"{r['baseline_rate']:>7.0%} [{r['baseline_ci_low']:.2f},{r['baseline_ci_high']:.2f}]"
              f"{r['diff']:>+9.2f} [{r['diff_low']:+.2f},{r['diff_high']:+.2f}]  {r['verdict']}")
    print(f"table: {out}\nplot: {png}")


if __name__ == "__main__":
    main()
