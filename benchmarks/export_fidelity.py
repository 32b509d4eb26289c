"""Does the exported file act like the policy it came from? Closed-loop success of each trained policy in PyTorch
(``eager``: ``Policy.act`` at its training precision) and as the files ``robrep export`` writes (``onnx``: float32,
lossless, in onnxruntime; ``onnx_int8``: the opt-in ``quantize=int8`` file; ``openvino``: the float32 file in
OpenVINO at the precision it picks for this CPU), on the same evaluation layouts, paired episode by episode.

``python -m benchmarks.export_fidelity --policies PATH [PATH ...] [--runtimes eager onnx onnx_int8] [--episodes 100]
[--split test] [--num-envs 10] [--threads 1] [--commit | --out PATH]``

Per (policy, runtime): successes with the Wilson 95 % interval, the episodes only eager or only this runtime solved
and the exact McNemar p of that split (two-sided binomial test on the discordant episodes; ``scipy.stats``), the
largest action difference of the file against PyTorch on real first frames of the layouts, and the time inside the
policy per env step. Each file is exported from the checkpoint as ``robrep export`` would (float32 graph).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "export_fidelity"
COMMITTED = "results/export_fidelity.csv"
RUNTIMES = ("eager", "onnx", "onnx_int8", "openvino")


def first_frames(policy: Any, episodes: int, split: str, count: int = 8) -> np.ndarray:
    """uint8 ``(count, H, W, 3)``: the first observed image of the first ``count`` evaluation layouts."""
    from envs.registration import make_env
    from robrep.seeds import eval_seeds

    env = make_env(policy.task, **policy.env_kwargs)
    try:
        return np.stack([env.reset(seed=s)[0][policy.obs_keys.image]
                         for s in eval_seeds(min(count, episodes), 0, split)])
    finally:
        env.close()


def mcnemar(reference: np.ndarray, other: np.ndarray) -> tuple[int, int, float]:
    """Episodes solved only by ``reference``, only by ``other``, and the exact two-sided McNemar p."""
    from scipy.stats import binomtest

    only_ref, only_other = int((reference & ~other).sum()), int((other & ~reference).sum())
    discordant = only_ref + only_other
    p = 1.0 if discordant == 0 else float(binomtest(only_other, discordant, 0.5).pvalue)
    return only_ref, only_other, p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", required=True, metavar="PATH", help="trained policy checkpoints")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)

    from policies import load_policy
    from policies.export import Runner, export_policy
    from policies.exported import ExportedPolicy
    from robrep.eval.rollouts import evaluate
    from robrep.threads import thread_limit

    rows: list[dict[str, Any]] = []
    with thread_limit(args.threads), tempfile.TemporaryDirectory() as tmp:
        for path in args.policies:
            policy = load_policy(path)
            frames = first_frames(policy, args.episodes, args.split)
            # a language-conditioned policy: its demos' one instruction is baked into the file (a task with an
            # instruction per episode, e.g. push_color, needs the PyTorch policy: export_policy says so)
            instruction = policy.meta.get("instruction") if policy.reads_instruction else None
            outcomes: dict[str, np.ndarray] = {}
            for runtime in ["eager"] + [r for r in args.runtimes if r != "eager"]:
                diff = None
                if runtime == "eager":
                    actor = policy
                else:  # export_policy sets the encoder to float32: eager ran first, at its training precision
                    out = Path(tmp) / f"{Path(path).stem}.{runtime}.onnx"
                    report = export_policy(policy, out, "onnx", frames=frames, instruction=instruction,
                                           quantize="int8" if runtime == "onnx_int8" else None)
                    engine = "openvino" if runtime == "openvino" else "onnxruntime"
                    actor = ExportedPolicy(out, policy.meta, threads=args.threads, runtime=engine)
                    diff = report["max_abs_diff"]
                    if engine == "openvino":  # its own rounding: against the float32 graph on the same frames
                        zeros = np.zeros((len(frames), policy.model.proprio_dim), np.float32)
                        diff = float(np.abs(actor.predict(frames, zeros) - Runner(out)(frames, zeros)).max())
                        actor.encoded_frames = 0
                res = evaluate(actor, args.episodes, num_envs=args.num_envs, progress=False, split=args.split)
                outcomes[runtime] = res.success
                only_eager, only_this, p = mcnemar(outcomes["eager"], res.success)
                low, high = res.ci
                precision = (policy.meta["policy_config"]["train"].get("precision", "float32") if actor is policy
                             else "int8 weights (lossy)" if runtime == "onnx_int8" else actor.runner.precision)
                row = {"policy": Path(path).name, "task": policy.task, "runtime": runtime, "precision": precision,
                       "threads": args.threads,
                       "split": args.split, "episodes": res.episodes, "successes": res.successes,
                       "success_rate": round(res.success_rate, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
                       "only_eager": only_eager, "only_this": only_this, "mcnemar_p": round(p, 4),
                       "max_abs_diff": "" if diff is None else f"{diff:.1e}",
                       "policy_ms_per_step": round(1000 * res.policy_s / max(res.steps, 1), 3)}
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = output_path(args, NAME, COMMITTED)
    notes = ("paired by episode (same layouts); mcnemar_p: exact two-sided test of only_eager vs only_this; "
             "max_abs_diff: actions against the float32 PyTorch network on the first frames of the layouts; "
             "policy_ms_per_step: time inside the policy per env step (open-loop chunks: one file call per chunk)")
    results.write_csv(rows, out, comments=[command(NAME, argv), notes])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
