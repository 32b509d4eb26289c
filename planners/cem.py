"""Cross-entropy method over action sequences: pure maths, no model inside (a scheduler-like object).

:class:`CEM` keeps, per environment of a batch, a Gaussian over action sequences ``(H, A)``; each
:meth:`CEM.plan` call samples ``samples`` sequences per environment, clips them to the action bounds,
scores all of them with ONE call of ``cost_fn(actions (B, K, H, A)) -> costs (B, K)`` (the caller rolls
every candidate out in a single batched tensor operation), refits mean/std to the ``elites`` lowest-cost
sequences, and repeats for ``iterations`` rounds. The returned plan is the final mean ``(B, H, A)``;
model-predictive control executes its first action(s) and calls :meth:`CEM.plan` again, which warm-starts
from the previous mean shifted by the executed steps (the tail repeats the last action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class CEMConfig:
    """CEM hyperparameters (``configs/planner/cem.yaml``). Actions are in [low, high] (env units)."""

    horizon: int = 6            # H, steps per candidate sequence
    samples: int = 128          # K, candidates per environment and iteration
    elites: int = 16            # lowest-cost candidates the Gaussian is refitted to
    iterations: int = 3         # refits per plan call
    init_std: float = 0.5       # std of a fresh (or shifted-in) step, action units
    min_std: float = 0.05       # floor of the refitted std
    momentum: float = 0.1       # new = momentum * old + (1 - momentum) * elite statistics
    low: float = -1.0
    high: float = 1.0
    warm_start: bool = True     # shift the previous mean instead of restarting from zero

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.samples < 2 or self.iterations < 1:
            raise ValueError(f"need horizon >= 1, samples >= 2, iterations >= 1; got {self}")
        if not 1 <= self.elites <= self.samples:
            raise ValueError(f"elites must be in [1, samples={self.samples}], got {self.elites}")
        if not self.low < self.high:
            raise ValueError(f"action bounds must satisfy low < high, got [{self.low}, {self.high}]")
        if self.init_std <= 0 or self.min_std < 0 or not 0 <= self.momentum < 1:
            raise ValueError("need init_std > 0, min_std >= 0 and 0 <= momentum < 1")


CostFn = Callable[[torch.Tensor], torch.Tensor]


class CEM:
    """Batched CEM planner for ``batch`` environments with ``action_dim``-dimensional actions."""

    def __init__(self, cfg: CEMConfig, action_dim: int, batch: int = 1, device: str | torch.device = "cpu",
                 generator: torch.Generator | None = None) -> None:
        self.cfg, self.action_dim, self.device = cfg, int(action_dim), torch.device(device)
        self.generator = generator
        self.reset(batch)

    def reset(self, batch: int | None = None) -> None:
        """Forget every warm start (and optionally change the batch size)."""
        self.batch = int(batch if batch is not None else self.batch)
        self.mean = torch.zeros(self.batch, self.cfg.horizon, self.action_dim, device=self.device)

    def reset_env(self, i: int) -> None:
        """Forget environment ``i``'s warm start (its episode ended)."""
        self.mean[i] = 0.0

    def shift(self, steps: int = 1, envs: Sequence[int] | None = None) -> None:
        """Warm start after executing ``steps`` actions (of the environments ``envs``, default all): drop them,
        repeat the last planned action at the end."""
        if steps <= 0:
            return
        steps = min(steps, self.cfg.horizon)
        idx = slice(None) if envs is None else torch.as_tensor(list(envs), dtype=torch.long)
        m = self.mean[idx]
        self.mean[idx] = torch.cat([m[:, steps:], m[:, -1:].expand(-1, steps, -1)], dim=1)

    @torch.no_grad()
    def plan(self, cost_fn: CostFn, envs: Sequence[int] | None = None, init_mean: torch.Tensor | None = None,
             init_std: torch.Tensor | None = None) -> torch.Tensor:
        """Optimise the action sequences of the environments ``envs`` (default: all ``B``); returns their mean plans
        ``(b, H, A)`` (clipped), ``b = len(envs)``.

        ``cost_fn`` gets all candidates at once, ``(b, K, H, A)``, and returns ``(b, K)`` costs (lower is better).
        ``init_mean`` / ``init_std`` ``(b, H, A)`` replace the first iteration's Gaussian (default: the warm start
        and ``cfg.init_std``), e.g. a policy prior's proposal (:mod:`planners.prior`); the initial mean is always
        scored as candidate 0. Afterwards the planner holds the plan; call :meth:`shift` after executing its first
        action(s).
        """
        c = self.cfg
        rows = slice(None) if envs is None else torch.as_tensor(list(envs), dtype=torch.long)
        mean = self.mean[rows].clone() if c.warm_start else torch.zeros_like(self.mean[rows])
        std = torch.full_like(mean, c.init_std)
        if init_mean is not None:
            mean = init_mean.to(mean).expand_as(mean).clone()
        if init_std is not None:
            std = init_std.to(std).expand_as(std).clone()
        b, h, a = mean.shape
        for _ in range(c.iterations):
            noise = torch.randn(b, c.samples, h, a, device=self.device, generator=self.generator)
            candidates = (mean[:, None] + std[:, None] * noise).clamp(c.low, c.high)
            candidates[:, 0] = mean.clamp(c.low, c.high)  # the current mean is always a candidate
            costs = cost_fn(candidates)
            if costs.shape != (b, c.samples):
                raise ValueError(f"cost_fn returned shape {tuple(costs.shape)}, expected {(b, c.samples)}")
            idx = costs.topk(c.elites, dim=1, largest=False).indices  # (B, E)
            elite = candidates.gather(1, idx[:, :, None, None].expand(-1, -1, h, a))  # (B, E, H, A)
            mean = c.momentum * mean + (1 - c.momentum) * elite.mean(dim=1)
            std = (c.momentum * std + (1 - c.momentum) * elite.std(dim=1, unbiased=False)).clamp_min(c.min_std)
        self.mean[rows] = mean.clamp(c.low, c.high)
        return self.mean[rows].clone()
