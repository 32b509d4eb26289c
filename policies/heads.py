"""BC heads: a policy-input vector ``(B, in_dim)`` → an action chunk ``(B, out_dim)`` in normalised units.

``out_dim = chunk · action_dim`` (the next ``chunk`` actions, flattened time-major). Every head has
``loss(x, target)`` (a scalar to minimise, ``target (B, out_dim)``) and a deterministic
``predict(x) -> (B, out_dim)``. Pick one by name with :func:`make_head` (``configs/policy/*.yaml``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden`` (each followed by dropout), then a linear output."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
    mods.append(nn.Linear(hidden if layers else in_dim, out_dim))
    return nn.Sequential(*mods)


class Head(nn.Module):
    """Base: ``loss(x (B, in_dim), target (B, out_dim)) -> ()`` and ``predict(x) -> (B, out_dim)``."""

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MLPHead(Head):
    """Deterministic regression: an MLP trained with mean squared error."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, layers, out_dim, dropout)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.net(x), target)


class GMMHead(Head):
    """Gaussian mixture (``modes`` diagonal components over the whole chunk), as robomimic's GMM policy:
    ``MixtureSameFamily(Categorical(logits), Independent(Normal(mean, softplus(·) + min_std), 1))``.
    Trained by negative log-likelihood; ``predict`` = the mean of the most likely mode (deterministic)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0,
                 modes: int = 5, min_std: float = 1e-2) -> None:
        super().__init__()
        self.modes, self.out_dim, self.min_std = int(modes), int(out_dim), float(min_std)
        self.net = mlp(in_dim, hidden, layers, self.modes * (2 * self.out_dim + 1), dropout)

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``logits (B, K)``, ``means (B, K, out_dim)``, ``stds (B, K, out_dim)``."""
        out = self.net(x)
        b, k, d = x.shape[0], self.modes, self.out_dim
        logits = out[:, :k]
        means = out[:, k : k + k * d].reshape(b, k, d)
        stds = F.softplus(out[:, k + k * d :].reshape(b, k, d)) + self.min_std
        return logits, means, stds

    def distribution(self, x: torch.Tensor) -> D.MixtureSameFamily:
        """The action-chunk distribution for ``x (B, in_dim)``: event shape ``(out_dim,)``."""
        logits, means, stds = self.params(x)
        return D.MixtureSameFamily(D.Categorical(logits=logits), D.Independent(D.Normal(means, stds), 1))

    def loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean NLL per sample (nats, over the ``out_dim`` normalised dimensions)."""
        return -self.distribution(x).log_prob(target).mean()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        logits, means, _ = self.params(x)
        best = logits.argmax(dim=1)
        return means[torch.arange(len(best), device=means.device), best]


HEADS: dict[str, Callable[..., Head]] = {"mlp": MLPHead, "gmm": GMMHead}


def make_head(name: str, in_dim: int, out_dim: int, **kwargs) -> Head:
    """Head ``name`` (``mlp`` | ``gmm``) mapping ``(B, in_dim)`` → ``(B, out_dim)``; ``kwargs`` = its options."""
    if name not in HEADS:
        raise KeyError(f"unknown head {name!r}; known: {sorted(HEADS)}")
    return HEADS[name](in_dim, out_dim, **kwargs)
