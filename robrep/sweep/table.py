"""Sweep results: per-cell records → one tidy table (CSV + JSON lines) and a summary per (arm, N).

A *cell record* is the JSON written by ``robrep cell`` (:func:`cell_path`): ``arm``, ``task``, ``n``,
``seed``, ``episodes``, ``successes``, ``success_rate``, ``ci_low``/``ci_high`` (Wilson 95 %),
``mean_length``, ``episode_seeds``/``episode_success`` (per evaluation episode), wall times and what
was trained (encoder, weights hash, readout, head, policy path).

Two levels of statistics: pooled over seeds (Wilson interval, hierarchical paired bootstrap), and seed-level, where
each training seed is one observation (Student-t intervals, paired t-tests with Holm–Bonferroni adjustment across a
table's comparisons). The primary metric is the area under success vs log10 N per training seed (:func:`auc_rows`).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from robrep.eval.stats import (auc_log_n, holm, noise_floor, paired_bootstrap_diff, paired_seed_diff, seed_diff_test,
                               seed_interval, wilson_interval)
from robrep.results import save_figure

#: Columns of the per-cell table, in order (the JSON-lines file holds the same rows).
CELL_COLUMNS = ("arm", "task", "demo_visuals", "eval_visuals", "encoder", "weights_hash", "readout", "head", "n",
                "seed", "eval_split", "episodes", "successes",
                "success_rate", "ci_low", "ci_high", "mean_length", "steps", "best_step", "max_steps", "stopped",
                "cap_bound", "valid_mse", "train_seconds", "eval_seconds", "ms_per_step",
                "policy", "policy_key", "dataset_hash")
#: Columns of the per-(arm, N) summary.
SUMMARY_COLUMNS = ("arm", "task", "n", "seeds", "episodes", "successes", "success_rate", "ci_low", "ci_high",
                   "seed_mean", "seed_ci_low", "seed_ci_high", "seed_std", "seed_min", "seed_max")
#: Columns of :func:`paired_rows`: the pooled bootstrap difference (``diff``, ``ci_low``, ``ci_high``) and the
#: seed-level paired t-test (``seed_diff``, ``seed_ci_low``, ``seed_ci_high``, ``p_value``, Holm ``p_holm``,
#: ``verdict``).
PAIRED_COLUMNS = ("a", "b", "n", "seeds", "episodes", "diff", "ci_low", "ci_high", "seed_diff", "seed_ci_low",
                  "seed_ci_high", "p_value", "p_holm", "verdict")
#: Columns of :func:`auc_rows` (``ns``: the N grid, space-separated).
AUC_COLUMNS = ("arm", "task", "ns", "seeds", "auc", "auc_ci_low", "auc_ci_high", "auc_std")
#: Columns of :func:`auc_paired_rows`.
AUC_PAIRED_COLUMNS = ("a", "b", "ns", "seeds", "auc_a", "auc_b", "diff", "ci_low", "ci_high", "p_value", "p_holm",
                      "verdict")
#: Family-wise significance level of the verdicts (on Holm-adjusted p-values).
ALPHA = 0.05
#: Arms trained from scratch (no frozen encoder): never the ``a`` of a default AUC comparison.
SCRATCH_ARMS = ("cnn", "resnet18")
#: Arms that are not vision policies: the privileged-state oracle (configs/arm/state.yaml) — a ceiling beside the
#: table, never a side of the default comparisons.
ORACLE_ARMS = ("state",)


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
    """Per (arm, N): successes pooled over seeds with a Wilson 95 % interval (``ci_low``/``ci_high``: episode noise
    only), the mean of the per-seed success rates with a Student-t 95 % interval over training seeds
    (``seed_ci_low``/``seed_ci_high``; nan with one seed), and the spread of the per-seed rates (the noise floor of
    that cell). Rows have :data:`SUMMARY_COLUMNS`."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(str(r["arm"]), int(r["n"]))].append(r)
    rows = []
    for (arm, n), cells in sorted(groups.items()):
        k = sum(int(c["successes"]) for c in cells)
        total = sum(int(c["episodes"]) for c in cells)
        rates = [float(c["success_rate"]) for c in cells]
        spread, seed_ci = noise_floor(rates), seed_interval(rates)
        low, high = wilson_interval(k, total)
        rows.append({
            "arm": arm, "task": cells[0].get("task", ""), "n": n, "seeds": len(cells), "episodes": total,
            "successes": k, "success_rate": round(k / total, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
            "seed_mean": round(spread["mean"], 4), "seed_ci_low": round(seed_ci["ci_low"], 4),
            "seed_ci_high": round(seed_ci["ci_high"], 4),
            **{f"seed_{key}": round(spread[key], 4) for key in ("std", "min", "max")},
        })
    return rows


def paired_rows(records: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]],
                num_resamples: int = 10000) -> list[dict[str, Any]]:
    """For each ``(a, b)`` arm pair and N both have: success(a) − success(b) on the shared evaluation
    episodes and training seeds, two ways (rows have :data:`PAIRED_COLUMNS`):

    - pooled: ``diff`` with a hierarchical paired bootstrap 95 % interval (``ci_low``/``ci_high``);
    - seed-level: the mean of the per-seed differences of success rates ``seed_diff`` with a Student-t 95 % interval
      (``seed_ci_low``/``seed_ci_high``) and a paired t-test ``p_value`` (:func:`robrep.eval.stats.paired_seed_diff`;
      nan with one shared seed), Holm-adjusted over every row of the returned table (``p_holm``), and the
      ``verdict`` from ``p_holm`` alone (:func:`seed_verdicts`).

    Pairs whose cells were not evaluated on the same episode seeds give no row."""
    by = _by_arm_n(records)
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
            seed = paired_seed_diff(sa[1], sb[1])
            rows.append({"a": a, "b": b, "n": n, "seeds": len(seeds), "episodes": int(sa[1].shape[1]),
                         "diff": round(float(out["diff"]), 4), "ci_low": round(float(out["ci_low"]), 4),
                         "ci_high": round(float(out["ci_high"]), 4), "seed_diff": round(seed["diff"], 4),
                         "seed_ci_low": round(seed["ci_low"], 4), "seed_ci_high": round(seed["ci_high"], 4),
                         "p_value": seed["p_value"]})
    return seed_verdicts(rows, diff_key="seed_diff")


def seed_verdicts(rows: list[dict[str, Any]], diff_key: str = "diff", alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Holm-adjust the ``p_value`` of every row together (one family: the whole table), in place: adds ``p_holm``
    and ``verdict`` — ``"resolved: a better"`` / ``"resolved: a worse"`` when ``p_holm < alpha`` (the sign of
    ``rows[i][diff_key]``), else ``"unresolved"`` (also for a nan p-value). p-values are rounded to 4 significant
    digits after the adjustment. Returns ``rows``."""
    adjusted = holm([float(r["p_value"]) for r in rows]) if rows else np.array([])
    for r, p_adj in zip(rows, adjusted):
        d = float(r[diff_key])
        resolved = bool(p_adj < alpha) and d != 0.0
        r["p_value"], r["p_holm"] = _sig(float(r["p_value"])), _sig(float(p_adj))
        r["verdict"] = ("resolved: a better" if d > 0 else "resolved: a worse") if resolved else "unresolved"
    return rows


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (p-values can be far below 1e-4); nan stays nan."""
    return float(f"{x:.{digits}g}")


def _by_arm_n(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict[int, Mapping[str, Any]]]:
    """``{(arm, N): {seed: record}}``."""
    by: dict[tuple[str, int], dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for r in records:
        by[(str(r["arm"]), int(r["n"]))][int(r["seed"])] = r
    return by


def sweep_ns(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """Every N of the sweep (any arm), ascending."""
    return sorted({int(r["n"]) for r in records})


def complete_ns(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The N every arm has finished, ascending: the N at which each arm with cells at two or more N has a cell for
    every training seed any of those arms has at that N (seeds may differ between N: ``seeds_by_n``). A sweep run
    stage by stage over sessions has arms at a new N before others (an oracle's or a subset's cells first); an AUC
    over every N of the sweep would drop every arm the stage has not reached, so the sweep's AUC tables use this grid
    (their ``ns`` column names it). Arms with cells at one N only (a one-off) do not hold the grid back."""
    by = _by_arm_n(records)
    ns_of: dict[str, set[int]] = {}
    for arm, n in by:
        ns_of.setdefault(arm, set()).add(n)
    arms = [a for a, ns in ns_of.items() if len(ns) >= 2]
    seeds_at = {n: {s for a in arms for s in by.get((a, n), {})} for n in sweep_ns(records)}
    return [n for n, seeds in seeds_at.items() if seeds and all(set(by.get((a, n), {})) == seeds for a in arms)]


def _auc_grid(records: Sequence[Mapping[str, Any]], ns: Sequence[int] | None) -> list[int]:
    """The N grid of an AUC table: ``ns`` (default every N of the sweep), sorted; ``ValueError`` with fewer than 2."""
    ns = sorted({int(n) for n in (ns if ns is not None else sweep_ns(records))})
    if len(ns) < 2:
        raise ValueError(f"the area under success vs log N needs at least 2 distinct N, got {ns}")
    return ns


def seed_aucs(records: Sequence[Mapping[str, Any]], arm: str, ns: Sequence[int] | None = None) -> dict[int, float]:
    """``{seed: AUC}`` of ``arm``: for each training seed with a cell at every N of ``ns`` (default
    :func:`sweep_ns`, the whole sweep), the area under its success rate vs log10 N (:func:`robrep.eval.stats.auc_log_n`,
    in [0, 1]). Needs at least 2 distinct N; seeds missing any N are left out."""
    ns = sorted({int(n) for n in (ns if ns is not None else sweep_ns(records))})
    by = _by_arm_n(records)
    seeds = set.intersection(*(set(by.get((arm, n), {})) for n in ns)) if ns else set()
    return {s: auc_log_n(ns, [float(by[(arm, n)][s]["success_rate"]) for n in ns]) for s in sorted(seeds)}


def auc_rows(records: Sequence[Mapping[str, Any]], ns: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """The primary metric per arm: the mean over training seeds of each seed's area under success vs log10 N
    (:func:`seed_aucs`; only seeds with a cell at every N of ``ns``, default every N of the sweep), with a Student-t
    95 % interval over seeds (nan with one seed) and the seed std. Arms with no seed at every N give no row; rows
    have :data:`AUC_COLUMNS`.

    Raises:
        ValueError: fewer than 2 distinct N.
    """
    ns = _auc_grid(records, ns)
    rows = []
    for arm in sorted({str(r["arm"]) for r in records}):
        aucs = seed_aucs(records, arm, ns)
        if not aucs:
            continue
        values = np.array(list(aucs.values()))
        ci = seed_interval(values)
        task = next(str(r.get("task", "")) for r in records if str(r["arm"]) == arm)
        rows.append({"arm": arm, "task": task, "ns": " ".join(map(str, ns)), "seeds": len(values),
                     "auc": round(ci["mean"], 4), "auc_ci_low": round(ci["ci_low"], 4),
                     "auc_ci_high": round(ci["ci_high"], 4),
                     "auc_std": round(float(values.std(ddof=1)), 4) if len(values) > 1 else 0.0})
    return rows


def auc_paired_rows(records: Sequence[Mapping[str, Any]], pairs: Sequence[tuple[str, str]],
                    ns: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Per ``(a, b)`` pair: AUC(a) − AUC(b) paired by training seed (the same demonstration subsets): over the seed
    indices both arms have at every N of ``ns`` (default every N of the sweep) and, at each N, evaluated on the same
    episode seeds (layouts), the mean per-seed difference with a Student-t 95 % interval and a paired t-test
    ``p_value`` (:func:`robrep.eval.stats.seed_diff_test`), Holm-adjusted over every row of the returned table
    (``p_holm``) with its ``verdict`` (:func:`seed_verdicts`). Pairs without a shared complete seed give no row;
    rows have :data:`AUC_PAIRED_COLUMNS`.

    Raises:
        ValueError: fewer than 2 distinct N.
    """
    ns = _auc_grid(records, ns)
    by = _by_arm_n(records)
    rows = []
    for a, b in pairs:
        auc_a, auc_b = seed_aucs(records, a, ns), seed_aucs(records, b, ns)
        seeds = [s for s in sorted(set(auc_a) & set(auc_b))
                 if all(list(by[(a, n)][s].get("episode_seeds", ())) == list(by[(b, n)][s].get("episode_seeds", ()))
                        for n in ns)]
        if not seeds:
            continue
        out = seed_diff_test([auc_a[s] - auc_b[s] for s in seeds])
        rows.append({"a": a, "b": b, "ns": " ".join(map(str, ns)), "seeds": len(seeds),
                     "auc_a": round(float(np.mean([auc_a[s] for s in seeds])), 4),
                     "auc_b": round(float(np.mean([auc_b[s] for s in seeds])), 4),
                     "diff": round(out["diff"], 4), "ci_low": round(out["ci_low"], 4),
                     "ci_high": round(out["ci_high"], 4), "p_value": out["p_value"]})
    return seed_verdicts(rows, diff_key="diff")


def default_auc_pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """The AUC comparisons of a sweep with ``arms``: every arm other than :data:`SCRATCH_ARMS`, :data:`ORACLE_ARMS` and
    ``*_random``
    against ``cnn``, and each family arm (``mae``, ``dift``, ...) against its random-init control ``<family>_random``
    when that arm is in ``arms`` (same architecture, readout and head; variants such as ``clip_spatial`` read the
    weights differently from their family's control and are compared with ``cnn`` only)."""
    arms = list(dict.fromkeys(str(a) for a in arms))
    pairs = []
    for arm in arms:
        if arm in SCRATCH_ARMS or arm in ORACLE_ARMS or arm.endswith("_random"):
            continue
        pairs.append((arm, "cnn"))
        control = f"{arm}_random"
        if control in arms:
            pairs.append((arm, control))
    return pairs


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
    ax.set_xlim(ns_all[0] / 1.5, ns_all[-1] * 1.5)  # the seed dots' jitter (±20 %) stays beside its N, one N or many
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("demonstrations N (log scale)")
    ax.set_ylabel("success rate")
    ax.set_title(textwrap.fill(title or "success vs demonstrations (band: Wilson 95 %, dots: training seeds)", 80),
                 fontsize=9)
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



def format_auc(rows: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table of :func:`auc_rows`: arm → mean AUC over seeds ``[t 95 % interval]``, seeds, N grid."""
    lines = [f"{'arm':<14}{'AUC (success over log N)':>28}{'seeds':>7}  N"]
    for r in sorted(rows, key=lambda r: -float(r["auc"])):
        lo, hi = float(r["auc_ci_low"]), float(r["auc_ci_high"])
        ci = "[–, –]" if np.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]"
        lines.append(f"{r['arm']:<14}{float(r['auc']):>13.3f} {ci:>14}{int(r['seeds']):>7}  {r['ns']}")
    return "\n".join(lines)
