"""The data-efficiency sweep (arms × N × seeds) end to end, resumable: :func:`run_sweep`.

1. the demo file (collected when missing) must hold ``subset_key(N, s)`` for every N and seed;
2. every cell becomes a :class:`robrep.sweep.cell.CellSpec` (the arm composed from ``configs/arm/<arm>.yaml``,
   the shared keys from the sweep config); cells whose record exists are skipped, so re-running continues an
   interrupted sweep;
3. each frozen encoder's features are cached once, in this process, before cells start;
4. the pending cells run as :func:`robrep.sweep.cell.run_cell` through the configured launcher
   (:mod:`robrep.launch`: in process, joblib, submitit or Ray) — typed specs, no command lines;
5. every record in ``sweep_dir`` (this run's and earlier runs') becomes ``table.csv``/``table.jsonl``,
   ``summary.csv``, ``paired.csv``, ``success_vs_n.png``/``.svg`` and, with at least 2 N, the primary metric
   ``auc.csv``/``auc_paired.csv`` (area under success vs log N per seed; :func:`aggregate`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robrep import results
from robrep.config import config_dir
from robrep.data.demo_file import DemoFile, DemoFileError, subset_key
from robrep.data.sources import resolve_dataset
from robrep.failpoints import failpoint
from robrep.interrupt import sigterm_raises
from robrep.locks import exclusive_lock
from robrep.precision import resolve_precision
from robrep.sweep.cell import CellSpec, arm_config, cell_features, run_cell, stage_demos
from robrep.sweep.run_log import RunLog
from robrep.sweep.table import (auc_paired_rows, auc_rows, cell_rows, complete_ns, default_auc_pairs, format_auc,
                                format_summary, load_cells, noise_floor_by_n, paired_rows, plot_paired, plot_success,
                                summarise, sweep_ns)

log = logging.getLogger(__name__)


class SweepError(RuntimeError):
    """Some cells of a sweep failed (the finished ones are kept and tabulated; re-running retries the rest)."""


def sweep_arms(cfg: DictConfig) -> list[str]:
    """The sweep's arms: ``arms`` when given, else ``baselines`` + ``encoders`` + ``controls`` + ``oracles`` (the
    end-to-end arms first: the slowest cells start first, which balances the parallel jobs); each must be a
    ``configs/arm`` file."""
    if cfg.get("arms") is not None:
        arms = [str(a) for a in cfg.arms]
    else:
        arms = [str(a) for key in ("baselines", "encoders", "controls", "oracles") for a in (cfg.get(key) or [])]
    known = sorted(p.stem for p in (Path(config_dir()) / "arm").glob("*.yaml"))
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ValueError(f"unknown sweep arms {unknown} (known: {known})")
    if not arms:
        raise ValueError("the sweep has no arms: set encoders/baselines or arms")
    return list(dict.fromkeys(arms))


def seeds_for(cfg: DictConfig, n: int) -> list[int]:
    """Training seeds of the cells at ``n`` demos: ``seeds_by_n[n]`` where given, else ``seeds``."""
    by_n = {int(k): [int(s) for s in v] for k, v in (cfg.get("seeds_by_n") or {}).items()}
    unknown = sorted(set(by_n) - {int(x) for x in cfg.demos})
    if unknown:
        raise ValueError(f"seeds_by_n names N={unknown}, which are not in demos={list(cfg.demos)}")
    return by_n.get(int(n), [int(s) for s in cfg.seeds])


def ensure_dataset(cfg: DictConfig) -> Path:
    """The sweep's demo file, collected when missing (in the ``task.visuals`` setting); checks it was rendered
    in that setting and holds every (N, seed) subset. ``dataset=lerobot:<dir>`` names a LeRobot dataset, converted
    once (:func:`robrep.data.sources.resolve_dataset`)."""
    from robrep.data.collect import collect_demos

    path = resolve_dataset(cfg.dataset)  # lerobot:<dir> -> its converted demo file (never collected)
    demos = sorted(int(n) for n in cfg.demos)
    seeds = sorted({s for n in demos for s in seeds_for(cfg, n)})
    visuals = str(cfg.task.get("visuals", "clean"))
    if not path.exists():
        # collect.demos: every N of a sweep run N by N, not only this stage's — its valid demos are a fraction of
        # the file, so all stages must read one file (null: this invocation's N only, the file as before)
        extra = {int(n) for n in (cfg.collect.get("demos") or [])} - set(demos)
        sizes = sorted(set(demos) | extra)
        subset_seeds = sorted(set(seeds) | ({int(s) for s in cfg.seeds} if extra else set()))
        train_needed = max(sizes)
        total = math.ceil(train_needed / (1.0 - float(cfg.collect.valid_fraction))) + 1
        log.info(f"collecting {total} {cfg.task.name} demos into {path} (N up to {train_needed}, seeds "
                 f"{subset_seeds})")
        collect_demos(cfg.task.name, total, path, image_size=cfg.task.image_size, seed_start=cfg.collect.seed_start,
                      noise_std=cfg.collect.noise_std, subset_sizes=sizes, subset_seeds=subset_seeds,
                      valid_fraction=cfg.collect.valid_fraction, progress=cfg.progress, visuals=visuals)
    with DemoFile(path) as f:
        recorded = f.env_args.get("env_kwargs", {}).get("visuals", "clean")
        if recorded != visuals:
            raise DemoFileError(f"{path} was rendered with visuals={recorded}, the sweep asks for "
                                f"task.visuals={visuals}; point dataset= (and name=) at another file for this setting")
        missing = [subset_key(n, s) for n in demos for s in seeds_for(cfg, n) if subset_key(n, s) not in f.filter_keys]
        if missing:
            raise DemoFileError(
                f"{path} lacks the subsets {missing} (it has {len(f.demo_names('train')) if 'train' in f.filter_keys else len(f)} "
                f"train demos); delete it to re-collect, or point dataset= at a file with them")
    return path


def sweep_cells(cfg: DictConfig, arms: list[str], precision: str) -> list[CellSpec]:
    """Every cell of the sweep as a spec, arm-major within each N (so the slow end-to-end arms start first)."""
    arm_cfgs = {arm: arm_config(arm, str(cfg.weights_budget), list(cfg.get("arm_overrides") or [])) for arm in arms}
    return [CellSpec.from_cfg(cfg, arm_cfgs[a], n=int(n), seed=s, precision=precision)
            for n in cfg.demos for a in arms for s in seeds_for(cfg, int(n))]


def aggregate(cfg: DictConfig) -> dict[str, Path]:
    """Table, summary, paired differences and plot of every finished cell in ``sweep_dir`` (also cells of
    earlier runs with other arms, N or seeds: the directory holds one growing table). With at least 2 N also the
    primary metric over the N every arm has finished (:func:`robrep.sweep.table.complete_ns`, when that is 2 or more):
    ``auc.csv`` (per arm, area under success vs log N over the seeds present at every such N) and ``auc_paired.csv``
    (:func:`robrep.sweep.table.default_auc_pairs`, seed-level t-tests, Holm-adjusted)."""
    records = load_cells(cfg.sweep_dir)
    arms = sorted({str(r["arm"]) for r in records})
    if not records:
        raise RuntimeError(f"no finished cells under {cfg.sweep_dir}/cells")
    out = Path(cfg.sweep_dir)
    command = [results.command_line(),
               "rows cover every cell in this directory, whichever invocation made it: runs.csv lists the invocations "
               "and each cell's record (cells/*.json) names its command"]
    paths = {"table": results.write_csv(cell_rows(records), out / "table.csv", comments=command),
             "jsonl": results.write_jsonl(records, out / "table.jsonl")}
    failpoint("sweep.table")
    summary = summarise(records)
    paths["summary"] = results.write_csv(summary, out / "summary.csv", comments=command)
    pairs = [tuple(p) for p in cfg.pairs if p[0] in arms and p[1] in arms]
    paired = paired_rows(records, pairs, num_resamples=int(cfg.bootstrap_resamples))
    if paired:
        paths["paired"] = results.write_csv(paired, out / "paired.csv", comments=command)
        paths["paired_plot"] = plot_paired(paired, out / "paired",
                                           title=f"{cfg.name}: arm a − arm b on the same evaluation episodes")[0]
    png, svg = plot_success(summary, records, out / "success_vs_n",
                            title=f"{cfg.task.name}: success vs N (pooled over training seeds; band = Wilson 95 %, "
                                  f"dots = seeds)")
    paths.update(plot=png, plot_svg=svg)
    log.info(format_summary(summary))
    floor = noise_floor_by_n(summary)
    if floor:
        paths["noise_floor"] = results.write_csv(floor, out / "noise_floor.csv", comments=command)
    for f in floor:
        log.info(f"noise floor at N={f['n']} (same cell, other training seeds): seed std median {f['median_seed_std']:.2f}, "
                 f"max {f['max_seed_std']:.2f}; range median {f['median_seed_range']:.2f}, max {f['max_seed_range']:.2f} "
                 f"({f['widest_arm']})")
    for p in paired:
        log.info(f"{p['a']} − {p['b']} at N={p['n']}: {p['diff']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] "
                 f"({p['seeds']} seeds × {p['episodes']} episodes, paired bootstrap 95 %); seed-level "
                 f"{p['seed_diff']:+.2f} [{p['seed_ci_low']:+.2f}, {p['seed_ci_high']:+.2f}] (t 95 %), "
                 f"p {p['p_value']:.3g}, Holm p {p['p_holm']:.3g}: {p['verdict']}")
    ns = complete_ns(records)
    auc_paths = _aggregate_auc(records, arms, ns, out, command) if len(ns) >= 2 else {}
    paths.update(auc_paths)
    if len(ns) < 2 and len(in_sweep := sweep_ns(records)) >= 2:
        log.info(f"no AUC table: fewer than 2 N that every arm has finished (finished: {ns}, in the sweep: {in_sweep})")
    for name in ("auc", "auc_paired"):  # a table this aggregation did not write would describe older cells: remove it
        stale = out / f"{name}.csv"
        if name not in auc_paths and stale.exists():
            stale.unlink()
            log.info(f"removed {stale}: the cells now give it no rows (an earlier aggregation wrote it)")
    return paths


def _aggregate_auc(records: list[dict[str, Any]], arms: list[str], ns: list[int], out: Path,
                   command: list[str]) -> dict[str, Path]:
    """``auc.csv`` and ``auc_paired.csv`` (when they have rows) over the N grid ``ns`` (:func:`complete_ns`) and the
    AUC table and comparisons on stdout."""
    paths: dict[str, Path] = {}
    auc = auc_rows(records, ns)
    left_out = sorted(set(arms) - {str(r["arm"]) for r in auc})
    if auc:
        paths["auc"] = results.write_csv(auc, out / "auc.csv", comments=command)
        log.info(f"primary metric: area under success vs log10 N over N = {ns} (mean over log N), per training seed; "
                 f"mean over seeds [Student-t 95 %]")
        log.info(format_auc(auc))
    if left_out:
        log.info(f"no AUC for {', '.join(left_out)}: no training seed has a cell at every N = {ns}")
    auc_paired = auc_paired_rows(records, default_auc_pairs(arms), ns)
    if auc_paired:
        paths["auc_paired"] = results.write_csv(auc_paired, out / "auc_paired.csv", comments=command)
    for p in auc_paired:
        log.info(f"AUC {p['a']} − {p['b']}: {p['diff']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] "
                 f"({p['seeds']} seeds, paired t 95 %), p {p['p_value']:.3g}, Holm p {p['p_holm']:.3g}: {p['verdict']}")
    return paths


def clean_stale_temps(cfg: DictConfig, cells: list[CellSpec]) -> list[Path]:
    """Delete temp files that killed writers left in the sweep's folders (table, records, policies, feature
    caches); files of writers still running are kept."""
    folders = {Path(cfg.sweep_dir), Path(cfg.sweep_dir) / "cells", Path(cfg.cache_dir)}
    folders |= {Path(c.policy_dir) for c in cells}
    removed = [p for folder in sorted(folders) for p in results.remove_stale_temps(folder)]
    if removed:
        log.info(f"removed {len(removed)} temp files left by interrupted writers: {', '.join(map(str, removed))}")
    return removed


def run_sweep(cfg: DictConfig) -> dict[str, Any]:
    """Run the sweep of ``cfg`` (a composed ``configs/sweep.yaml``): data, feature caches, pending cells through
    ``cfg.launcher``, then the tables and plots. Returns ``{"paths", "wall_min", "failed"}``; raises
    :class:`SweepError` after tabulating when any cell failed.

    One sweep per ``sweep_dir`` at a time (a lock: a second one is refused, naming the first). SIGINT / SIGTERM stop
    the running cells (their worker processes end; a SIGKILLed sweep's workers end by themselves, see
    :mod:`robrep.launch`); cells without a record are not done and run again on the next invocation, which first
    deletes the temp files killed writers left; ``runs.csv`` logs the invocation as interrupted."""
    precision = resolve_precision(cfg.encoder_precision, cfg.device)
    arms = sweep_arms(cfg)
    cells = sweep_cells(cfg, arms, precision)  # every setting checked before demos are collected or anything trains
    with exclusive_lock(cfg.sweep_dir, f"robrep sweep into {cfg.sweep_dir}", directory=True), sigterm_raises():
        return _run_locked(cfg, arms, cells, precision)


def _run_locked(cfg: DictConfig, arms: list[str], cells: list[CellSpec], precision: str) -> dict[str, Any]:
    from robrep.launch import make_launcher

    run_log = RunLog(cfg.sweep_dir, len(cells), int(cfg.jobs))  # runs.csv row from the start, a heartbeat keeps it
    failed: list[tuple[str, str]] = []
    try:
        with run_log.heartbeat():
            clean_stale_temps(cfg, cells)
            ensure_dataset(cfg)
            tuning = bool(cfg.get("tune") and cfg.tune.get("grid"))
            if tuning:
                from robrep.sweep.tune import apply_choices, choice_path, tune_cells

                cells = apply_choices(cells, cfg.sweep_dir)  # choices of earlier runs: their cells' keys
            pending = [c for c in cells if not c.done]
            run_log.set_cells(len(cells), pending)
            stale = [c.name for c in pending if c.record_path.exists()]
            if stale:
                log.info(f"{len(stale)} records were made with other settings (policy key differs) and run again: "
                         f"{', '.join(stale)}")
            layout = "; ".join(f"N={n} × seeds {seeds_for(cfg, int(n))}" for n in cfg.demos)
            log.info(f"sweep {cfg.name}: {len(cells)} cells ({len(arms)} arms × {layout}), "
                     f"{len(cells) - len(pending)} already done; frozen encoders in {precision}")
            if pending:
                by_arm: dict[str, list[CellSpec]] = {}
                for spec in pending:
                    by_arm.setdefault(spec.arm, []).append(spec)
                extra = [int(cfg.tune.seed)] if tuning else []
                for specs in by_arm.values():  # each frozen encoder's cache once, on every job's thread, before
                    # cells compete: the demos this invocation's cells train and validate on (all, at N = 500)
                    if specs[0].policy["trunk"] == "features":
                        cell_features(specs[0], threads=max(1, int(cfg.jobs)), demos=stage_demos(specs, extra))
                launcher = make_launcher(OmegaConf.to_container(cfg.launcher, resolve=True))
                if tuning:  # lr × weight decay per (arm, N), on the valid demos only
                    grid = OmegaConf.to_container(cfg.tune.grid, resolve=True)
                    tuned, failed = tune_cells(pending, grid, int(cfg.tune.seed), launcher, cfg.sweep_dir)
                    pending = [c for c in tuned if choice_path(cfg.sweep_dir, c.arm, c.n).exists()]
                    run_log.set_cells(len(cells), pending)
                    cells = apply_choices(cells, cfg.sweep_dir)
                outcomes = launcher.map(run_cell, pending)
                failed += [(o.item.name, o.error) for o in outcomes if o.error is not None]
        run_log.update("failed" if failed else "finished")  # before the tables: a kill there loses no credit
        paths = aggregate(cfg) if not failed or load_cells(cfg.sweep_dir) else {}  # every cell failed: no table
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):  # an error: the row says so, the error propagates
            run_log.update("failed")
            raise
        # Ctrl-C, SIGTERM (Terminated): log, then stop; workers stop with the sweep, the cells with records are ours
        run_log.update("interrupted")
        left = [c.name for c in cells if not c.done]
        shown = ", ".join(left[:10]) + (f", ... ({len(left) - 10} more)" if len(left) > 10 else "")
        log.info(f"sweep {cfg.name} interrupted: {len(left)} cells not done ({shown or 'none'}); "
                 f"run the same command again to resume")
        raise
    total = run_log.update(run_log.row["status"])
    log.info(f"sweep wall time {run_log.row['wall_min']:.1f} min (all runs on {cfg.sweep_dir}: {total:.1f} min, "
             f"{Path(cfg.sweep_dir) / 'runs.csv'})")
    for k, p in paths.items():
        log.info(f"{k}: {p}")
    if failed:
        details = "\n".join(f"--- {name}\n{error.rstrip()}" for name, error in failed)
        raise SweepError(f"{len(failed)} of {len(pending)} cells failed (finished cells are kept; re-run to retry):\n"
                         f"{details}")
    return {"paths": paths, "wall_min": float(run_log.row["wall_min"]), "failed": failed}
