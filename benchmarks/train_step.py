"""The training step's levers, each as a before/after ratio measured in one run: the sweep's training cost is
steps × this step (``benchmarks.sweep_cost`` multiplies it out), so a lever here moves every cell of its arm.

    python -m benchmarks.train_step [--threads 1] [--batch 64] [--steps 20] [--commit | --out PATH]

One thread (a sweep cell's share of this CPU), the sweep's policy configs (``configs/policy/cnn.yaml``,
``configs/policy/mlp.yaml`` with the spatial-softmax readout on MAE-shaped tokens ``(B, 144, 192)``, one shifted copy),
a whole BC step: batch gather, forward, backward, gradient clipping, AdamW. Levers:

- ``cnn random shift``: the (B, H, W) index gather the CNN used before → one window slice per sample
  (:class:`policies.cnn.RandomShift`; the same crops for the same draws, a test pins it);
- ``cnn channels_last``: NCHW → NHWC convolutions (``cnn.channels_last``);
- ``cnn bfloat16`` / ``head bfloat16``: float32 → the trunk under bf16 autocast (``train.precision``).

Each row is the best of ``--repeats`` timings of ``--steps`` steps, before and after interleaved; the load average
is recorded, as other jobs slow both columns alike. Writes ``runs/benchmarks/train_step/train_step.csv``
(``--commit``: ``results/train_step.csv``).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmarks._output import add_output_args, command, output_path
from policies.cnn import RandomShift
from policies.datasets import DemoTensors, window_indices
from policies.model import BCModel, build_model
from robrep.config import config_dir
from robrep.results import write_csv

NAME = "train_step"
COMMITTED = "results/train_step.csv"


class GatherShift(RandomShift):
    """The CNN's random shift before the change: the same draws, crops read by one (B, H, W) index gather."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.pad <= 0:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4, mode="replicate")
        dy, dx = torch.randint(0, 2 * self.pad + 1, (b,)), torch.randint(0, 2 * self.pad + 1, (b,))
        rows, cols = (dy[:, None] + torch.arange(h))[:, :, None], (dx[:, None] + torch.arange(w))[:, None, :]
        return padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def policy_config(name: str, **changes) -> dict:
    """``configs/policy/<name>.yaml`` merged over ``mlp.yaml`` with chunk 4 (the sweep's acting rule) and ``changes``
    (``"a.b": value`` sets a nested key)."""
    root = Path(config_dir()) / "policy"
    cfg = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(root / "mlp.yaml"), OmegaConf.load(root / f"{name}.yaml")))
    cfg.pop("defaults", None)
    cfg.update(readout="spatial_softmax", chunk=4)
    for key, value in changes.items():
        *path, last = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def step_seconds(model: BCModel, data: DemoTensors, precision: str, batch: int, steps: int) -> float:
    """Seconds of ``steps`` BC training steps on ``data`` (a fresh AdamW; ``model`` in training mode)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=generator)
        view = torch.randint(data.num_views, (batch,), generator=generator) if data.shifted else None
        frames, proprio, actions = data.batch(idx, view)
        loss = model.loss(frames, proprio, actions, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return (time.perf_counter() - start) / steps


def demo_tensors(frames: dict[str, torch.Tensor], shifted: dict[str, torch.Tensor] | None = None) -> DemoTensors:
    count = len(next(iter(frames.values())))
    stack, chunk = window_indices([count], 1, 4)
    return DemoTensors(frames, torch.randn(count, 4), torch.rand(count, 4) * 2 - 1, stack, chunk, ["demo"], [None],
                       shifted or {})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    torch.manual_seed(0)
    images = demo_tensors({"image": torch.randint(0, 256, (2000, 96, 96, 3), dtype=torch.uint8)})
    tokens = demo_tensors({"tokens": torch.randn(4000, 144, 192).half()}, {"tokens": torch.randn(1, 4000, 144, 192).half()})
    image_meta = {"action_dim": 4, "proprio_dim": 4, "image_size": [96, 96]}
    token_meta = {"action_dim": 4, "proprio_dim": 4, "feature_dim": 192, "grid": [12, 12]}

    def cnn(channels_last: bool = True, shift: type[RandomShift] = RandomShift) -> BCModel:
        model = build_model(policy_config("cnn", **{"cnn.channels_last": channels_last}), image_meta)
        model.trunk.shift = shift(model.trunk.shift.pad)
        return model

    head = build_model(policy_config("mlp"), token_meta)
    levers = [  # (arm, lever, before, after): (model, data, precision) each
        ("cnn", "random shift: index gather -> window slices", (cnn(shift=GatherShift), images, "bfloat16"),
         (cnn(), images, "bfloat16")),
        ("cnn", "channels_last: NCHW -> NHWC", (cnn(channels_last=False), images, "bfloat16"), (cnn(), images, "bfloat16")),
        ("cnn", "precision: float32 -> bfloat16", (cnn(), images, "float32"), (cnn(), images, "bfloat16")),
        ("head", "precision: float32 -> bfloat16", (head, tokens, "float32"), (copy.deepcopy(head), tokens, "bfloat16")),
    ]
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, load average {load:.2f}")
    for arm, lever, before, after in levers:
        best = {"before": float("inf"), "after": float("inf")}
        for _ in range(args.repeats):  # interleaved, so drifting load hits both sides
            for side, (model, data, precision) in (("before", before), ("after", after)):
                step_seconds(model, data, precision, args.batch, 2)  # warm-up: oneDNN picks kernels on first calls
                best[side] = min(best[side], step_seconds(model, data, precision, args.batch, args.steps))
        row = {"arm": arm, "lever": lever, "before_ms": round(1000 * best["before"], 1),
               "after_ms": round(1000 * best["after"], 1), "ratio": round(best["before"] / best["after"], 2),
               "threads": args.threads, "batch": args.batch, "load_average": round(load, 2)}
        rows.append(row)
        print(f"{arm:<5} {lever:<46} {row['before_ms']:>8} ms -> {row['after_ms']:>8} ms  x{row['ratio']}")
    write_csv(rows, output_path(args, NAME, COMMITTED), comments=[command(NAME, argv)])


if __name__ == "__main__":
    main()
