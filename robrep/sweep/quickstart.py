"""The main job: the quick sweep, a one-line verdict with its caveat, and where the full sweep is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig

from robrep import results
from robrep.sweep.run import run_sweep

log = logging.getLogger(__name__)


def verdict(paired: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]]) -> str:
    """One line on the first pair at the largest N: the paired difference with its bootstrap 95 % interval, whether
    the interval excludes 0, and the caveat (seeds × episodes behind it)."""
    if not paired:
        return "verdict: no pair of arms ran on shared layouts (see `pairs`)"
    n = max(int(p["n"]) for p in paired)
    p = next(p for p in paired if int(p["n"]) == n)
    rates = {(str(s["arm"]), int(s["n"])): float(s["success_rate"]) for s in summary}
    lo, hi = float(p["ci_low"]), float(p["ci_high"])
    call = ("resolved: " + (f"{p['a']} better" if lo > 0 else f"{p['b']} better")) if lo > 0 or hi < 0 else "not resolved"
    return (f"verdict at N={n}: {p['a']} {rates.get((p['a'], n), float('nan')):.0%} vs {p['b']} "
            f"{rates.get((p['b'], n), float('nan')):.0%}, difference {float(p['diff']):+.2f} [{lo:+.2f}, {hi:+.2f}] "
            f"(paired bootstrap 95 %) — {call}; caveat: {p['seeds']} training seed(s) × {p['episodes']} episodes, "
            f"no multiple-comparison correction: an illustration, not a result")


def full_sweep_pointer(full_sweep_dir: str | Path) -> str:
    """Where the committed full sweep is, which N it covers so far and what it cost (summed from its runs.csv),
    or how to run it."""
    runs, summary = Path(full_sweep_dir) / "runs.csv", Path(full_sweep_dir) / "summary.csv"
    if not runs.exists():
        return f"full sweep: not found at {full_sweep_dir}; run `robrep sweep` (every arm × N ∈ {{10,50,100,500}} × seeds)"
    rows = results.read_csv(runs)
    wall = sum(float(r["wall_min"]) for r in rows)
    ns = sorted({int(r["n"]) for r in results.read_csv(summary)}) if summary.exists() else []
    covers = f"N = {', '.join(map(str, ns))} so far" if ns else "no finished cell yet"
    return (f"full sweep: {full_sweep_dir}/ ({covers}; summary.csv, paired.csv, auc.csv, success_vs_n.png; "
            f"results/REPORT.md), {wall / 60:.1f} h of wall time over {len(rows)} invocation(s) on the machine that "
            f"made it; rerun or extend with `robrep sweep` (resumable)")


def run_quickstart(cfg: DictConfig) -> str:
    """Run the quick sweep of ``cfg`` and print the verdict and pointers; returns the verdict line."""
    out = run_sweep(cfg)
    paths = out["paths"]
    paired = results.read_csv(paths["paired"]) if "paired" in paths else []
    line = verdict(paired, results.read_csv(paths["summary"]))
    log.info(f"videos: {Path(cfg.sweep_dir) / 'videos'}/")
    log.info(line)
    log.info(full_sweep_pointer(cfg.full_sweep_dir))
    log.info(f"main job wall time {out['wall_min']:.1f} min")
    return line
