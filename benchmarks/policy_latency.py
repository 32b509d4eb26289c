"""Per-frame latency a roboticist can quote: one 96 × 96 frame (batch 1) through a policy — encoder, readout and head —
in eager PyTorch, TorchScript and ONNX Runtime, on one and two threads, per encoder family; and ``load_policy`` time
in a fresh interpreter (imports included).

``python -m benchmarks.policy_latency [--families mae dift voltron clip cnn] [--frames 200] [--commit | --out PATH]``

Each family's policy is trained for a few steps on a small push demo file (timing does not depend on the weights
of the head); the encoder loads ``weights/<family>_full.pt`` where present. Eager runs at the precision the policy
was trained with (``auto``: bfloat16 on CPUs that compute it natively); the exported files run float32. Reports
p50 / p99 milliseconds per frame over ``--frames`` calls after 10 warm-up calls, and the speed-up of each exported
runtime over eager at the same thread count. Run on an idle CPU: it measures ratios in one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "policy_latency"
COMMITTED = "results/policy_latency.csv"


def percentiles(fn, frames: int) -> tuple[float, float]:
    """p50 and p99 milliseconds of ``fn()`` over ``frames`` calls after 10 warm-up calls."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def load_seconds(checkpoint: Path) -> float:
    """Wall seconds of ``from policies.policy import load_policy; load_policy(path)`` in a fresh interpreter."""
    code = ("import time; t = time.perf_counter(); from policies.policy import load_policy; "
            f"load_policy({str(checkpoint)!r}); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    return float(out.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)

    from policies.export import Runner, export_policy
    from policies.policy import load_policy
    from robrep.data.collect import collect_demos

    root = Path("runs/benchmarks/policy_latency")
    root.mkdir(parents=True, exist_ok=True)
    demos = root / "push_demos.hdf5"
    if not demos.exists():
        collect_demos("push", 6, demos, image_size=96, subset_sizes=(5,), subset_seeds=(0,), progress=False)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    proprio = np.zeros((1, 4), np.float32)
    rows = []
    for family in args.families:
        ckpt = make_policy(family, demos, root)
        files = {fmt: export_policy(load_policy(ckpt), root / f"{family}{ext}", fmt)
                 for fmt, ext in (("torchscript", ".ts"), ("onnx", ".onnx"))}
        load_s = load_seconds(ckpt)
        for threads in args.threads:
            torch.set_num_threads(threads)
            policy = load_policy(ckpt)
            policy.reset(1)
            eager = percentiles(lambda: (policy.reset_env(0), policy.act({"image": image, "proprio": proprio})),
                                args.frames)
            runtimes = {"eager": eager}
            for fmt, report in files.items():
                run = Runner(report["path"], threads=threads)
                runtimes[fmt] = percentiles(lambda: run(image, proprio), args.frames)
            for runtime, (p50, p99) in runtimes.items():
                rows.append({"family": family, "runtime": runtime, "threads": threads,
                             "precision": policy.meta["policy_config"]["train"]["precision"] if runtime == "eager"
                             else "float32", "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                             "speedup_p50": round(eager[0] / p50, 2),
                             "max_abs_diff": "" if runtime == "eager" else f"{files[runtime]['max_abs_diff']:.1e}",
                             "load_policy_s": round(load_s, 2)})
                print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    path = results.write_csv(rows, output_path(args, NAME, COMMITTED),
                             comments=[command(NAME, argv), f"{os.cpu_count()}-core CPU; batch 1, 96 x 96 frames"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
