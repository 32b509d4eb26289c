"""Why a latent planner fails, measured: is its cost monotone along expert trajectories, and how fast does its
transition model's open-loop error grow against the design's bound?

Cost monotonicity (:func:`cost_monotonicity`): along a held-out expert episode the steps-to-go fall by one per
step; a cost a planner can descend must fall with them. Reported per cost as the mean over episodes of the
Spearman rank correlation between cost and steps-to-go (1 = perfectly monotone, 0 = no signal), and the share
of episodes where it is positive.

Error growth (:func:`error_growth`, :func:`lipschitz`, :func:`error_bound`): DESIGN.md bounds the h-step
open-loop error of a transition model with per-step error δ and Lipschitz constant L, started from the true
latent (ε0 = 0), by ``δ (L^h − 1)/(L − 1)`` (``h δ`` at L = 1). δ is measured as a high quantile of the one-step
error norm on held-out transitions, L as the largest ratio ``‖T(z + u, a) − T(z, a)‖ / ‖u‖`` over small random
perturbations ``u`` of held-out latents; L ≤ 1 means the model is non-expansive and its error grows at most
linearly. Norms are Euclidean over the whole latent (standardised units).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from planners.data import Transitions
from planners.dynamics import LatentDynamics


def steps_to_go(lengths: list[int]) -> np.ndarray:
    """Per frame of episodes laid end to end, the steps left to the episode's last frame ``(F,)`` (0 at the end)."""
    return np.concatenate([np.arange(n - 1, -1, -1) for n in lengths]).astype(np.float64)


def episode_index(lengths: list[int]) -> np.ndarray:
    """Per frame of episodes laid end to end, its episode's index ``(F,)``."""
    return np.repeat(np.arange(len(lengths)), lengths)


def cost_monotonicity(costs: Mapping[str, np.ndarray], lengths: list[int]) -> list[dict]:
    """Per named cost ``(F,)`` over the frames of episodes of ``lengths``: the mean, over episodes of ≥ 3 frames,
    of Spearman's ρ between the cost and the steps-to-go, its standard error, and the share of episodes with
    ρ > 0. A usable cost has ρ near 1."""
    from scipy.stats import spearmanr

    togo, ep = steps_to_go(lengths), episode_index(lengths)
    rows = []
    for name, cost in costs.items():
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape != togo.shape:
            raise ValueError(f"cost {name!r} has shape {cost.shape}, expected {togo.shape} (one value per frame)")
        rhos = []
        for e, n in enumerate(lengths):
            if n >= 3:
                c = cost[ep == e]
                rhos.append(0.0 if np.ptp(c) == 0 else float(spearmanr(c, togo[ep == e]).statistic))
        r = np.asarray(rhos)
        rows.append({"cost": name, "episodes": len(r), "spearman_mean": round(float(r.mean()), 4),
                     "spearman_se": round(float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else math.nan, 4),
                     "share_positive": round(float((r > 0).mean()), 4)})
    return rows


@torch.no_grad()
def one_step_errors(model: LatentDynamics, data: Transitions, batch: int = 4096) -> torch.Tensor:
    """‖T(z_t, a_t) − z_{t+1}‖ (one model step: ``frameskip`` env steps) for every held-out frame with a next
    step in its episode, ``(M,)``."""
    model.eval()
    starts = data.starts(1)
    out = []
    for i in range(0, len(starts), batch):
        z0, actions, target, _ = data.window(starts[i: i + batch], 1)
        out.append((model(z0, actions[:, 0]) - target[:, 0]).flatten(1).norm(dim=1))
    return torch.cat(out)


@torch.no_grad()
def lipschitz(model: LatentDynamics, data: Transitions, scale: float = 1e-2, samples: int = 2048,
              generator: torch.Generator | None = None) -> dict[str, float]:
    """Empirical Lipschitz constant of ``z ↦ T(z, a)`` on held-out latents: for ``samples`` frames, a random
    direction ``u`` of norm ``scale · √dim``; returns the max and the mean of ``‖T(z+u, a) − T(z, a)‖ / ‖u‖``."""
    model.eval()
    g = generator or torch.Generator().manual_seed(0)
    starts = data.starts(1)
    z, a, _, _ = data.window(starts[torch.randint(len(starts), (samples,), generator=g)], 1)
    a = a[:, 0]
    u = torch.randn(z.shape, generator=g)
    u = u / u.flatten(1).norm(dim=1).view(-1, *[1] * (z.dim() - 1)) * scale * math.sqrt(z[0].numel())
    ratio = (model(z + u, a) - model(z, a)).flatten(1).norm(dim=1) / u.flatten(1).norm(dim=1)
    return {"max": float(ratio.max()), "mean": float(ratio.mean())}


@torch.no_grad()
def error_growth(model: LatentDynamics, data: Transitions, max_horizon: int = 15, batch: int = 1024
                 ) -> list[dict]:
    """Per h = 1 … ``max_horizon``: mean and 95th percentile of the open-loop error norm ``‖ẑ_h − z_h‖`` over the
    held-out windows that reach h steps."""
    model.eval()
    starts = data.starts(1)
    errs: list[list[torch.Tensor]] = [[] for _ in range(max_horizon)]
    for i in range(0, len(starts), batch):
        z0, actions, target, mask = data.window(starts[i: i + batch], max_horizon)
        norm = (model.rollout(z0, actions) - target).flatten(2).norm(dim=2)  # (B, H)
        for h in range(max_horizon):
            errs[h].append(norm[mask[:, h], h])
    rows = []
    for h in range(max_horizon):
        e = torch.cat(errs[h]) if errs[h] else torch.empty(0)
        rows.append({"h": h + 1, "windows": len(e), "error_mean": float(e.mean()) if len(e) else math.nan,
                     "error_p95": float(torch.quantile(e, 0.95)) if len(e) else math.nan})
    return rows


def error_bound(delta: float, lipschitz_constant: float, h: int, eps0: float = 0.0) -> float:
    """DESIGN.md's bound on the h-step open-loop error: ``L^(h−1) ε0 + δ (L^h − 1)/(L − 1)`` (``ε0 + h δ`` at L = 1)."""
    L = float(lipschitz_constant)
    if h < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    if abs(L - 1.0) < 1e-9:
        return eps0 + h * delta
    return L ** (h - 1) * eps0 + delta * (L ** h - 1) / (L - 1)


def bound_table(model: LatentDynamics, data: Transitions, max_horizon: int = 15, quantile: float = 0.95
                ) -> tuple[list[dict], dict[str, float]]:
    """Measured error growth beside the bound with δ = the ``quantile`` of one-step errors and L = the empirical
    max ratio: rows (h, error_mean, error_p95, bound) and the estimates (delta, delta_mean, L_max, L_mean)."""
    one = one_step_errors(model, data)
    lip = lipschitz(model, data)
    est = {"delta": float(torch.quantile(one, quantile)), "delta_mean": float(one.mean()),
           "L_max": lip["max"], "L_mean": lip["mean"]}
    rows = [{**r, "bound": error_bound(est["delta"], est["L_max"], r["h"])}
            for r in error_growth(model, data, max_horizon)]
    return rows, est
