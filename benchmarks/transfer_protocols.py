"""Issue-8 headline table: per transfer protocol, does any frozen encoder beat the augmented from-scratch CNN,
and does CLIP's spatial readout beat its class token? Reads finished sweeps (no training, seconds):

    python -m benchmarks.transfer_protocols [--task push] [--commit | --out PATH]

Protocols (each one sweep directory, made by the command in its summary.csv's first line):
  clean           results/sweeps/<task>_confirm         robrep sweep preset=confirm seeds_by_n='{10: [0,1,2,3,4]}' arms=[...]
  varied→heldout  results/sweeps/<task>_varied_heldout  robrep sweep preset=visual_heldout
  leave-one-out   results/sweeps/<task>_loto            robrep sweep preset=loto
Writes the CSV (one row per protocol × pair × N; default runs/benchmarks/transfer_protocols/transfer/
<task>_protocols.csv, ``--commit``: the reference results/transfer/<task>_protocols.csv) and a forest plot
beside it (.png/.svg); prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv
from robrep.sweep.protocols import PROTOCOL_COLUMNS, plot_protocols, protocol_rows

NAME = "transfer_protocols"

PAIRS = [("mae", "cnn"), ("dift", "cnn"), ("voltron", "cnn"), ("clip", "cnn"), ("clip_spatial", "cnn"),
         ("clip_spatial", "clip")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="push")
    add_output_args(parser, NAME, "results/transfer/<task>_protocols.csv", what="CSV path, the plot beside it")
    args = parser.parse_args(argv)
    sweeps = Path("results") / "sweeps"
    protocols = {"clean (control)": sweeps / f"{args.task}_confirm",
                 "varied -> heldout": sweeps / f"{args.task}_varied_heldout",
                 "leave-one-task-out": sweeps / f"{args.task}_loto"}
    rows = protocol_rows(protocols, PAIRS)
    out = output_path(args, NAME, f"results/transfer/{args.task}_protocols.csv")
    write_csv([{c: r[c] for c in PROTOCOL_COLUMNS} for r in rows], out, comments=[command(NAME, argv)])
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
