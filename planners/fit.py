"""Training the latent transition model with a multi-step (rollout) loss, and its open-loop error vs horizon.

:func:`fit_dynamics` (read top to bottom): random start frames, the model rolls ``horizon`` steps open loop
from the true ``z_t`` through the true actions, the loss is the masked mean squared error to the true
``z_{t+1} … z_{t+H}`` (latents are standardised, so 1.0 ≈ the per-channel variance), AdamW; every
``eval_every`` steps the same loss on held-out episodes, keeping the best weights.
:func:`horizon_errors` is the diagnostic: mean squared error of the h-step open-loop prediction for
h = 1 … H on held-out windows, next to the "nothing moves" baseline ``ẑ_{t+h} = z_t``.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from planners.data import Transitions
from planners.dynamics import LatentDynamics


@dataclass
class DynamicsTrainConfig:
    """``train:`` in ``configs/plan.yaml``."""

    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    horizon: int = 4            # rollout-loss horizon (steps predicted open loop per window)
    eval_every: int = 250
    grad_clip: float = 1.0
    part_loss: bool = False     # true: the planner's distance (LatentMap.distance: image and proprio channels
                                # averaged apart) instead of the mean over every channel


#: ``distance(pred, target) -> (B, H)`` for latents ``(B, H, *S)``; ``None``: the mean squared error over channels.
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None


def rollout_loss(model: LatentDynamics, data: Transitions, idx: torch.Tensor, horizon: int,
                 distance: Distance = None) -> torch.Tensor:
    """Masked mean squared error (or ``distance``) of the ``horizon``-step open-loop rollouts from frames ``idx``
    (an :class:`~planners.dynamics.Ensemble`: the mean of its members' errors, each rolling out on its own)."""
    z0, actions, target, mask = data.window(idx, horizon)
    members = getattr(model, "members", None)  # an Ensemble: each member's own loss (averaged), not the mean's
    preds = [m.rollout(z0, actions) for m in members] if members is not None else [model.rollout(z0, actions)]
    loss = 0.0
    for pred in preds:  # (B, H, *S)
        err = distance(pred, target) if distance is not None else ((pred - target) ** 2).flatten(2).mean(-1)  # (B, H)
        loss = loss + (err * mask).sum() / mask.sum().clamp_min(1)
    return loss / len(preds)


@torch.no_grad()
def eval_loss(model: LatentDynamics, data: Transitions, horizon: int, batch: int = 1024,
              distance: Distance = None) -> float:
    model.eval()
    starts = data.starts(1)
    losses = [float(rollout_loss(model, data, starts[i: i + batch], horizon, distance)) * len(starts[i: i + batch])
              for i in range(0, len(starts), batch)]
    return sum(losses) / max(len(starts), 1)


def fit_dynamics(model: LatentDynamics, train: Transitions, valid: Transitions | None, cfg: DynamicsTrainConfig,
                 generator: torch.Generator, progress: bool = False, distance: Distance = None) -> dict:
    """Train ``model`` in place (best valid weights kept); returns ``{"history", "best_step", "seconds", ...}``.
    ``distance`` (with ``cfg.part_loss``: the latent map's) replaces the per-channel mean squared error."""
    start = time.perf_counter()
    starts = train.starts(1)
    if len(starts) == 0:
        raise ValueError("no training frame has a next frame: episodes of one frame cannot teach dynamics")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    best, best_state, best_step, history, window = math.inf, copy.deepcopy(model.state_dict()), 0, [], []
    for step in tqdm(range(1, cfg.steps + 1), disable=not progress, desc="dynamics", unit="step"):
        model.train()
        idx = starts[torch.randint(len(starts), (cfg.batch_size,), generator=generator)]
        loss = rollout_loss(model, train, idx, cfg.horizon, distance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if step % cfg.eval_every and step != cfg.steps:
            continue
        valid_loss = eval_loss(model, valid, cfg.horizon, distance=distance) if valid is not None else -step
        history.append({"step": step, "train_loss": sum(window) / len(window), "valid_loss": valid_loss})
        window = []
        if valid_loss < best:
            best, best_state, best_step = valid_loss, copy.deepcopy(model.state_dict()), step
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_step": best_step, "best_valid_loss": best if valid is not None else None,
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def horizon_errors(model: LatentDynamics, data: Transitions, max_horizon: int = 15, batch: int = 1024) -> list[dict]:
    """Per h = 1 … ``max_horizon``: open-loop MSE of the model and of the copy baseline over every held-out
    window that reaches h steps (``windows``: how many did)."""
    model.eval()
    starts = data.starts(1)
    sums = torch.zeros(max_horizon, dtype=torch.float64)
    copy_sums = torch.zeros(max_horizon, dtype=torch.float64)
    counts = torch.zeros(max_horizon, dtype=torch.float64)
    for i in range(0, len(starts), batch):
        z0, actions, target, mask = data.window(starts[i: i + batch], max_horizon)
        pred = model.rollout(z0, actions)
        err = ((pred - target) ** 2).flatten(2).mean(-1)  # (B, H)
        still = ((LatentDynamics.current(z0, data.history)[:, None] - target) ** 2).flatten(2).mean(-1)
        sums += (err * mask).sum(0).double()
        copy_sums += (still * mask).sum(0).double()
        counts += mask.sum(0).double()
    return [{"h": h + 1, "windows": int(counts[h]),
             "mse": float(sums[h] / counts[h]) if counts[h] else float("nan"),
             "copy_mse": float(copy_sums[h] / counts[h]) if counts[h] else float("nan")} for h in range(max_horizon)]


@dataclass
class ProgressTrainConfig:
    """``progress:`` in ``configs/plan.yaml``: the learned steps-to-go model (:class:`planners.reward.ProgressModel`)."""
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eval_every: int = 200


def fit_progress(model, train_z: torch.Tensor, train_togo: torch.Tensor, valid_z: torch.Tensor | None,
                 valid_togo: torch.Tensor | None, cfg: ProgressTrainConfig, generator: torch.Generator) -> dict:
    """Train a :class:`planners.reward.ProgressModel` in place on latents ``(F, *S)`` and their steps-to-go ``(F,)``
    (MSE in units of ``model.scale``), keeping the weights of the lowest valid MSE; returns the history."""
    start = time.perf_counter()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    target, best, best_state, best_step, history = train_togo / model.scale, math.inf, None, 0, []
    for step in range(1, cfg.steps + 1):
        model.train()
        idx = torch.randint(len(train_z), (cfg.batch_size,), generator=generator)
        loss = ((model.normalised(train_z[idx]) - target[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every and step != cfg.steps:
            continue
        model.eval()
        with torch.no_grad():
            vz, vt = (valid_z, valid_togo) if valid_z is not None and len(valid_z) else (train_z, train_togo)
            valid = float(((model(vz) - vt) ** 2).mean().sqrt())  # RMSE in env steps
        history.append({"step": step, "train_loss": float(loss.detach()), "valid_rmse_steps": valid})
        if valid < best:
            best, best_state, best_step = valid, copy.deepcopy(model.state_dict()), step
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_step": best_step, "best_valid_rmse_steps": best,
            "seconds": time.perf_counter() - start}
