"""How long a robot process waits for a policy: ``load_policy`` in a fresh interpreter, imports included.

``python -m benchmarks.load_speed CHECKPOINT [--repeats 5] [--pythonpath DIR] [--commit | --out PATH]``

Each repeat starts a new Python process (so no module is cached), times ``from policies import load_policy;
load_policy(CHECKPOINT)`` and records which heavy libraries that pulled in (diffusers, pretraining code, training
code). ``--pythonpath`` puts another checkout first (e.g. a worktree of an older commit, for a before/after ratio
in one run on an idle CPU). Prints the median and writes one row per (checkout, repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "load_speed"
PROBE = ("import json, sys, time; t = time.perf_counter(); from policies import load_policy; load_policy(sys.argv[1]); "
         "s = time.perf_counter() - t; heavy = ('diffusers', 'robrep.pretrain', 'policies.train', 'transformers'); "
         "print(json.dumps({'seconds': s, 'modules': len(sys.modules), "
         "'heavy': sorted({h for h in heavy for m in sys.modules if m == h or m.startswith(h + '.')})}))")


def measure(checkpoint: str, pythonpath: str | None) -> dict:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # run from a neutral folder: the current directory would come before PYTHONPATH in the import path
    out = subprocess.run([sys.executable, "-c", PROBE, os.path.abspath(checkpoint)], env=env, capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_speed", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pythonpath", action="append", default=[],
                        help="another checkout to time as well (repeatable); this one is always timed")
    add_output_args(parser, NAME, "results/load_speed.csv")
    args = parser.parse_args(argv)
    rows = []
    for r in range(args.repeats):  # interleaved, so load drifts hit every checkout alike
        for path in [None, *args.pythonpath]:
            m = measure(args.checkpoint, path)
            rows.append({"checkout": path or "this", "repeat": r, "seconds": round(m["seconds"], 3),
                         "modules": m["modules"], "heavy_imports": " ".join(m["heavy"]) or "none"})
    for path in ["this", *args.pythonpath]:
        mine = [x for x in rows if x["checkout"] == path]
        print(f"{path}: load_policy median {statistics.median(x['seconds'] for x in mine):.2f} s over "
              f"{len(mine)} fresh processes, {mine[0]['modules']} modules, heavy imports: {mine[0]['heavy_imports']}")
    out = results.write_csv(rows, output_path(args, NAME, "results/load_speed.csv"),
                            comments=[command(NAME, argv), f"checkpoint {args.checkpoint}; fresh process per repeat"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
