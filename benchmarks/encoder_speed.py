"""Frozen-encoder throughput on this machine: images/s per registered encoder at its default size,
and the share of the machine's measured matmul FLOP/s that it reaches.

    python -m benchmarks.encoder_speed [--batch 64] [--repeats 5] [--encoders mae dift ...] [--commit | --out PATH]

FLOPs per image are counted with torch's FLOP counter (2 FLOPs per multiply-add); the matmul
peak is the best of several float32 1024×1024 matmuls. Writes runs/benchmarks/encoder_speed/encoder_speed.csv
(``--commit``: the reference results/encoder_speed.csv).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._output import add_output_args, command, output_path
from robrep.config import config_dir
from robrep.encoders import list_encoders, load_encoder
from robrep.results import write_csv

NAME = "encoder_speed"
COMMITTED = "results/encoder_speed.csv"


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    names = args.encoders or list_encoders()
    peak = matmul_flops()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'encoder':<10}{'params (M)':>11}{'input':>7}{'tokens':>12}{'GFLOP/img':>11}{'images/s':>10}{'% peak':>8}")
    rows = []
    for name in names:
        arch = OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml").get("arch", {})
        encoder = load_encoder(name, **OmegaConf.to_container(arch))
        images = torch.randint(0, 256, (args.batch, 96, 96, 3), dtype=torch.uint8)
        with torch.inference_mode():
            x = encoder.preprocess(images)
            with FlopCounterMode(display=False) as counter:
                feats = encoder(x[:1])
            flops = counter.get_total_flops()
            encoder(x)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                encoder(encoder.preprocess(images))
                best = min(best, time.perf_counter() - start)
        rate = args.batch / best
        share = flops * rate / peak
        params = sum(p.numel() for p in encoder.parameters()) / 1e6
        shape = "x".join(map(str, feats.tokens.shape[1:]))
        print(f"{name:<10}{params:>11.2f}{encoder.input_size:>7}{shape:>12}{flops / 1e9:>11.3f}{rate:>10.0f}{share:>7.0%}",
              flush=True)
        rows.append({"encoder": name, "params_m": round(params, 3), "input_size": encoder.input_size, "tokens": shape,
                     "gflop_per_image": round(flops / 1e9, 4), "images_per_s": round(rate, 1),
                     "share_of_matmul_peak": round(share, 3), "batch": args.batch})
    out = write_csv(rows, output_path(args, NAME, COMMITTED),
                    [f"command: {command(NAME, argv)}",
                     f"machine: {os.cpu_count()}-core CPU, no GPU; matmul peak {peak / 1e9:.1f} GFLOP/s"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
