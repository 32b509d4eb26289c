"""The shared pretraining loop: AdamW, warm-up + cosine schedule, a wall-clock budget, a loss curve."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robrep.data.frames import FrameDataset
from robrep.pretrain.objective import Objective
from robrep.tb import NullWriter, ScalarWriter


def check_budget(budget_minutes: float, max_steps: int | None) -> None:
    """Refuse a budget that would save an untrained checkpoint: ``max_steps >= 1``, or ``budget_minutes > 0``."""
    if max_steps is None and not budget_minutes > 0:
        raise ValueError(f"budget_minutes must be > 0 (or give max_steps), got {budget_minutes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


def pretrain(
    objective: Objective,
    frames: FrameDataset,
    budget_minutes: float = 15.0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    shift_pad: int = 0,
    warmup_steps: int = 50,
    max_steps: int | None = None,
    schedule_steps: int | None = None,
    seed: int = 0,
    log_every: int = 10,
    progress: bool = True,
    scalars: ScalarWriter | None = None,
) -> dict[str, Any]:
    """Train ``objective`` on random batches of ``frames`` until ``budget_minutes`` of wall-clock time
    (or ``max_steps``) is spent. The cosine schedule's length is ``schedule_steps`` if given, else
    ``max_steps`` or, under a time budget, the step count the measured speed after warm-up predicts.
    A time-budgeted run is therefore reproduced bit for bit (same seed, data, torch build and threads)
    by ``max_steps=<its steps>, schedule_steps=<its schedule_steps>``. ``shift_pad > 0`` augments every
    batch with random ±``shift_pad`` px translations (a frame and its next frame moved together).

    Returns ``steps``, ``schedule_steps``, ``seconds``, ``final_loss`` (mean of the last 10 % of steps)
    and ``loss_curve`` (list of ``{step, seconds, loss, ...}`` every ``log_every`` steps). ``scalars`` (a TensorBoard
    writer, :mod:`robrep.tb`) gets the curve's entries as ``pretrain/<key>`` plus ``pretrain/steps_per_s``.
    """
    check_budget(budget_minutes, max_steps)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the objective has no trainable parameters (was the encoder frozen?)")
    # No weight decay on gains, biases, temperatures and other vectors/scalars (as in MAE/CLIP recipes).
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    objective.train()
    budget = budget_minutes * 60.0
    total = schedule_steps if schedule_steps is not None else max_steps
    curve: list[dict[str, float]] = []
    recent: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=max_steps, disable=not progress, desc=f"pretrain {objective.encoder.family}", unit="step")
    step, last_step, last_time = 0, 0, start
    scalars = scalars or NullWriter()
    while True:
        elapsed = time.perf_counter() - start
        if (max_steps is not None and step >= max_steps) or (max_steps is None and elapsed >= budget):
            break
        if total is None and step == warmup_steps:
            total = max(warmup_steps + 1, int(budget / (elapsed / max(step, 1))))
        scale = (step + 1) / warmup_steps if step < warmup_steps else (
            0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, (total or step + 1) - warmup_steps)))))
        for group in opt.param_groups:
            group["lr"] = lr * max(scale, 0.01)
        batch = frames.batch(rng.integers(len(frames), size=batch_size), shift_pad=shift_pad, rng=rng)
        loss, logs = objective.loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        recent.append(loss.item())
        if step % log_every == 0 or step == 1:
            curve.append({"step": step, "seconds": round(time.perf_counter() - start, 2), "loss": recent[-1],
                          "lr": opt.param_groups[0]["lr"], **{k: float(v) for k, v in logs.items()}})
            bar.set_postfix(loss=f"{recent[-1]:.4f}")
            now = time.perf_counter()
            for key, value in curve[-1].items():
                if key not in ("step", "seconds"):
                    scalars.add_scalar(f"pretrain/{key}", value, step)
            scalars.add_scalar("pretrain/steps_per_s", (step - last_step) / max(now - last_time, 1e-9), step)
            last_step, last_time = step, now
        bar.update(1)
    bar.close()
    objective.eval()
    tail = recent[-max(1, len(recent) // 10):] if recent else [float("nan")]
    return {"steps": step, "schedule_steps": total if total is not None else step,
            "seconds": time.perf_counter() - start, "final_loss": float(np.mean(tail)),
            "loss_curve": curve}


def write_loss_curve(curve: list[dict[str, float]], path: str | os.PathLike, title: str = "") -> tuple[Path, Path]:
    """Write the curve as ``<path>.csv`` and a ``<path>.png`` plot (loss vs step, log y); returns both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    csv_path, png_path = path.with_name(path.name + ".csv"), path.with_name(path.name + ".png")
    keys = sorted({k for row in curve for k in row}, key=lambda k: (k not in ("step", "seconds", "loss"), k))
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(curve)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return csv_path, png_path
