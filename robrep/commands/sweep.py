"""``robrep sweep``: the data-efficiency sweep (arms × N × seeds) end to end, resumable.

1. the demo file (collected if missing) must hold ``train_n<N>_seed<s>`` for every N and seed;
2. each frozen encoder's features are cached once (``cache/features``), before cells start;
3. the cells run as ``robrep cell --multirun arm=… n=… seed=…`` through the Hydra launcher matching ``launcher``;
   a cell whose record exists is skipped, so re-running the command continues an interrupted sweep;
4. every record in ``sweep_dir`` (this run's and earlier runs') becomes ``table.csv``/``table.jsonl`` (one row per cell), ``summary.csv`` (per arm and N:
   pooled success with a Wilson 95 % interval and the spread over seeds), ``paired.csv`` (arm a − arm b on
   shared episodes, paired bootstrap 95 %) and ``success_vs_n.png``/``.svg``.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from robrep import results
from robrep.sweep.table import (cell_path, cell_rows, format_summary, load_cells, noise_floor_by_n, paired_rows,
                                plot_paired, plot_success, summarise)


def sweep_arms(cfg: DictConfig) -> list[str]:
    """The sweep's arms: ``arms`` when given, else ``baselines`` + ``encoders`` (the end-to-end arms first: the
    slowest cells start first, which balances the parallel jobs); each must be a ``configs/arm`` file."""
    from robrep.config import config_dir

    if cfg.get("arms") is not None:
        arms = [str(a) for a in cfg.arms]
    else:
        arms = [str(a) for a in (cfg.get("baselines") or [])] + [str(a) for a in (cfg.get("encoders") or [])]
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


def cell_groups(cfg: DictConfig) -> list[tuple[list[int], list[int]]]:
    """``[(demo counts, seeds)]``: the N values sharing one seed list, in ``demos`` order (one multirun each)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for n in cfg.demos:
        groups.setdefault(tuple(seeds_for(cfg, int(n))), []).append(int(n))
    return [(ns, list(seeds)) for seeds, ns in groups.items()]


def ensure_dataset(cfg: DictConfig) -> Path:
    """The sweep's demo file, collected when missing (in the ``task.visuals`` setting); checks it was rendered
    in that setting and holds every (N, seed) subset."""
    from robrep.collect import collect_demos
    from robrep.data.demo_file import DemoFile, DemoFileError

    path = Path(cfg.dataset)
    demos = sorted(int(n) for n in cfg.demos)
    seeds = sorted({s for n in demos for s in seeds_for(cfg, n)})
    visuals = str(cfg.task.get("visuals", "clean"))
    if not path.exists():
        train_needed = max(demos)
        total = math.ceil(train_needed / (1.0 - float(cfg.collect.valid_fraction))) + 1
        print(f"collecting {total} {cfg.task.name} demos into {path} (N up to {train_needed}, seeds {seeds})")
        collect_demos(cfg.task.name, total, path, image_size=cfg.task.image_size, seed_start=cfg.collect.seed_start,
                      noise_std=cfg.collect.noise_std, subset_sizes=demos, subset_seeds=seeds,
                      valid_fraction=cfg.collect.valid_fraction, progress=cfg.progress, visuals=visuals)
    with DemoFile(path) as f:
        recorded = f.env_args.get("env_kwargs", {}).get("visuals", "clean")
        if recorded != visuals:
            raise DemoFileError(f"{path} was rendered with visuals={recorded}, the sweep asks for "
                                f"task.visuals={visuals}; point dataset= (and name=) at another file for this setting")
        missing = [f"train_n{n}_seed{s}" for n in demos for s in seeds_for(cfg, n)
                   if f"train_n{n}_seed{s}" not in f.filter_keys]
        if missing:
            raise DemoFileError(
                f"{path} lacks the subsets {missing} (it has {len(f.demo_names('train')) if 'train' in f.filter_keys else len(f)} "
                f"train demos); delete it to re-collect, or point dataset= at a file with them")
    return path


def hydra_launcher(cfg: DictConfig) -> list[str]:
    """The Hydra launcher overrides that run the cells the way ``cfg.launcher`` (a ``configs/launcher`` file)
    says: inprocess = Hydra's basic launcher, joblib = ``jobs`` cells at a time, submitit on Slurm =
    ``configs/hydra/launcher/slurm.yaml``; other launchers need the cells as library calls (robrep.launch)."""
    name, cluster = cfg.launcher.get("name"), cfg.launcher.get("cluster")
    if name == "inprocess":
        return []
    if name == "joblib":
        return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={int(cfg.jobs)}"]
    if name == "submitit" and cluster == "slurm":
        return ["hydra/launcher=slurm"]
    raise ValueError(f"robrep sweep runs cells as a Hydra multirun: launcher={name}"
                     f"{f' (cluster={cluster})' if cluster else ''} is not available there; use inprocess, joblib "
                     "or slurm")


def cell_command(cfg: DictConfig, arms: list[str], multirun: bool = True, demos: list[int] | None = None,
                 seeds: list[int] | None = None) -> list[str]:
    """The ``robrep cell --multirun`` command line of the sweep's cells at ``demos`` × ``seeds`` (default: the
    config's; ``multirun=False``: one cell of ``arms[0]`` at the first N and seed, in this process's launcher)."""
    demos = list(cfg.demos) if demos is None else demos
    seeds = list(cfg.seeds) if seeds is None else seeds
    launcher = hydra_launcher(cfg) if multirun else []
    values = (lambda xs: ",".join(str(x) for x in xs)) if multirun else (lambda xs: str(list(xs)[0]))
    return [sys.executable, "-m", "robrep.cli", "cell", *(["--multirun"] if multirun else []),
            f"task={cfg.task.name}", f"task.image_size={cfg.task.image_size}", f"arm={values(arms)}",
            f"n={values(demos)}", f"seed={values(seeds)}", f"episodes={cfg.episodes}", f"dataset={cfg.dataset}",
            f"task.visuals={cfg.task.get('visuals', 'clean')}", f"eval_visuals={cfg.get('eval_visuals') or 'null'}",
            f"policy_dir={cfg.get('policy_dir') or 'null'}",
            f"sweep_dir={cfg.sweep_dir}", f"weights_budget={cfg.weights_budget}", f"num_envs={cfg.num_envs}",
            f"encoder_precision={cfg.get('encoder_precision', 'float32')}",
            f"progress={str(bool(cfg.progress)).lower()}", *cfg.cell_overrides, *launcher]


def cache_features(cfg: DictConfig, arms: list[str]) -> None:
    """Compute each frozen encoder's feature cache once (``robrep cell features_only=true``, one arm after
    another, on ``jobs`` threads) before cells run in parallel; arms without an encoder or with a cache return
    at once."""
    for arm in arms:
        cmd = cell_command(cfg, [arm], multirun=False) + ["features_only=true", f"threads={max(1, int(cfg.jobs))}"]
        if subprocess.run(cmd).returncode:
            raise RuntimeError(f"computing the features of arm {arm!r} failed: {' '.join(cmd[2:])}")


def aggregate(cfg: DictConfig) -> dict[str, Path]:
    """Table, summary, paired differences and plot of every finished cell in ``sweep_dir`` (also cells of
    earlier runs with other arms, N or seeds: the directory holds one growing table)."""
    records = load_cells(cfg.sweep_dir)
    arms = sorted({str(r["arm"]) for r in records})
    if not records:
        raise RuntimeError(f"no finished cells under {cfg.sweep_dir}/cells")
    out = Path(cfg.sweep_dir)
    command = [results.command_line(program="robrep sweep"),
               "rows cover every cell in this directory, whichever invocation made it: runs.csv lists the invocations "
               "and each cell's record (cells/*.json) names its robrep cell command"]
    paths = {"table": results.write_csv(cell_rows(records), out / "table.csv", comments=command),
             "jsonl": results.write_jsonl(records, out / "table.jsonl")}
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
    print(format_summary(summary))
    floor = noise_floor_by_n(summary)
    if floor:
        paths["noise_floor"] = results.write_csv(floor, out / "noise_floor.csv", comments=command)
    for f in floor:
        print(f"noise floor at N={f['n']} (same cell, other training seeds): seed std median {f['median_seed_std']:.2f}, "
              f"max {f['max_seed_std']:.2f}; range median {f['median_seed_range']:.2f}, max {f['max_seed_range']:.2f} "
              f"({f['widest_arm']})")
    for p in paired:
        print(f"{p['a']} − {p['b']} at N={p['n']}: {p['diff']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] "
              f"({p['seeds']} seeds × {p['episodes']} episodes, paired bootstrap 95 %)")
    return paths


def log_run(cfg: DictConfig, started: float, wall_s: float, cells: int, done_before: int, done_after: int) -> float:
    """Append this invocation to ``<sweep_dir>/runs.csv`` (start time UTC, wall minutes, cells finished by it, jobs,
    command) — a resumed sweep's total wall time is the sum over its rows — and return that total in minutes."""
    path = Path(cfg.sweep_dir) / "runs.csv"
    rows = results.read_csv(path) if path.exists() else []
    rows.append({"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                 "wall_min": round(wall_s / 60.0, 2), "cells": cells, "done_before": done_before,
                 "finished_here": done_after - done_before, "jobs": int(cfg.jobs),
                 "command": results.command_line(program="robrep sweep")})
    results.write_csv(rows, path, comments=["one row per `robrep sweep` invocation on this sweep_dir (resumes add rows)"])
    return sum(float(r["wall_min"]) for r in rows)


def run(cfg: DictConfig) -> None:
    t0, started = time.perf_counter(), time.time()
    arms = sweep_arms(cfg)
    hydra_launcher(cfg)  # an unsupported launcher fails here, before any collection
    ensure_dataset(cfg)
    groups = cell_groups(cfg)
    cells = [(a, n, s) for ns, seeds in groups for a in arms for n in ns for s in seeds]
    pending = [c for c in cells if not cell_path(cfg.sweep_dir, *c).exists()]
    layout = "; ".join(f"N {ns} × seeds {seeds}" for ns, seeds in groups)
    print(f"sweep {cfg.name}: {len(cells)} cells ({len(arms)} arms × {layout}), {len(cells) - len(pending)} already done")
    if pending:
        cache_features(cfg, sorted({a for a, _, _ in pending}))
        for ns, seeds in groups:
            todo = [c for c in pending if c[1] in ns]
            if not todo:
                continue
            cmd = cell_command(cfg, sorted({a for a, _, _ in todo}, key=arms.index), demos=ns, seeds=seeds)
            print("$ " + " ".join(cmd[2:]).replace("robrep.cli", "robrep", 1))
            proc = subprocess.run(cmd)
            if proc.returncode:
                print(f"some cells failed (exit {proc.returncode}); finished cells are kept — re-run to retry",
                      file=sys.stderr)
    paths = aggregate(cfg)
    wall = time.perf_counter() - t0
    total = log_run(cfg, started, wall, len(cells), len(cells) - len(pending),
                    sum(cell_path(cfg.sweep_dir, *c).exists() for c in cells))
    print(f"sweep wall time {wall / 60:.1f} min (all runs on {cfg.sweep_dir}: {total:.1f} min, "
          f"{Path(cfg.sweep_dir) / 'runs.csv'})")
    for k, p in paths.items():
        print(f"{k}: {p}")
