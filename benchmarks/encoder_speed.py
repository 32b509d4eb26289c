"""Frozen-encoder throughput on this machine: images/s per registered encoder at its default size,
and the share of the machine's measured matmul FLOP/s that it reaches.

    python benchmarks/encoder_speed.py [--batch 64] [--repeats 5] [--encoders mae dift ...]

FLOPs per image are counted with torch's FLOP counter (2 FLOPs per multiply-add); the matmul
peak is the best of several float32 1024×1024 matmuls. Writes results/encoder_speed.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from robrep.config import config_dir  # noqa: E402
from robrep.encoders import list_encoders, load_encoder  # noqa: E402
from robrep.results import command_line, write_csv  # noqa: E402


def matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="results/encoder_speed.csv")
    args = parser.parse_args()
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
    out = write_csv(rows, args.out, [f"command: {command_line()}",
                                     f"machine: {os.cpu_count()}-core CPU, no GPU; matmul peak {peak / 1e9:.1f} GFLOP/s"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
