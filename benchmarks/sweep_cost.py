"""Where the default sweep's time goes, measured on this machine: a cost model of ``robrep sweep task=push``.

``python -m benchmarks.sweep_cost [--episodes-from results/sweeps/push/table.csv] [--commit | --out PATH]``

Measures, on one thread with the precision ``auto`` resolves to here (and float32 beside it, for the ratio):
the simulator + renderer per env step (push, ``num_envs`` envs, random actions), each family's encoder per image at
the evaluation batch (``num_envs``) and the caching batch, a frozen-feature head's and the CNN's training step.
Multiplies them by what the default sweep config asks for — arms, N, seeds, 100 test layouts, the training rule's
step budget per N (no early stopping: an upper bound), the tuning grid, the feature cache with its shifted copies —
and the mean episode lengths of the committed push sweep (arms it lacks: the task's time limit, an upper bound).
Prints the table and the total in core-hours and hours of wall at ``jobs`` parallel cells (perfect packing: a lower
bound on wall). A prediction from measured parts, not a timed sweep: ``runs.csv`` of a real run is the measurement.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks._output import add_output_args, command, output_path
from robrep import results

NAME = "sweep_cost"
COMMITTED = "results/sweep_cost.csv"


def per_call(fn, repeats: int) -> float:
    """Seconds per call of ``fn`` (one warm-up call first)."""
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def sim_ms(task: str, num_envs: int, steps: int = 100, render_every: int = 1) -> float:
    """Milliseconds per env step (physics + rendering) with random actions. ``render_every=k`` renders only the
    observations an open-loop chunk of ``k`` reads (every k-th step), as ``robrep.eval.rollouts.evaluate`` does
    (``skip_unread_images``)."""
    from envs.registration import make_env

    envs = [make_env(task) for _ in range(num_envs)]
    rng = np.random.default_rng(0)
    for i, e in enumerate(envs):
        e.reset(seed=1_000_000 + i)
    t = time.perf_counter()
    for step in range(steps):
        for e in envs:
            if (step + 1) % render_every:
                e.unwrapped.skip_next_images()
            _, _, term, trunc, _ = e.step(rng.uniform(-1, 1, 4).astype(np.float32))
            if term or trunc:
                e.reset()
    out = 1000 * (time.perf_counter() - t) / (steps * num_envs)
    for e in envs:
        e.close()
    return out


def encoder_ms(arm_cfg, precision: str, batch: int) -> float:
    """Milliseconds per image of the arm's frozen encoder at ``batch``."""
    from robrep.encoders.spec import EncoderSpec

    enc = EncoderSpec.from_cfg(arm_cfg, precision=precision).load("cpu")
    x = np.random.default_rng(0).integers(0, 255, (batch, 96, 96, 3), dtype=np.uint8)
    with torch.inference_mode():
        return 1000 * per_call(lambda: enc.encode_images(x), 3) / batch


def train_step_s(policy: dict, shape_meta: dict, frames: dict, precision: str) -> float:
    """Seconds per training step of the policy ``policy`` (batch of its batch size) at ``precision``."""
    from policies.model import build_model

    model = build_model({**policy, "train": {**policy["train"], "precision": precision}}, shape_meta)
    b = int(policy["train"]["batch_size"])
    model.set_statistics(torch.zeros(8, shape_meta["proprio_dim"]), torch.randn(8, 4), 1e-2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = {k: v[:b, None] for k, v in frames.items()}  # (B, frame_stack=1, ...)
    k = int(policy.get("chunk", 1))
    proprio, actions = torch.zeros(b, 1, shape_meta["proprio_dim"]), torch.randn(b, k, 4)  # (B, chunk, A)

    def step() -> None:
        model.train()
        loss = model.loss(batch, proprio, actions, precision)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return per_call(step, 10)


def lengths_from(table: Path) -> dict[tuple[str, int], float]:
    """Mean episode length per (arm, N) in a committed sweep table."""
    by: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in results.read_csv(table):
        by[(row["arm"], int(row["n"]))].append(float(row["mean_length"]))
    return {k: float(np.mean(v)) for k, v in by.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-from", default="results/sweeps/push/table.csv")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from policies.train import TrainConfig
    from robrep.config import compose
    from robrep.data.demo_file import DemoFile
    from robrep.encoders.spec import EncoderSpec
    from robrep.precision import resolve_precision
    from robrep.sweep.run import sweep_arms, seeds_for
    from robrep.sweep.cell import arm_config
    from robrep.sweep.tune import grid_points

    cfg = compose("sweep", ["task=push"])
    auto = resolve_precision("auto", "cpu")
    arms, demos = sweep_arms(cfg), [int(n) for n in cfg.demos]
    grid = len(grid_points(cfg.tune.grid)) if cfg.tune.get("grid") else 1
    with DemoFile(cfg.dataset) as f:  # python -m robrep.cli collect ... writes it (the sweep does when missing)
        frames_total = sum(f.num_samples(d) for d in f.demo_names())
        train_frames = {n: sum(f.num_samples(d) for d in f.subset(n, 0)) for n in demos}
    lengths = lengths_from(Path(args.episodes_from)) if Path(args.episodes_from).exists() else {}
    limit = 150.0
    sim = sim_ms("push", int(cfg.num_envs))
    sims = {1: sim}
    print(f"simulator + renderer: {sim:.2f} ms per env step; precision auto -> {auto}")

    rows, enc_cache, first_arm = [], {}, {}
    for arm in arms:
        acfg = arm_config(arm, str(cfg.weights_budget), list(cfg.get("arm_overrides") or []))
        policy = OmegaConf.to_container(acfg.policy, resolve=True)
        tcfg = TrainConfig(**{**policy["train"], "precision": "float32"})
        chunk = int(policy.get("chunk", 1))
        open_loop = policy.get("chunk_execution", "ensemble") == "open_loop" and chunk > 1
        if policy["trunk"] == "features":
            family = str(acfg.encoder.name)
            if family not in enc_cache:
                enc_cache[family] = {p: (encoder_ms(acfg, p, int(cfg.num_envs)), encoder_ms(acfg, p, 64))
                                     for p in dict.fromkeys([auto, "float32"])}
            eval_ms, cache_ms = enc_cache[family][auto]
            eval_ms32 = enc_cache[family]["float32"][0]
            if open_loop:  # one encoder call per chunk: 1/k images per env step, at ~num_envs/k images a call
                key = (family, "open_loop")
                if key not in enc_cache:
                    enc_cache[key] = encoder_ms(acfg, auto, max(1, -(-int(cfg.num_envs) // chunk))) / chunk
                eval_ms_chunk1, eval_ms = eval_ms, enc_cache[key]
            else:
                eval_ms_chunk1 = eval_ms
            enc = EncoderSpec.from_cfg(acfg, precision=auto).load("cpu")
            grid_hw, dim = tuple(enc.grid_size), int(enc.feature_dim)
            meta = {"action_dim": 4, "proprio_dim": 4, "feature_dim": dim, "grid": list(grid_hw),
                    "has_global_token": policy.get("readout") == "cls"}
            feats = {"tokens": torch.randn(64, grid_hw[0] * grid_hw[1], dim)}
            if meta["has_global_token"]:
                feats["global_token"] = torch.randn(64, dim)
            prec = str(policy["train"]["precision"])
            step_s = train_step_s(policy, meta, feats, resolve_precision(prec, "cpu") if prec == "auto" else prec)
            step_s32 = train_step_s(policy, meta, feats, "float32")
        else:
            family, eval_ms, eval_ms32, eval_ms_chunk1, cache_ms = "", 0.0, 0.0, 0.0, 0.0
            meta = {"action_dim": 4, "proprio_dim": 4, "image_size": [96, 96]}
            feats = {"image": torch.randint(0, 255, (64, 96, 96, 3), dtype=torch.uint8)}
            prec = str(policy["train"]["precision"])
            prec = resolve_precision(prec, "cpu") if prec == "auto" else prec
            step_s = train_step_s(policy, meta, feats, prec)
            step_s32 = train_step_s({**policy, "cnn": {**policy["cnn"], "channels_last": False}}, meta, feats,
                                    "float32")
        k_render = chunk if open_loop else 1  # evaluate renders only the images the policy reads
        if k_render not in sims:
            sims[k_render] = sim_ms("push", int(cfg.num_envs), render_every=k_render)
            print(f"simulator, rendering every {k_render}th step: {sims[k_render]:.2f} ms per env step "
                  f"({sim / sims[k_render]:.2f}x)")
        for n in demos:
            budget = tcfg.budget(train_frames[n])[0]
            seeds = len(seeds_for(cfg, n))
            length = lengths.get((arm, n), limit)
            trainings = seeds + (grid - 1)
            rows.append({
                "arm": arm, "n": n, "seeds": seeds, "train_frames": train_frames[n], "budget_steps": budget,
                "train_step_s": round(step_s, 4), "train_step_s_float32": round(step_s32, 4),
                "trainings": trainings, "train_core_s": round(trainings * budget * step_s, 1),
                "episode_length": round(length, 1), "length_source": "committed push sweep" if (arm, n) in lengths
                else "time limit (upper bound)",
                "chunk_execution": f"open_loop k={chunk}" if open_loop else "every step",
                "policy_ms_per_step": round(eval_ms, 2), "policy_ms_per_step_every_step": round(eval_ms_chunk1, 2),
                "policy_ms_per_step_float32": round(eval_ms32, 2),
                "sim_ms_per_step": round(sims[k_render], 2), "sim_ms_per_step_every_render": round(sim, 2),
                "eval_core_s": round(seeds * int(cfg.episodes) * length * (sims[k_render] + eval_ms) / 1000, 1),
                "cache_core_s": round(frames_total * (1 + int(policy.get("feature_shifts", 0))) * cache_ms / 1000, 1)
                if (family and n == demos[0] and first_arm.setdefault((family, acfg.get("weights")), arm) == arm)
                else 0.0,  # one cache per (encoder, weights): clip and clip_spatial share theirs
            })
        print(f"{arm}: train step {step_s * 1000:.1f} ms, policy {eval_ms:.1f} ms/env step")
    totals = {k: sum(r[k] for r in rows) for k in ("train_core_s", "eval_core_s", "cache_core_s")}
    core = sum(totals.values())
    jobs = int(cfg.jobs)
    for k, v in totals.items():
        print(f"{k:>13}: {v / 3600:6.2f} core-h ({100 * v / core:4.1f} %)")
    print(f"total: {core / 3600:.2f} core-h; >= {core / 3600 / jobs:.2f} h wall at jobs={jobs} "
          f"(target < 2 h); {len(arms)} arms x N {demos} x {seeds} seeds x {cfg.episodes} layouts")
    path = output_path(args, NAME, COMMITTED)
    results.write_csv(rows, path, comments=[command(NAME, argv), f"precision auto -> {auto}; totals: train "
                                            f"{totals['train_core_s'] / 3600:.2f}, eval {totals['eval_core_s'] / 3600:.2f}, "
                                            f"cache {totals['cache_core_s'] / 3600:.2f} core-h"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
