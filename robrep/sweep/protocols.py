"""Issue-8 transfer protocols side by side: each protocol is one finished sweep directory (``summary.csv`` +
``paired.csv``), and the headline question per protocol is whether an arm beats a baseline arm on the same
evaluation episodes (paired bootstrap 95 %), next to each arm's own Wilson 95 % interval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from robrep.results import read_csv

#: Columns of :func:`protocol_rows`.
PROTOCOL_COLUMNS = ("protocol", "sweep", "arm", "baseline", "n", "seeds", "episodes", "success_rate", "ci_low",
                    "ci_high", "baseline_rate", "baseline_ci_low", "baseline_ci_high", "diff", "diff_low",
                    "diff_high", "verdict")


def verdict(diff_low: float, diff_high: float) -> str:
    """``better`` / ``worse`` when the paired 95 % interval excludes 0, else ``unresolved``."""
    if diff_low > 0:
        return "better"
    if diff_high < 0:
        return "worse"
    return "unresolved"


def protocol_rows(protocols: Mapping[str, str | os.PathLike], pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per (protocol, ``a − b`` pair, N) found in that protocol's ``paired.csv``: both arms' pooled
    success and Wilson intervals (``summary.csv``), the paired difference with its interval and a verdict.

    ``protocols`` maps a protocol label to its sweep directory; a missing directory or file raises
    ``FileNotFoundError`` naming it (a protocol that was not run must not look like a null result)."""
    rows: list[dict[str, Any]] = []
    for label, sweep_dir in protocols.items():
        sweep_dir = Path(sweep_dir)
        for name in ("summary.csv", "paired.csv"):
            if not (sweep_dir / name).exists():
                raise FileNotFoundError(f"protocol {label!r}: {sweep_dir / name} is missing (run its sweep first)")
        summary = {(r["arm"], int(r["n"])): r for r in read_csv(sweep_dir / "summary.csv")}
        paired = {(r["a"], r["b"], int(r["n"])): r for r in read_csv(sweep_dir / "paired.csv")}
        for a, b in pairs:
            for (pa, pb, n), p in sorted(paired.items(), key=lambda kv: kv[0][2]):
                if (pa, pb) != (a, b):
                    continue
                sa, sb = summary[(a, n)], summary[(b, n)]
                lo, hi = float(p["ci_low"]), float(p["ci_high"])
                rows.append({
                    "protocol": label, "sweep": str(sweep_dir), "arm": a, "baseline": b, "n": n,
                    "seeds": int(p["seeds"]), "episodes": int(p["episodes"]),
                    "success_rate": float(sa["success_rate"]), "ci_low": float(sa["ci_low"]),
                    "ci_high": float(sa["ci_high"]), "baseline_rate": float(sb["success_rate"]),
                    "baseline_ci_low": float(sb["ci_low"]), "baseline_ci_high": float(sb["ci_high"]),
                    "diff": float(p["diff"]), "diff_low": lo, "diff_high": hi, "verdict": verdict(lo, hi)})
    return rows


def plot_protocols(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> list[Path]:
    """One forest-plot panel per protocol (:func:`robrep.sweep.table.plot_paired`), sharing the x axis;
    writes ``path`` as .png and .svg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robrep.sweep.table import plot_paired, save_figure

    labels = list(dict.fromkeys(str(r["protocol"]) for r in rows))
    if not labels:
        raise ValueError("no protocol rows to plot")
    heights = [max(1, sum(1 for r in rows if r["protocol"] == lab)) for lab in labels]
    fig, axes = plt.subplots(len(labels), 1, sharex=True, squeeze=False,
                             figsize=(6.8, 1.0 + 0.3 * sum(heights) + 0.5 * len(labels)),
                             gridspec_kw={"height_ratios": heights})
    for ax, lab in zip(axes[:, 0], labels):
        paired = [{"a": r["arm"], "b": r["baseline"], "n": r["n"], "seeds": r["seeds"], "episodes": r["episodes"],
                   "diff": r["diff"], "ci_low": r["diff_low"], "ci_high": r["diff_high"]}
                  for r in rows if r["protocol"] == lab]
        plot_paired(paired, path, title=lab, ax=ax)
    for ax in axes[:-1, 0]:
        ax.set_xlabel("")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
