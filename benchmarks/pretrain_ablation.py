"""Pretraining ablation: which levers make frozen in-domain features carry the task state?

For every variant of ``configs/ablation/<family>.yaml`` (mask ratio, loss on visible patches, patch
size, image size, foreground weighting, a next-frame dynamics objective, pretraining length, ...):
``robrep pretrain`` for the variant's budget, then ``robrep probe`` (ridge, N = 10 / 50) on held-out
push and pick-place demos. Writes one probe CSV per (variant, task) under ``out_dir`` and a summary
CSV (one row per variant × task × readout: R² per position variable at ``probe_n`` demos, the worst
of them, pretraining minutes and steps) to ``summary``. Both paths are the config's under results/ with
``--commit`` (the committed reference); by default their ``results/`` becomes runs/benchmarks/pretrain_ablation/
(``--out DIR``: becomes DIR), e.g. runs/benchmarks/pretrain_ablation/ablation_mae.csv and .../ablation/mae/.

Resumable: a variant's checkpoint or probe CSV that already exists is reused, so re-running the same
command after an interruption only does what is missing. ``--jobs 2`` runs two variants at a time
(one torch thread each).

    python -m benchmarks.pretrain_ablation --config mae --jobs 2 [--commit | --out DIR]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks._output import RUNS, command, rebase
from robrep import results
from robrep.config import config_dir
from robrep.encoders.checkpoint import read_checkpoint
from robrep.readouts import SPATIAL_READOUTS

NAME = "pretrain_ablation"
ROBREP = [sys.executable, "-m", "robrep.cli"]
SUMMARY_COLUMNS = ("variant", "task", "readout", "n_demos", "gripper_pos", "block_pos", "goal_pos", "worst_pos",
                   "baseline_best_worst", "pretrain_minutes", "pretrain_steps", "final_loss", "overrides")


def _run(args: list[str], log: Path) -> None:
    """Run ``robrep <args>``; its output goes to ``log``; a failure raises with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("$ robrep " + " ".join(args) + "\n")
        f.flush()
        proc = subprocess.run(ROBREP + args, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"robrep {args[0]} failed ({proc.returncode}); log {log}:\n" + "\n".join(tail))


def variant_overrides(spec, cfg) -> list[str]:
    """The config's shared ``overrides`` (keys the variant sets itself are dropped), then the variant's."""
    own = [str(o) for o in spec.get("overrides", [])]
    keys = {o.split("=", 1)[0] for o in own}
    return [str(o) for o in cfg.get("overrides", []) if str(o).split("=", 1)[0] not in keys] + own


def run_variant(name: str, spec, cfg) -> str:
    """Pretrain (unless the checkpoint exists) and probe one variant on every probe task."""
    overrides = variant_overrides(spec, cfg)
    weights = Path(spec.get("weights") or Path(cfg.weights_dir) / f"{name}.pt")
    log = Path(cfg.weights_dir) / f"{name}.log"
    t0 = time.perf_counter()
    if not weights.exists():
        data = list(spec.get("data", cfg.data))
        budget = spec.get("budget_minutes", cfg.budget_minutes)
        _run(["pretrain", f"encoder={cfg.family}", *overrides, *spec.get("pretrain_overrides", []), f"data=[{','.join(data)}]",
              f"budget_minutes={budget}", f"threads={cfg.threads}", f"out={weights}", "progress=false"], log)
    probe_data = dict(spec.get("probe_data", cfg.probe_data))
    baselines = bool(spec.get("baselines", False))
    for task, dataset in probe_data.items():
        out = Path(cfg.out_dir) / f"{name}_{task}.csv"
        if out.exists():
            continue
        _run(["probe", f"encoder={cfg.family}", *overrides, f"weights={weights}", f"dataset={dataset}",
              *cfg.probe_args, f"baselines={str(baselines).lower()}", f"gate={str(baselines).lower()}",
              f"threads={cfg.threads}", f"out={out}", "progress=false"], log)
    return f"{name}: done in {(time.perf_counter() - t0) / 60:.1f} min"


def _r2(row: dict) -> float:
    return float(row["r2"]) if row["r2"] not in ("", None) else math.nan


def summarise(cfg) -> list[dict]:
    """One row per variant × task × spatial readout at ``probe_n`` demos (ridge). A variant whose checkpoint
    is gone (they are not committed) keeps the pretraining minutes/steps/loss of the summary already written."""
    rows, n = [], int(cfg.probe_n)
    summary = Path(cfg.summary)
    earlier = {(r["variant"], r["task"], r["readout"]): r for r in results.read_csv(summary)} if summary.exists() else {}
    baseline_worst: dict[str, float] = {}
    for name, spec in cfg.variants.items():
        weights = Path(spec.get("weights") or Path(cfg.weights_dir) / f"{name}.pt")
        meta = read_checkpoint(weights).get("meta", {}) if weights.exists() else {}
        for task in dict(spec.get("probe_data", cfg.probe_data)):
            path = Path(cfg.out_dir) / f"{name}_{task}.csv"
            if not path.exists():
                continue
            probe = [r for r in results.read_csv(path) if r["probe"] == "ridge" and int(r["n_demos"]) == n]
            for encoder in sorted({r["encoder"] for r in probe}):
                for readout in ("mean", "flat", "spatial_softmax"):
                    sel = {r["variable"]: _r2(r) for r in probe if r["encoder"] == encoder and r["readout"] == readout}
                    pos = {k: v for k, v in sel.items() if k.endswith("_pos") and not math.isnan(v)}
                    if not pos:
                        continue
                    label = name if encoder == cfg.family else f"{name}:{encoder.replace(cfg.family + '_', '')}"
                    if encoder != cfg.family:
                        key = f"{task}/{encoder.replace(cfg.family + '_', '')}"
                        baseline_worst[key] = max(baseline_worst.get(key, -math.inf), min(pos.values()))
                    rows.append({
                        "variant": label, "task": task, "readout": readout, "n_demos": n,
                        **{v: f"{pos.get(v, math.nan):.3f}" for v in ("gripper_pos", "block_pos", "goal_pos")},
                        "worst_pos": f"{min(pos.values()):.3f}", "baseline_best_worst": "",
                        "pretrain_minutes": f"{meta.get('seconds', math.nan) / 60:.1f}" if meta and encoder == cfg.family else "",
                        "pretrain_steps": meta.get("steps", "") if encoder == cfg.family else "",
                        "final_loss": f"{meta['final_loss']:.4f}" if meta and encoder == cfg.family else "",
                        "overrides": " ".join(variant_overrides(spec, cfg)),
                    })
                    if not meta and encoder == cfg.family:
                        kept = earlier.get((label, task, readout), {})
                        rows[-1].update({k: kept.get(k, "") for k in ("pretrain_minutes", "pretrain_steps", "final_loss")})
    for row in rows:
        best = [v for k, v in baseline_worst.items() if k.startswith(row["task"] + "/")]
        row["baseline_best_worst"] = f"{max(best):.3f}" if best else ""
    return rows


def load_config(name: str):
    """``configs/ablation/<name>.yaml`` (by name) or the YAML file at path ``name``."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(config_dir()) / "ablation" / f"{name}.yaml"
    return OmegaConf.load(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="mae",
                        help="configs/ablation/<name>.yaml by name, or a YAML path (default: mae)")
    parser.add_argument("--jobs", type=int, default=2, help="variants run at a time")
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--commit", action="store_true",
                       help="write the config's out_dir and summary (the committed reference under results/)")
    group.add_argument("--out", default=None, metavar="DIR", help="folder in place of the config's results/ "
                       "(default runs/benchmarks/pretrain_ablation)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    root = args.out or (None if args.commit else RUNS / NAME)
    cfg.out_dir, cfg.summary = str(rebase(cfg.out_dir, root)), str(rebase(cfg.summary, root))
    names = [v for v in cfg.variants if not args.only or v in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(cfg.variants) if args.only else set()
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {list(cfg.variants)}")
    t0 = time.perf_counter()
    for path, collect_args in dict(cfg.get("collect", {})).items():  # the shared data files, made once if missing
        if not Path(path).exists():
            _run(["collect", *map(str, collect_args), f"out={path}", "progress=false"], Path("logs/ablation_collect.log"))
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {name: pool.submit(run_variant, name, cfg.variants[name], cfg) for name in names}
        failed = []
        for name, fut in futures.items():
            try:
                print(fut.result(), flush=True)
            except Exception as exc:  # keep the other variants going; report at the end
                failed.append(name)
                print(f"{name}: FAILED: {exc}", flush=True)
    rows = summarise(cfg)
    line = command(NAME, argv)
    before = results.read_csv_comments(cfg.summary) if Path(cfg.summary).exists() else []
    path = results.write_csv(rows, cfg.summary, comments=list(dict.fromkeys([*before, line])))
    print(f"{len(rows)} rows -> {path} ({(time.perf_counter() - t0) / 60:.1f} min)")
    for r in rows:
        if r["readout"] in SPATIAL_READOUTS:
            print(f"{r['variant']:<22} {r['task']:<11} {r['readout']:<9} grip {r['gripper_pos']} block {r['block_pos']} "
                  f"goal {r['goal_pos']} worst {r['worst_pos']} (baselines {r['baseline_best_worst']}) "
                  f"{r['pretrain_minutes']} min {r['pretrain_steps']} steps")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
