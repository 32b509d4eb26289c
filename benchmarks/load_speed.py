"""How long a robot process waits for a policy: ``load_policy`` in a fresh interpreter, imports included.

``python -m benchmarks.load_speed CHECKPOINT [CHECKPOINT ...] [--repeats 5] [--pythonpath DIR] [--commit | --out PATH]``

Each repeat starts a new Python process (so no module is cached), times ``import torch`` (which any PyTorch robot
process already pays), then ``from policies import load_policy; load_policy(CHECKPOINT)``, and splits the second
into its third-party part — the model libraries the load imported, timed alone after torch in another fresh process:
timm (which imports torchvision, whose ``ops`` import ``torch._dynamo``) for the ViT families, diffusers (which
imports ``torch._dynamo`` and, through its quantizer and LoRA modules, Hugging Face transformers when installed) for
DIFT — and the rest (robrep's modules, the checkpoint read, building the model). It records which heavy libraries
the load pulled in (diffusers, pretraining code, training code). ``--pythonpath`` puts another checkout first (e.g. a
worktree of an older commit, for a before/after ratio in one run on an idle CPU). Prints the medians and writes one row
per (checkpoint, checkout, repeat).
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
PROBE = """
import json, sys, time
t0 = time.perf_counter(); import torch
t1 = time.perf_counter(); from policies import load_policy; policy = load_policy(sys.argv[1])
t2 = time.perf_counter()
heavy = ('diffusers', 'robrep.pretrain', 'policies.train', 'transformers')
print(json.dumps({'torch_s': t1 - t0, 'seconds': t2 - t1, 'modules': len(sys.modules),
                  'libraries': [lib for lib in ('timm', 'diffusers') if lib in sys.modules],
                  'dynamo': 'torch._dynamo' in sys.modules,
                  'heavy': sorted({h for h in heavy for m in sys.modules if m == h or m.startswith(h + '.')})}))
"""
#: The third-party share of a load: the model libraries it imported (timm: ViT families; diffusers: DIFT, the
#: modules its encoder uses), after torch, in a fresh process.
LIBRARY_IMPORTS = {"timm": "import timm", "diffusers": "from diffusers import DDPMScheduler, UNet2DModel"}


def library_probe(libraries: list[str]) -> str:
    """A probe timing ``libraries``' imports after ``import torch``."""
    imports = "; ".join(LIBRARY_IMPORTS[lib] for lib in libraries)
    return (f"import json, time, torch; t = time.perf_counter(); {imports}; "
            "print(json.dumps({'seconds': time.perf_counter() - t}))")


def measure(checkpoint: str | None, pythonpath: str | None, probe: str = PROBE) -> dict:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # run from a neutral folder: the current directory would come before PYTHONPATH in the import path
    args = [os.path.abspath(checkpoint)] if checkpoint else []
    out = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_speed", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", metavar="checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pythonpath", action="append", default=[],
                        help="another checkout to time as well (repeatable); this one is always timed")
    add_output_args(parser, NAME, "results/load_speed.csv")
    args = parser.parse_args(argv)
    rows, load = [], os.getloadavg()
    for r in range(args.repeats):  # interleaved, so load drifts hit every checkout alike
        for checkpoint in args.checkpoints:
            for path in [None, *args.pythonpath]:
                m = measure(checkpoint, path)
                libs = m.get("libraries", ["timm"] if m.get("timm") else [])
                lib_s = measure(None, path, library_probe(libs))["seconds"] if libs else 0.0
                rows.append({"checkpoint": os.path.basename(checkpoint), "checkout": path or "this", "repeat": r,
                             "seconds": round(m["seconds"], 3),
                             "torch_import_s": round(m.get("torch_s", float("nan")), 3),
                             "libraries": " ".join(libs) or "none", "library_import_s": round(lib_s, 3),
                             "rest_s": round(m["seconds"] - lib_s, 3), "dynamo_imported": bool(m.get("dynamo")),
                             "modules": m["modules"], "heavy_imports": " ".join(m["heavy"]) or "none"})
    for checkpoint in dict.fromkeys(x["checkpoint"] for x in rows):
        for path in ["this", *args.pythonpath]:
            mine = [x for x in rows if x["checkout"] == path and x["checkpoint"] == checkpoint]
            med = {k: statistics.median(x[k] for x in mine)
                   for k in ("seconds", "torch_import_s", "library_import_s", "rest_s")}
            print(f"{checkpoint} ({path}): load_policy median {med['seconds']:.2f} s after `import torch` "
                  f"({med['torch_import_s']:.2f} s) over {len(mine)} fresh processes: {mine[0]['libraries']} "
                  f"{med['library_import_s']:.2f} s (torch._dynamo imported: {mine[0]['dynamo_imported']}), the rest "
                  f"{med['rest_s']:.2f} s; {mine[0]['modules']} modules, heavy imports: {mine[0]['heavy_imports']}")
    out = results.write_csv(rows, output_path(args, NAME, "results/load_speed.csv"),
                            comments=[command(NAME, argv), "fresh process per repeat; library_import_s: the libraries "
                                      "the load imported, after torch, timed alone in another fresh process",
                                      "load average before / after: " + " ".join(f"{x:.2f}" for x in load) + " / " +
                                      " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
