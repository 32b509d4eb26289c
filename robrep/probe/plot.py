"""Bar plot and text table of state-probe results (tidy rows as written by ``robrep probe``); readouts
are ordered and labelled by their names in the shared vocabulary (:data:`robrep.readouts.PROBE_READOUTS`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from robrep.readouts import PROBE_READOUTS
from robrep.results import atomic_path


def _r2(row: Mapping) -> float:
    return float(row["r2"]) if row["r2"] not in ("", None) else math.nan


def select(rows: Sequence[Mapping], n: int, probe: str = "ridge") -> dict[tuple[str, str, str], float]:
    """``{(encoder, readout, variable): r2}`` of the rows at ``n`` demos and ``probe``."""
    return {(r["encoder"], r["readout"], r["variable"]): _r2(r) for r in rows
            if int(r["n_demos"]) == n and r["probe"] == probe}


def ordered(values: Sequence[str], order: Sequence[str]) -> list[str]:
    """Unique ``values`` in first-seen order, those in ``order`` first (in that order)."""
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def format_table(rows: Sequence[Mapping], n: int, probe: str = "ridge") -> str:
    """Text table: one line per encoder × readout, one column per variable (R² at ``n`` demos; ``skip``
    for variables without variance)."""
    sel = select(rows, n, probe)
    if not sel:
        return f"(no {probe} rows at N={n})"
    encoders = ordered([k[0] for k in sel], [])
    readouts = ordered([k[1] for k in sel], PROBE_READOUTS)
    variables = ordered([k[2] for k in sel], [])
    width = max(10, *(len(v) + 1 for v in variables))
    label_w = max(len(f"{e}/{r}") for e, r, _ in sel) + 2
    lines = [f"{f'R² {probe} N={n}':<{label_w}}" + "".join(f"{v:>{width}}" for v in variables)]
    for enc in encoders:
        for ro in readouts:
            if not any((enc, ro, v) in sel for v in variables):
                continue
            vals = [sel.get((enc, ro, v), math.nan) for v in variables]
            lines.append(f"{f'{enc}/{ro}':<{label_w}}" +
                         "".join(f"{'skip' if math.isnan(x) else f'{x:.3f}':>{width}}" for x in vals))
    return "\n".join(lines)


def plot_probe(rows: Sequence[Mapping], path: str | os.PathLike, n: int, probe: str = "ridge",
               title: str | None = None) -> Path:
    """One panel per (non-skipped) variable: R² bars grouped by readout, one bar per encoder (the encoder
    and its baselines), at ``n`` demos with ``probe``. Written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = {k: v for k, v in select(rows, n, probe).items() if not math.isnan(v)}
    encoders = ordered([k[0] for k in sel], [])
    readouts = ordered([k[1] for k in sel], PROBE_READOUTS)
    variables = ordered([k[2] for k in sel], [])
    fig, axes = plt.subplots(1, max(1, len(variables)), figsize=(2.2 + 2.6 * max(1, len(variables)), 3.4),
                             sharey=True, squeeze=False)
    width = 0.8 / max(1, len(encoders))
    for ax, var in zip(axes[0], variables):
        for i, enc in enumerate(encoders):
            xs = [j + (i - (len(encoders) - 1) / 2) * width for j, ro in enumerate(readouts) if (enc, ro, var) in sel]
            ys = [max(sel[(enc, ro, var)], -0.2) for ro in readouts if (enc, ro, var) in sel]
            ax.bar(xs, ys, width, label=enc, color=f"C{i}")
        ax.axhline(0.9, color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(readouts)), readouts, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_ylim(-0.2, 1.0)
        ax.set_title(var)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"held-out R² ({probe}, N={n})")
    if encoders:
        fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="upper right", ncol=len(encoders))
    if title:
        fig.suptitle(title, fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
