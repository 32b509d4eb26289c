"""What a newcomer waits for: install, test suite and main job, timed from a clean clone on this machine.

``python -m benchmarks.costs [--what install,tests,quickstart] [--clone DIR] [--emulate-avx2] [--commit]``

1. ``install``: ``git clone`` of the repository into ``DIR`` (a new temporary folder by default), then
   ``bash scripts/setup.sh`` there — wall minutes and the size of its ``.venv`` (GB);
2. ``tests``: the README's test command there (``.venv/bin/python -m pytest -q``), ``CI=true``;
3. ``quickstart``: the README's main job there (``.venv/bin/robrep quickstart``), after removing the clone's
   ``runs/``, ``data/`` and ``cache/`` (outputs of an earlier step or run), as on a first run.

Each step's row (``cpu``, ``native_bf16``, ``what``, ``minutes``, ``size_gb``, ``command``, ``date``) replaces the
row of the same CPU kind and step in ``costs.csv`` (``--commit``: ``results/costs.csv``, which
``python -m benchmarks.report`` renders into README.md). ``--emulate-avx2`` runs tests and main job with torch and
oneDNN capped at AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``): on a bf16 CPU this
measures what a CPU without native bf16 would do (``encoder_precision=auto`` then resolves to float32); the row's
``cpu`` says "emulated". Steps run one after another on an otherwise idle machine; a failing step stops the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "costs"
STEPS = ("install", "tests", "quickstart")
AVX2_CAP = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
COLUMNS = ("cpu", "native_bf16", "what", "minutes", "size_gb", "command", "date")


def cpu_kind(emulate_avx2: bool) -> str:
    """``<model name>, <cores> cores (<bf16 ISA or 'no native bf16'>)``, marked when AVX2 is emulated."""
    model = platform.processor() or "cpu"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "cpu", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "+".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "no native bf16"
    kind = f"{model}, {os.cpu_count()} cores ({isa})"
    return f"{kind}, emulated AVX2-only (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)" if emulate_avx2 else kind


def dir_size_gb(path: Path) -> float:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1e9


def timed(cmd: str, cwd: Path, env: dict[str, str]) -> float:
    """Run ``cmd`` in a shell in ``cwd``; wall minutes; raises when it fails."""
    print(f"$ {cmd}   (in {cwd})", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, cwd=cwd, env=env, check=True)
    return (time.perf_counter() - t0) / 60.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.costs", description=__doc__.splitlines()[0])
    parser.add_argument("--what", default=",".join(STEPS), help=f"comma-separated steps of {STEPS}")
    parser.add_argument("--clone", type=Path, default=None, help="clone folder (default: a new temporary one); "
                        "an existing clone with its .venv skips nothing but re-runs setup (idempotent)")
    parser.add_argument("--repo", default=str(Path.cwd()), help="repository to clone (default: this one)")
    parser.add_argument("--emulate-avx2", action="store_true", help="cap torch/oneDNN kernels at AVX2")
    add_output_args(parser, NAME, "results/costs.csv")
    args = parser.parse_args(argv)
    steps = [s for s in args.what.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {STEPS}")
    from robrep.precision import native_bf16

    env = {**os.environ, "CI": "true", **(AVX2_CAP if args.emulate_avx2 else {})}
    out = output_path(args, NAME, "results/costs.csv")
    clone = args.clone or Path(tempfile.mkdtemp(prefix="robrep-costs-")) / "robrep"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
    kind = cpu_kind(args.emulate_avx2)
    if args.emulate_avx2:
        os.environ.update(AVX2_CAP)  # this process only exits after the run; native_bf16 reads the cap
    bf16 = native_bf16("cpu")
    commands = {"install": "bash scripts/setup.sh", "tests": ".venv/bin/python -m pytest -q",
                "quickstart": ".venv/bin/robrep quickstart"}
    rows = results.read_csv(out) if out.exists() else []
    runs = [c for c in (results.read_csv_comments(out) if out.exists() else []) if c.startswith("python -m benchmarks")]
    runs = list(dict.fromkeys([*runs, command(NAME, argv)]))  # every invocation that made a row
    for step in steps:
        if step == "quickstart":  # a newcomer's first run: no demos, caches or finished cells from an earlier one
            for folder in ("runs", "data", "cache"):
                shutil.rmtree(clone / folder, ignore_errors=True)
        minutes = timed(commands[step], clone, env)
        size = f"{dir_size_gb(clone / '.venv'):.2f}" if step == "install" else ""
        row = {"cpu": kind, "native_bf16": int(bf16), "what": step, "minutes": f"{minutes:.1f}", "size_gb": size,
               "command": commands[step], "date": time.strftime("%Y-%m-%d")}
        rows = [r for r in rows if (r["cpu"], r["what"]) != (kind, step)] + [row]
        results.write_csv([{c: r.get(c, "") for c in COLUMNS} for r in rows], out,
                          comments=[*runs, "one row per (CPU kind, step): wall minutes from a clean clone, one step "
                                    "after another on an otherwise idle machine"])
        print(f"{step}: {minutes:.1f} min" + (f", .venv {size} GB" if size else "") + f" -> {out}", flush=True)


if __name__ == "__main__":
    main()
