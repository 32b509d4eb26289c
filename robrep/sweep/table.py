"""Sweep results: per-cell records → one tidy table (CSV + JSON lines) and a summary per (arm, N).

A *cell record* is the JSON written by ``robrep cell`` (:func:`cell_path`): ``arm``, ``task``, ``n``,
``seed``, ``episodes``, ``successes``, ``success_rate``, ``ci_low``/``ci_high`` (Wilson 95 %),
``mean_length``, ``episode_seeds``/``episode_success`` (per evaluation episode), wall times and what
was trained (encoder, weights hash, readout, head, policy path).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from robrep.eval.stats import noise_floor, paired_bootstrap_diff, wilson_interval
from robrep.results import save_figure

#: Columns of the per-cell table, in order (the JSON-lines file holds the same rows).
CELL_COLUMNS = ("arm", "task", "demo_visuals", "eval_visuals", "encoder", "weights_hash", "readout", "head", "n",
                "seed", "episodes", "successes",
                "success_rate", "ci_low", "ci_high", "mean_length", "train_seconds", "eval_seconds", "ms_per_step",
                "policy", "policy_key", "dataset_hash")
#: Columns of the per-(arm, N) summary.
SUMMARY_COLUMNS = ("arm", "task", "n", "seeds", "episodes", "successes", "success_rate", "ci_low", "ci_high",
                   "seed_mean", "seed_std", "seed_min", "seed_max")


def cell_name(arm: str, n: int, seed: int) -> str:
    """``<arm>_n<N>_s<seed>``: the file stem of a cell's record and policy."""
    return f"{arm}_n{int(n)}_s{int(seed)}"


def cell_path(sweep_dir: str | os.PathLike, arm: str, n: int, seed: int) -> Path:
    """Where ``robrep cell`` writes the record of (arm, N, seed)."""
    return Path(sweep_dir) / "cells" / f"{cell_name(arm, n, seed)}.json"


def load_cells(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished cell record under ``sweep_dir/cells`` (sorted by arm, N, seed); hidden files — records being
    written (``.<cell>.tmp-<pid>.json``) — are not records."""
    records = []
    for path in sorted((Path(sweep_dir) / "cells").glob("[!.]*.json")):
        with open(path) as f:
            records.append(json.load(f))
    return sorted(records, key=lambda r: (str(r["arm"]), int(r["n"]), int(r["seed"])))


def cell_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per cell with :data:`CELL_COLUMNS`."""
    return [{c: r.get(c, "") for c in CELL_COLUMNS} for r in records]


def summarise(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (arm, N): successes pooled over seeds with a Wilson 95 % interval, and the spread of the
    per-seed success rates (the noise floor of that cell)."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(str(r["arm"]), int(r["n"]))].append(r)
    rows = []
    for (arm, n), cells in sorted(groups.items()):
        k = sum(int(c["successes"]) for c in cells)
        total = sum(int(c["episodes"]) for c in cells)
        spread = noise_floor([float(c["success_rate"]) for c in cells])
        low, high = wilson_interval(k, total)
        rows.append({
            "arm": arm, "task": cells[0].get("task", ""), "n": n, "seeds": len(cells), "episodes": total,
            "successes": k, "success_rate": round(k / total, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
            **{f"seed_{key}": round(spread[key], 4) for key in ("mean", "std", "min", "max")},
        })
    return rows


def paired_rows(records: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]],
                num_resamples: int = 10000) -> list[dict[str, Any]]:
    """For each ``(a, b)`` arm pair and N both have: success(a) − success(b) on the shared evaluation
    episodes and training seeds, with a hierarchical paired bootstrap 95 % interval."""
    by: dict[tuple[str, int], dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for r in records:
        by[(str(r["arm"]), int(r["n"]))][int(r["seed"])] = r
    rows = []
    for a, b in pairs:
        for n in sorted({n for (arm, n) in by if arm == a} & {n for (arm, n) in by if arm == b}):
            seeds = sorted(set(by[(a, n)]) & set(by[(b, n)]))
            if not seeds:
                continue
            sa, sb = _episode_matrix([by[(a, n)][s] for s in seeds]), _episode_matrix([by[(b, n)][s] for s in seeds])
            if sa is None or sb is None or sa[0] != sb[0]:
                continue  # not evaluated on the same episode seeds: no paired comparison
            out = paired_bootstrap_diff(sa[1], sb[1], num_resamples=num_resamples)
            rows.append({"a": a, "b": b, "n": n, "seeds": len(seeds), "episodes": int(sa[1].shape[1]),
                         "diff": round(float(out["diff"]), 4), "ci_low": round(float(out["ci_low"]), 4),
                         "ci_high": round(float(out["ci_high"]), 4)})
    return rows


def _episode_matrix(cells: Sequence[Mapping[str, Any]]) -> tuple[tuple[int, ...], np.ndarray] | None:
    """``(episode seeds, successes (seeds, episodes))`` when every cell used the same episode seeds."""
    seeds = {tuple(c.get("episode_seeds", ())) for c in cells}
    if len(seeds) != 1 or not next(iter(seeds)):
        return None
    return next(iter(seeds)), np.array([c["episode_success"] for c in cells], dtype=float)


def plot_success(summary: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                 path: str | os.PathLike, title: str = "") -> list[Path]:
    """Success rate vs N (log x), one line per arm: pooled rate with its Wilson 95 % interval as a band
    and each training seed as a dot. Writes ``path`` with suffix .png and .svg; returns both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    arms = sorted({str(r["arm"]) for r in summary})
    for i, arm in enumerate(arms):
        rows = sorted((r for r in summary if r["arm"] == arm), key=lambda r: int(r["n"]))
        ns = np.array([int(r["n"]) for r in rows], dtype=float)
        color = f"C{i % 10}"
        style = "--" if arm in ("cnn", "resnet18") else "-"
        ax.plot(ns, [float(r["success_rate"]) for r in rows], style, marker="o", color=color, label=arm)
        ax.fill_between(ns, [float(r["ci_low"]) for r in rows], [float(r["ci_high"]) for r in rows],
                        color=color, alpha=0.12, linewidth=0)
        dots = [(int(c["n"]), float(c["success_rate"])) for c in records if str(c["arm"]) == arm]
        if dots:
            jitter = 1.0 + 0.04 * (i - (len(arms) - 1) / 2)
            ax.scatter([d[0] * jitter for d in dots], [d[1] for d in dots], s=9, color=color, alpha=0.5)
    ax.set_xscale("log")
    ns_all = sorted({int(r["n"]) for r in summary})
    ax.set_xticks(ns_all)
    ax.set_xticklabels([str(n) for n in ns_all])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("demonstrations N (log scale)")
    ax.set_ylabel("success rate")
    ax.set_title(title or "success vs demonstrations (band: Wilson 95 %, dots: training seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    return save_figure(fig, path)


def plot_paired(paired: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "",
                ax: Any = None) -> list[Path]:
    """Forest plot of paired differences: one row per ``a − b`` at each N, the point estimate with its paired
    bootstrap 95 % interval, and a line at 0 (no difference). With ``ax`` draws there and writes nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(paired, key=lambda r: (int(r["n"]), str(r["a"]), str(r["b"])))
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.32 * max(1, len(rows))))
    ns = sorted({int(r["n"]) for r in rows})
    for i, r in enumerate(rows):
        d, lo, hi = float(r["diff"]), float(r["ci_low"]), float(r["ci_high"])
        color = f"C{ns.index(int(r['n'])) % 10}"
        ax.errorbar([d], [i], xerr=[[d - lo], [hi - d]], fmt="o", color=color, capsize=3, markersize=4)
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['a']} − {r['b']}  N={r['n']} ({r['seeds']}×{r['episodes']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("success-rate difference (paired bootstrap 95 %)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(title or "paired differences on shared evaluation episodes", fontsize=9)
    return save_figure(ax.figure, path) if own else []


def noise_floor_by_n(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per N, across arms: the median and the largest per-arm seed spread (``seed_std``/range of :func:`summarise`,
    i.e. :func:`robrep.eval.noise_floor` of each cell), the measured noise floor of a single-seed comparison."""
    rows = []
    for n in sorted({int(r["n"]) for r in summary}):
        cells = [r for r in summary if int(r["n"]) == n and int(r["seeds"]) > 1]
        if not cells:
            continue
        stds = np.array([float(r["seed_std"]) for r in cells])
        ranges = np.array([float(r["seed_max"]) - float(r["seed_min"]) for r in cells])
        widest = max(cells, key=lambda r: float(r["seed_max"]) - float(r["seed_min"]))
        rows.append({"n": n, "arms": len(cells), "median_seed_std": round(float(np.median(stds)), 4),
                     "max_seed_std": round(float(stds.max()), 4), "median_seed_range": round(float(np.median(ranges)), 4),
                     "max_seed_range": round(float(ranges.max()), 4), "widest_arm": widest["arm"]})
    return rows


def format_summary(summary: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of the summary: arm × N → ``rate [low, high]``."""
    arms = sorted({str(r["arm"]) for r in summary})
    ns = sorted({int(r["n"]) for r in summary})
    cell = {(str(r["arm"]), int(r["n"])): r for r in summary}
    lines = [f"{'arm':<14}" + "".join(f"{'N=' + str(n):>22}" for n in ns)]
    for arm in arms:
        parts = []
        for n in ns:
            r = cell.get((arm, n))
            parts.append(f"{'-':>22}" if r is None else
                         f"{float(r['success_rate']):>7.0%} [{float(r['ci_low']):.2f},{float(r['ci_high']):.2f}] s{r['seeds']}".rjust(22))
        lines.append(f"{arm:<14}" + "".join(parts))
    return "\n".join(lines)

