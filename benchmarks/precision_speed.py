"""float32 versus bfloat16 autocast on this machine: frozen-encoder throughput (and how far the features
move), the train-step time of the from-scratch conv trunks and one pretraining step of each encoder family.

    python -m benchmarks.precision_speed [--threads 2] [--batch 64] [--repeats 3] [--commit | --out PATH]

Encoders: the committed full-budget weights (weights/<name>_full.pt, random init when missing) on
frames of data/push_sweep.hdf5 (random images when missing); agreement = cosine similarity of each token and
the relative error ‖bf16 − fp32‖ / ‖fp32‖ over the batch. Trunks: a forward + backward + AdamW step of
policies.cnn.ConvTrunk at 96 px. Pretraining: one step of each family's objective (forward, backward, AdamW; its
configured batch size) on frames of the play corpus's push file (skipped when missing), as ``robrep pretrain
precision=...`` runs it. Every row also records ``auto_precision``: the precision ``"auto"`` picks on this
machine (:func:`robrep.precision.resolve_precision`), so the table shows whether that choice was the faster one.
Prints a table and writes runs/benchmarks/precision_speed/precision_speed.csv (``--commit``: the reference
results/precision_speed.csv), with the load average, as other jobs on the machine slow both columns alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from omegaconf import OmegaConf

from benchmarks._output import add_output_args, command, output_path
from policies.cnn import ConvTrunk
from robrep.config import config_dir
from robrep.encoders import list_encoders
from robrep.encoders.spec import EncoderSpec
from robrep.precision import autocast, describe_precision, resolve_precision
from robrep.pretrain.objective import BUILTIN_OBJECTIVES, make_objective
from robrep.results import write_csv

NAME = "precision_speed"
COMMITTED = "results/precision_speed.csv"


def encoder_config(name: str):
    """``configs/encoder/<name>.yaml`` (arch, readout, pretraining settings)."""
    return OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml")


def frames(batch: int, path: str = "data/push_sweep.hdf5") -> np.ndarray:
    if not Path(path).exists():
        return np.random.default_rng(0).integers(0, 256, (batch, 96, 96, 3), dtype=np.uint8)
    with h5py.File(path) as f:
        parts, i = [], 0
        while sum(len(p) for p in parts) < batch:
            parts.append(f[f"data/demo_{i}/obs/image"][::4])
            i += 1
    return np.concatenate(parts)[:batch]


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks kernels on the first call)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def encoder_rows(names: list[str], images: np.ndarray, repeats: int) -> list[dict]:
    rows = []
    for name in names:
        arch = OmegaConf.to_container(encoder_config(name).get("arch", {}))
        weights = f"weights/{name}_full.pt" if Path(f"weights/{name}_full.pt").exists() else None
        encoder = EncoderSpec(name, weights, arch).load()
        texts = ["push the block to the goal"] * len(images)
        x = encoder.preprocess(images)
        run = (lambda: encoder.encode_with_language(x, texts)) if hasattr(encoder, "encode_with_language") else \
            (lambda: encoder(x))
        out = {}
        for precision in ("float32", "bfloat16"):
            encoder.set_precision(precision)
            out[precision] = (run().tokens, best_seconds(run, repeats))
        (exact, t32), (mixed, t16) = out["float32"], out["bfloat16"]
        cos = torch.nn.functional.cosine_similarity(exact, mixed, dim=-1)
        rows.append({"kind": "encoder", "name": name, "weights": weights or "random", "unit": "images/s",
                     "float32": round(len(images) / t32, 1), "bfloat16": round(len(images) / t16, 1),
                     "speedup": round(t32 / t16, 2), "min_token_cos": round(float(cos.min()), 5),
                     "rel_error": round(float((mixed - exact).norm() / exact.norm()), 5)})
    return rows


def trunk_rows(batch: int, repeats: int) -> list[dict]:
    rows = []
    images = torch.randint(0, 256, (batch, 96, 96, 3), dtype=torch.uint8)
    for arch in ("small_cnn", "resnet18"):
        torch.manual_seed(0)
        trunk = ConvTrunk((96, 96), arch=arch, num_keypoints=32).train()
        opt = torch.optim.AdamW(trunk.parameters(), lr=1e-4)
        times = {}
        for precision in ("float32", "bfloat16"):
            def step() -> None:
                with autocast("cpu", precision):
                    loss = trunk({"image": images}).float().pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            times[precision] = best_seconds(step, repeats)
        rows.append({"kind": "train_step", "name": arch, "weights": "random", "unit": f"s/step (batch {batch})",
                     "float32": round(times["float32"], 3), "bfloat16": round(times["bfloat16"], 3),
                     "speedup": round(times["float32"] / times["bfloat16"], 2), "min_token_cos": "", "rel_error": ""})
    return rows


def pretrain_rows(names: list[str], repeats: int, path: str = "data/play/varied/push.hdf5") -> list[dict]:
    """Seconds per pretraining step (forward + backward + AdamW at the family's configured batch size) in float32 and
    under bf16 autocast, from the same initial weights; skipped (no rows) without the play corpus file."""
    from robrep.data.frames import FrameDataset
    from robrep.encoders.registry import build_encoder

    if not Path(path).exists():
        print(f"no {path}: pretraining rows skipped (robrep collect mode=play task.visuals=varied)")
        return []
    frames_ = FrameDataset.from_files([path])
    rows = []
    for name in names:
        cfg = encoder_config(name)
        batch = frames_.batch(np.random.default_rng(0).integers(len(frames_), size=cfg.pretrain.batch_size))
        times = {}
        for precision in ("float32", "bfloat16"):
            torch.manual_seed(0)
            objective = make_objective(build_encoder(name, **OmegaConf.to_container(cfg.get("arch", {}))),
                                       **OmegaConf.to_container(cfg.pretrain.objective)).train()
            opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-4)

            def step() -> None:
                with autocast("cpu", precision):
                    loss, _ = objective.loss(batch)
                opt.zero_grad()
                loss.float().backward()
                opt.step()
            times[precision] = best_seconds(step, repeats)
        rows.append({"kind": "pretrain", "name": name, "weights": "random",
                     "unit": f"s/step (batch {cfg.pretrain.batch_size})", "float32": round(times["float32"], 3),
                     "bfloat16": round(times["bfloat16"], 3), "speedup": round(times["float32"] / times["bfloat16"], 2),
                     "min_token_cos": "", "rel_error": ""})
    return rows


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    auto, why = resolve_precision("auto", "cpu"), describe_precision("cpu")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load:.2f}; precision auto: {why}")
    names = args.encoders or list_encoders()
    rows = encoder_rows(names, frames(args.batch), args.repeats) + trunk_rows(args.batch, args.repeats) + \
        pretrain_rows([n for n in names if n in BUILTIN_OBJECTIVES], args.repeats)
    print(f"{'kind':<11}{'name':<10}{'unit':<20}{'float32':>9}{'bfloat16':>10}{'speedup':>9}{'min cos':>9}{'rel err':>9}")
    for r in rows:
        print(f"{r['kind']:<11}{r['name']:<10}{r['unit']:<20}{r['float32']:>9}{r['bfloat16']:>10}{r['speedup']:>9}"
              f"{r['min_token_cos']!s:>9}{r['rel_error']!s:>9}")
    for r in rows:
        r.update(auto_precision=auto, threads=args.threads, load_average=round(load, 2))
    out = write_csv(rows, output_path(args, NAME, COMMITTED),
                    comments=[command(NAME, argv), f"machine: {os.cpu_count()}-core {cpu_model()}, run on the CPU",
                              f"precision auto picks {why}"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
