"""The shared pretraining loop: AdamW, warm-up + cosine schedule, a budget in optimizer steps or wall-clock minutes, a
loss curve, FLOPs counted, and a resume state (optimizer, RNGs, schedule) that continues a run or grows its budget."""

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
from robrep.precision import autocast, check_precision
from robrep.pretrain.objective import Objective
from robrep.tb import NullWriter, ScalarWriter


def check_budget(budget_minutes: float, max_steps: int | None) -> None:
    """Refuse a budget that would save an untrained checkpoint: ``max_steps >= 1``, or ``budget_minutes > 0``."""
    if max_steps is None and not budget_minutes > 0:
        raise ValueError(f"budget_minutes must be > 0 (or give max_steps), got {budget_minutes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


#: Format tag of a pretraining resume state (:func:`pretrain`'s ``state``; ``robrep pretrain`` saves it beside the
#: checkpoint as ``<out>.state.pt``).
STATE_FORMAT = "robrep-pretrain-state/1"


def schedule_scale(step: int, segments: list[dict[str, int]]) -> float:
    """The learning-rate factor at ``step`` (0-based) of a schedule of segments ``{start, warmup, end}``: within the
    last segment that starts at or before ``step``, a linear warm-up over ``warmup`` steps, then a half cosine to 0 at
    ``end`` (floored at 0.01 by the caller). One segment is the usual schedule; a run grown past its schedule's end
    adds a segment (a warm restart over the added steps)."""
    seg = [s for s in segments if s["start"] <= step][-1]
    local = step - seg["start"]
    if local < seg["warmup"]:
        return (local + 1) / seg["warmup"]
    span = max(1, seg["end"] - seg["start"] - seg["warmup"])
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (local - seg["warmup"]) / span)))


def step_flops(objective: Objective, batch: dict[str, Any]) -> int:
    """FLOPs of one training step (forward + backward of ``objective.loss`` on ``batch``), counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (matrix multiplies and convolutions); gradients are cleared."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss, _ = objective.loss(batch)
        loss.backward()
    objective.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


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
    state: dict[str, Any] | None = None,
    precision: str = "float32",
) -> dict[str, Any]:
    """Train ``objective`` on random batches of ``frames`` until ``budget_minutes`` of wall-clock time
    (or ``max_steps``) is spent. The cosine schedule's length is ``schedule_steps`` if given, else
    ``max_steps`` or, under a time budget, the step count the measured speed after warm-up predicts.
    A time-budgeted run is therefore reproduced bit for bit (same seed, data, torch build and threads)
    by ``max_steps=<its steps>, schedule_steps=<its schedule_steps>``. ``shift_pad > 0`` augments every
    batch with random ±``shift_pad`` px translations (a frame and its next frame moved together).

    Returns ``steps`` (the run's last step, counted from the first run when resumed), ``schedule_steps`` (the
    schedule's end), ``seconds`` (this run), ``final_loss`` (mean of this run's last 10 % of steps), ``loss_curve``
    (list of ``{step, seconds, loss, ...}`` every ``log_every`` steps, earlier runs' entries first), ``flops_per_step``
    (:func:`step_flops`, measured on this run's first batch), ``flops`` (× ``steps``) and ``state``: what a later call
    needs to continue — the objective's and optimizer's state dicts, both RNGs, the step, the schedule's segments
    (:func:`schedule_scale`), total seconds and the curve. ``scalars`` (a TensorBoard writer, :mod:`robrep.tb`) gets
    the curve's entries as ``pretrain/<key>`` plus ``pretrain/steps_per_s``.

    ``state`` (a previous call's ``state``, same objective and hyperparameters) resumes: weights, optimizer moments,
    RNGs and schedule are restored and training continues to ``max_steps`` (which must be larger than its step).
    Stopped before its schedule's end (``schedule_steps`` set beyond ``max_steps``), a resumed run is bit-identical to
    an uninterrupted one; grown past it, a warm-restart segment covers the added steps.

    ``precision`` (``"float32"`` or ``"bfloat16"``, resolved: :mod:`robrep.precision`) runs the forward pass under
    autocast; weights, optimizer moments and the loss's reduction stay float32. It is recorded in ``state`` and a
    resume must use the precision the run started with (one run, one arithmetic).
    """
    check_budget(budget_minutes, max_steps)
    precision = check_precision(precision)
    params = [p for p in objective.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the objective has no trainable parameters (was the encoder frozen?)")
    # No weight decay on gains, biases, temperatures and other vectors/scalars (as in MAE/CLIP recipes).
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    device = params[0].device
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(seed)
    curve: list[dict[str, float]] = []
    step, seconds_before, segments = 0, 0.0, None
    if state is None:
        torch.manual_seed(seed)
    else:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a pretraining resume state (format {state.get('format')!r}, expected {STATE_FORMAT!r})")
        step, seconds_before = int(state["step"]), float(state["seconds"])
        started = state.get("precision", "float32")
        if started != precision:
            raise ValueError(f"the run to resume computed in {started}; resuming it in {precision} would mix "
                             f"arithmetics (pass precision={started})")
        if max_steps is None or max_steps <= step:
            raise ValueError(f"resuming at step {step} needs a larger step budget (steps=+N), got {max_steps}")
        objective.load_state_dict(state["objective"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        rng.bit_generator.state = state["rng"]["numpy"]
        segments, curve = [dict(s) for s in state["schedule"]], list(state["loss_curve"])
        if max_steps > segments[-1]["end"]:  # grown past the schedule: a warm restart over the added steps
            end = schedule_steps if schedule_steps is not None and schedule_steps >= max_steps else max_steps
            segments.append({"start": step, "warmup": min(warmup_steps, max(1, (end - step) // 10)), "end": end})
    objective.train()
    budget = budget_minutes * 60.0
    if segments is None and (schedule_steps is not None or max_steps is not None):
        segments = [{"start": 0, "warmup": warmup_steps, "end": schedule_steps if schedule_steps is not None
                     else max_steps}]
    recent: list[float] = []
    start = time.perf_counter()
    first_step = step
    bar = tqdm(total=max_steps, initial=step, disable=not progress, desc=f"pretrain {objective.encoder.family}",
               unit="step")
    last_step, last_time = step, start
    scalars = scalars or NullWriter()
    flops_per_step = None
    while True:
        elapsed = time.perf_counter() - start
        if (max_steps is not None and step >= max_steps) or (max_steps is None and elapsed >= budget):
            break
        if segments is None and step == warmup_steps:  # time budget: the schedule's length from the measured speed
            segments = [{"start": 0, "warmup": warmup_steps,
                         "end": max(warmup_steps + 1, int(budget / (elapsed / max(step, 1))))}]
        scale = schedule_scale(step, segments or [{"start": 0, "warmup": warmup_steps, "end": step + 1}])
        for group in opt.param_groups:
            group["lr"] = lr * max(scale, 0.01)
        batch = frames.batch(rng.integers(len(frames), size=batch_size), shift_pad=shift_pad, rng=rng)
        if flops_per_step is None:  # counted on a copy of the RNG stream, so the run itself is unchanged
            torch_rng = torch.get_rng_state()
            flops_per_step = step_flops(objective, batch)
            torch.set_rng_state(torch_rng)
        with autocast(device, precision):
            loss, logs = objective.loss(batch)
        loss = loss.float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        recent.append(loss.item())
        if step % log_every == 0 or step == first_step + 1:
            curve.append({"step": step, "seconds": round(seconds_before + time.perf_counter() - start, 2),
                          "loss": recent[-1],
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
    seconds = time.perf_counter() - start
    segments = segments or [{"start": 0, "warmup": warmup_steps, "end": step}]
    flops_per_step = int(flops_per_step or 0)
    state = {"format": STATE_FORMAT, "step": step, "seconds": seconds_before + seconds, "schedule": segments,
             "flops_per_step": flops_per_step, "precision": precision, "objective": objective.state_dict(),
             "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state},
             "loss_curve": curve}
    return {"steps": step, "schedule_steps": segments[-1]["end"], "seconds": seconds, "seconds_total": state["seconds"],
            "final_loss": float(np.mean(tail)), "loss_curve": curve, "flops_per_step": flops_per_step,
            "flops": flops_per_step * step, "schedule": segments, "state": state}


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
