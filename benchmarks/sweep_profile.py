"""Where a sweep's time went, measured from what the sweep itself recorded (not a prediction: see
``benchmarks.sweep_cost`` for that).

``python -m benchmarks.sweep_profile results/sweeps/push_fair [more sweep dirs] [--commit | --out PATH]``

Per sweep directory and arm, in seconds of one worker (a cell or a tuning training runs on one core; feature caching
runs in the sweep's main process on ``jobs`` threads, so its seconds are wall seconds on all cores):

- ``cache``: each frozen encoder's feature cache over the sweep's dataset (``seconds`` attribute of the cache files in
  ``--cache-dir`` whose ``dataset_hash`` is the one the cells record);
- ``tune``: the lr × weight-decay trainings on the valid demos that no cell reuses (``train.seconds`` of the policy
  checkpoints under ``runs/sweeps/<name>/policies`` that no cell record names; the grid point a cell reuses is
  counted once, under ``train``);
- ``train``: each cell's policy training (its record's ``train_seconds``);
- ``eval_policy`` / ``eval_env``: each cell's evaluation split into the policy's share (encoder + head,
  ``policy_s``) and the rest (simulator, renderer, bookkeeping).

``share`` is each row's part of the sweep's total seconds; ``runs.csv`` (the sum of its ``wall_min``) is the
measured wall time beside it. Rows are written for every arm found, so two sweep directories give the before/after
of a change as two blocks of one table.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "sweep_profile"
COMMITTED = "results/sweep_profile.csv"
PHASES = ("cache", "tune", "train", "eval_policy", "eval_env")


def cell_records(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((sweep_dir / "cells").glob("*.json"))]


def cache_seconds(cache_dir: Path, dataset_hashes: set[str]) -> dict[str, float]:
    """Seconds per feature cache of the sweep's dataset (``dataset_hash`` matched), labelled
    ``<encoder name>.<cache key>`` (a pretrained encoder and its random init are two caches)."""
    import h5py

    out: dict[str, float] = defaultdict(float)
    for path in sorted(cache_dir.glob("*.features.hdf5")):
        try:
            with h5py.File(path, "r") as f:
                attrs = dict(f.attrs)
        except OSError:
            continue
        if str(attrs.get("dataset_hash")) in dataset_hashes and attrs.get("complete"):
            out[f"{attrs.get('encoder_name')}.{attrs.get('key')}"] += float(attrs.get("seconds", 0.0))
    return out


def tuning_seconds(policy_dir: Path, used_keys: set[str]) -> dict[str, tuple[int, float]]:
    """``{arm: (trainings, seconds)}`` of policies in ``policy_dir`` that no cell record names (``<cell>_<key>.pt``)."""
    from policies.checkpoint import read_policy_checkpoint

    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for path in sorted(policy_dir.glob("*.pt")):
        key = path.stem.rsplit("_", 1)[-1]
        if key in used_keys:
            continue
        arm = path.stem.split("_n", 1)[0]
        out[arm][0] += 1
        out[arm][1] += float(read_policy_checkpoint(path)["train"]["seconds"])  # hash-checked, no pickle
    return {a: (int(v[0]), v[1]) for a, v in out.items()}


def profile(sweep_dir: Path, cache_dir: Path, policy_root: Path) -> list[dict]:
    """Rows ``sweep, arm, phase, items, seconds, share`` for one sweep directory (see the module docstring)."""
    cells = cell_records(sweep_dir)
    if not cells:
        raise SystemExit(f"{sweep_dir}: no cell records under cells/")
    secs: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])

    def add(arm: str, phase: str, items: int, seconds: float) -> None:
        secs[(arm, phase)][0] += items
        secs[(arm, phase)][1] += seconds

    for c in cells:
        add(c["arm"], "train", 1, float(c.get("train_seconds") or 0.0))
        policy = float(c.get("policy_s") or 0.0)
        add(c["arm"], "eval_policy", 1, policy)
        add(c["arm"], "eval_env", 1, float(c["eval_seconds"]) - policy)
    hashes = {str(c["dataset_hash"]) for c in cells if c.get("dataset_hash")}
    for encoder, seconds in cache_seconds(cache_dir, hashes).items():
        add(f"cache:{encoder}", "cache", 1, seconds)
    policy_dir = policy_root / sweep_dir.name / "policies"
    if policy_dir.is_dir():
        used = {str(c["policy_key"]) for c in cells if c.get("policy_key")}
        for arm, (n, seconds) in tuning_seconds(policy_dir, used).items():
            add(arm, "tune", n, seconds)
    total = sum(v[1] for v in secs.values())
    runs = results.read_csv(sweep_dir / "runs.csv") if (sweep_dir / "runs.csv").exists() else []
    wall_min = round(sum(float(r["wall_min"]) for r in runs), 2)
    rows = [{"sweep": sweep_dir.name, "arm": arm, "phase": phase, "items": int(v[0]), "seconds": round(v[1], 1),
             "share": round(v[1] / total, 4), "cells_recorded": len(cells), "runs_wall_min": wall_min}
            for (arm, phase), v in sorted(secs.items(), key=lambda kv: (PHASES.index(kv[0][1]), kv[0][0]))]
    return rows


def phase_totals(rows: list[dict]) -> list[dict]:
    """Per sweep and phase: seconds and share summed over arms."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        out[(r["sweep"], r["phase"])] += float(r["seconds"])
    totals: dict[str, float] = defaultdict(float)
    for (sweep, _), s in out.items():
        totals[sweep] += s
    return [{"sweep": sw, "phase": ph, "seconds": round(s, 1), "share": round(s / totals[sw], 4)}
            for (sw, ph), s in out.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/features"))
    parser.add_argument("--policy-root", type=Path, default=Path("runs/sweeps"))
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    rows = [r for d in args.sweep_dirs for r in profile(d, args.cache_dir, args.policy_root)]
    for t in phase_totals(rows):
        print(f"{t['sweep']:<14} {t['phase']:<12} {t['seconds'] / 3600:7.2f} h of one worker  {100 * t['share']:5.1f} %")
    for d in args.sweep_dirs:
        r = next(r for r in rows if r["sweep"] == d.name)
        print(f"{d.name}: {r['cells_recorded']} cells recorded, runs.csv wall {r['runs_wall_min']} min")
    out = output_path(args, NAME, COMMITTED)
    results.write_csv(rows, out, comments=[command(NAME, argv),
                                           "seconds of one worker per (sweep, arm, phase); see benchmarks/sweep_profile.py"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
