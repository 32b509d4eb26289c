"""Per-frame latency a roboticist can quote: one 96 × 96 frame (batch 1) through a policy — encoder, readout and head —
in eager PyTorch, TorchScript and ONNX Runtime, on one and two threads, per encoder family; and ``load_policy`` time
in a fresh interpreter (imports included, ``import torch`` alone, and the call alone), and the exported ONNX
file's load with onnxruntime alone (the deployed route: no torch).

``python -m benchmarks.policy_latency [--families mae dift voltron clip cnn] [--policies FAMILY=PATH ...]
[--frames 200] [--int8] [--openvino] [--commit | --out PATH]``

Each family's policy is trained for a few steps on a small push demo file (timing does not depend on the weights
of the head) unless ``--policies`` names a checkpoint for it; the encoder loads ``weights/<family>_full.pt`` where
present. Runtimes: ``eager`` (``Policy.act`` under ``torch.inference_mode`` at the precision the policy was trained
with — ``auto``: bfloat16 on CPUs that compute it natively), ``eager_float32`` (the same in float32), ``torchscript``
and ``onnx`` (the exported files, float32; ``robrep export``'s defaults), with ``--int8``, ``onnx_int8`` (the
opt-in lossy ``quantize=int8`` file) and, with ``--openvino``, ``openvino`` (the float32 ONNX file in OpenVINO's CPU
plugin at the precision it picks here: bfloat16 on CPUs that compute it natively, like ``eager``). Reports p50 / p99
milliseconds per frame over ``--frames`` calls after 10 warm-up calls — the runtimes interleaved in 5 rounds so that load drifting during the run hits all alike — and the
speed-up of each runtime over ``eager`` and over ``eager_float32`` at the same thread count. The output names the
CPU, its vector flags and its load average before and after: run on an idle CPU (a busy one inflates absolute
times and, with two threads, penalises runtimes that spin-wait); on a busy one only the ratios mean something.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "policy_latency"
COMMITTED = "results/policy_latency.csv"
ROUNDS = 5
LOAD_REPEATS = 3  # fresh interpreters per family for the load times (their median)


def percentiles(fns: dict[str, Callable[[], Any]], frames: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 milliseconds of each ``fn()`` over ``frames`` calls after 10 warm-up calls, the functions
    interleaved in :data:`ROUNDS` rounds (each round times every function in turn)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(10):
            fn()
    per_round = max(1, frames // ROUNDS)
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                times[name].append(1000 * (time.perf_counter() - t))
    return {name: (float(np.percentile(v, 50)), float(np.percentile(v, 99))) for name, v in times.items()}


def load_seconds(checkpoint: Path) -> tuple[float, float, float]:
    """In a fresh interpreter: wall seconds of ``import torch; from policies.policy import load_policy;
    load_policy(path)``, of the ``load_policy`` call alone (after the import), and of ``import torch`` alone."""
    code = ("import time; t = time.perf_counter(); import torch; i = time.perf_counter(); "
            "from policies.policy import load_policy; c = time.perf_counter(); "
            f"load_policy({str(checkpoint)!r}); e = time.perf_counter(); print(e - t, e - c, i - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    total, call, torch_import = out.stdout.strip().splitlines()[-1].split()
    return float(total), float(call), float(torch_import)


def onnx_load_seconds(path: Path) -> float:
    """Wall seconds, in a fresh interpreter, of ``import onnxruntime`` and opening the exported file: the load of a
    deployed policy (no torch)."""
    code = ("import time; t = time.perf_counter(); import onnxruntime as ort; "
            f"ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider']); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return float(out.stdout.strip().splitlines()[-1])


def cpu_description() -> list[str]:
    """Comment lines naming the CPU, its vector / matrix flags, the core count and the load average now."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if model != "unknown CPU" and flags:
                break
    except OSError:
        pass
    wanted = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")) or f in ("sse4_2", "f16c"))
    return [f"{model}, {os.cpu_count()} logical cores; flags: {' '.join(wanted) or 'unknown'}", load_line()]


def load_line() -> str:
    """The 1 / 5 / 15-minute load average and whether the CPU looks idle (1-minute load below 0.3)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    idle = "idle" if one < 0.3 else "NOT idle: absolute times are inflated, compare ratios only"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({idle})"


def make_policy(family: str, demos: Path, root: Path) -> Path:
    """A policy checkpoint of ``family`` (``cnn``: the from-scratch CNN) trained a few steps on ``demos``."""
    from omegaconf import OmegaConf

    from policies import EncoderSpec, train_policy
    from robrep.config import compose

    out = root / f"{family}.pt"
    if out.exists():
        return out
    arm = "cnn" if family == "cnn" else family
    cfg = compose("train", [f"policy={'cnn' if arm == 'cnn' else 'mlp'}", f"encoder={'mae' if arm == 'cnn' else arm}"])
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    policy["train"].update({"steps": 20, "evals": None, "eval_every": 10, "min_steps": 1})
    spec = None if arm == "cnn" else EncoderSpec.from_cfg(cfg)
    train_policy(policy, demos, 5, 0, out, spec, cache_dir=root / "cache")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["mae", "dift", "voltron", "clip", "cnn"])
    parser.add_argument("--policies", nargs="*", default=[], metavar="FAMILY=PATH",
                        help="use these policy checkpoints instead of training a small one for the family")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--int8", action="store_true", help="also time the opt-in lossy quantize=int8 ONNX file")
    parser.add_argument("--openvino", action="store_true",
                        help="also time the float32 ONNX file in OpenVINO (the deploy extra), at the precision it "
                             "picks for this CPU (bfloat16 where native)")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    given = dict(p.split("=", 1) for p in args.policies)

    from policies.export import Runner, export_policy
    from policies.policy import load_policy
    from robrep.data.collect import collect_demos

    header = cpu_description()
    for line in header:
        print(line, flush=True)
    root = Path("runs/benchmarks/policy_latency")
    root.mkdir(parents=True, exist_ok=True)
    demos = root / "push_demos.hdf5"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    check = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    rows, checkpoints = [], {}
    for family in args.families:
        if family in given:
            checkpoints[family] = Path(given[family])
        else:
            if not demos.exists():
                collect_demos("push", 6, demos, image_size=96, subset_sizes=(5,), subset_seeds=(0,), progress=False)
            checkpoints[family] = make_policy(family, demos, root)
    # load times first, median of LOAD_REPEATS fresh interpreters, before this process starts any runtime's threads
    # (onnxruntime's and OpenMP's spin-waiting threads slowed a child's load from 1.4 to 2.5 s on this 2-core CPU)
    loads = {family: [statistics.median(v) for v in zip(*(load_seconds(ckpt) for _ in range(LOAD_REPEATS)))]
             for family, ckpt in checkpoints.items()}
    for family, ckpt in checkpoints.items():
        formats = [("torchscript", ".ts", None), ("onnx", ".onnx", None)] + ([("onnx", ".int8.onnx", "int8")]
                                                                          if args.int8 else [])
        files = {}
        for fmt, ext, q in formats:
            p = load_policy(ckpt)  # a language-conditioned policy: its recorded instruction baked into the file
            files["onnx_int8" if q else fmt] = export_policy(p, root / f"{family}{ext}", fmt, check, quantize=q,
                                                             instruction=p.meta.get("instruction") if p.uses_language
                                                             else None)
        load_s, call_s, torch_s = loads[family]
        onnx_load_s = onnx_load_seconds(files["onnx"]["path"])
        for threads in args.threads:
            torch.set_num_threads(threads)
            policy, policy32 = load_policy(ckpt), load_policy(ckpt)
            if policy32.encoder is not None:
                policy32.encoder.set_precision("float32")
            policy32.meta["policy_config"] = {**policy32.meta["policy_config"],
                                              "train": {**policy32.meta["policy_config"]["train"],
                                                        "precision": "float32"}}
            proprio = np.zeros((1, policy.model.proprio_dim), np.float32)

            def eager(p=None) -> Callable[[], Any]:
                def step() -> None:
                    with torch.inference_mode():
                        p.reset_env(0)
                        p.act({"image": image, "proprio": proprio})
                p.reset(1)
                return step

            fns = {"eager": eager(policy), "eager_float32": eager(policy32)}
            for name, report in files.items():
                fns[name] = (lambda run=Runner(report["path"], threads=threads): run(image, proprio))
            precision = {"eager": policy.meta["policy_config"]["train"].get("precision", "float32"),
                         "eager_float32": "float32", "onnx_int8": "int8 weights (lossy)"}
            diffs = {name: f"{report['max_abs_diff']:.1e}" for name, report in files.items()}
            zeros = np.zeros((len(check), policy.model.proprio_dim), np.float32)
            reference = policy32.predict_chunks({"image": check, "proprio": zeros})  # float32 PyTorch
            if precision["eager"] != "float32":  # eager's own rounding, beside the files'
                own = policy.predict_chunks({"image": check, "proprio": zeros})
                diffs["eager"] = f"{np.abs(own - reference).max():.1e}"
            if args.openvino:  # the same float32 file in OpenVINO
                ov = Runner(files["onnx"]["path"], threads=threads, runtime="openvino")
                diffs["openvino"] = f"{np.abs(ov(check, zeros) - reference).max():.1e}"
                fns["openvino"], precision["openvino"] = (lambda run=ov: run(image, proprio)), ov.precision
            timed = percentiles(fns, args.frames)
            for runtime, (p50, p99) in timed.items():
                rows.append({"family": family, "runtime": runtime, "threads": threads,
                             "precision": precision.get(runtime, "float32"), "p50_ms": round(p50, 2),
                             "p99_ms": round(p99, 2), "speedup_p50": round(timed["eager"][0] / p50, 2),
                             "speedup_p50_vs_float32": round(timed["eager_float32"][0] / p50, 2),
                             "max_abs_diff": diffs.get(runtime, ""),
                             "load_policy_s": round(load_s, 2), "load_policy_call_s": round(call_s, 2),
                             "torch_import_s": round(torch_s, 2), "onnx_load_s": round(onnx_load_s, 2)})
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    after = load_line()
    print(f"after: {after}")
    path = results.write_csv(rows, output_path(args, NAME, COMMITTED),
                             comments=[command(NAME, argv), *header, f"after the run: {after}",
                                       "batch 1, 96 x 96 frames; speedup_p50 = eager p50 / this p50 at the same "
                                       "threads; load_policy_s: median of 3 fresh interpreters, run before any timing, incl. imports (torch_import_s of it: import torch alone), "
                                       "OMP_NUM_THREADS=1; onnx_load_s: fresh interpreter, import onnxruntime + open "
                                       "the exported file (no torch)"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
