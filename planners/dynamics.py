"""Latent transition models ``z' = T(z, a)`` over :class:`planners.latent.LatentMap` latents.

Both predict a residual (``z' = z + f(z, a)``) and share :meth:`LatentDynamics.rollout`, which rolls any batch
of start latents ``(B, *S)`` through action sequences ``(B, H, A)`` in H batched steps → ``(B, H, *S)``
(the CEM planner flattens its ``(envs, candidates)`` into that batch: no Python loop over candidates).

* :class:`PooledMLP` — latent ``(B, L)``: MLP on ``[z, a]``.
* :class:`TokenPredictor` — latent ``(B, T, d)`` tokens (DINO-WM-style): the action is embedded and added to
  every token, a small transformer (timm blocks) with learned token positions predicts the change of every token.
* :class:`Ensemble` — ``M`` independently initialised members of one of those (PETS-style): their mean is the
  prediction, their spread (:meth:`Ensemble.rollout_members`) tells the planner where the model is guessing.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn


class LatentDynamics(nn.Module):
    """Base: ``forward(z, a (B, A)) -> z' (B, *S)``; ``config`` rebuilds it (``build_dynamics``).

    ``z`` is the current latent ``(B, *S)``, or with ``history`` k > 1 the last k latents ``(B, k, *S)``, oldest
    first (DINO-WM's frame history; frames ``frameskip`` env steps apart)."""

    name = "base"
    frameskip = 1  # env steps per model step (build_dynamics sets it; the action is that many env actions)
    history = 1    # latents the model reads (build_dynamics sets it)

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open loop: ``z0`` (``(B, *S)``, or ``(B, k, *S)`` with history k), ``actions (B, H, A)`` → predicted
        ``z_1 … z_H`` as ``(B, H, *S)``; with history, each prediction joins the window the next step reads."""
        if actions.ndim != 3 or actions.shape[0] != z0.shape[0]:
            raise ValueError(f"actions must be (B={z0.shape[0]}, H, A), got {tuple(actions.shape)}")
        out, z = [], z0
        for h in range(actions.shape[1]):
            nxt = self(z, actions[:, h])
            out.append(nxt)
            z = torch.cat([z[:, 1:], nxt[:, None]], dim=1) if self.history > 1 else nxt
        return torch.stack(out, dim=1)

    @staticmethod
    def current(z: torch.Tensor, history: int) -> torch.Tensor:
        """The newest latent of a model input: ``z[:, -1]`` with history, else ``z``."""
        return z[:, -1] if history > 1 else z


class PooledMLP(LatentDynamics):
    """``z (B, L)``, ``a (B, A)`` → ``z + MLP([z, a])`` with ``layers`` hidden layers of ``hidden`` units."""

    name = "pooled_mlp"

    def __init__(self, latent_shape: tuple[int, ...], action_dim: int, hidden: int = 256, layers: int = 2,
                 history: int = 1) -> None:
        super().__init__()
        if len(latent_shape) != 1:
            raise ValueError(f"PooledMLP needs flat latents (L,), got {latent_shape} (use latent kind 'pooled')")
        (dim,) = latent_shape
        self.history = int(history)
        mods: list[nn.Module] = []
        width = self.history * dim + action_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        mods.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*mods)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)  # starts as the identity: z' = z
        self.config = {"name": self.name, "latent_shape": list(latent_shape), "action_dim": int(action_dim),
                       "hidden": int(hidden), "layers": int(layers), "history": self.history}

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.current(z, self.history) + self.net(torch.cat([z.flatten(1), a.to(z.dtype)], dim=-1))


class TokenPredictor(LatentDynamics):
    """``z (B, T, d)``, ``a (B, A)`` → ``z + transformer(z + pos + W a)`` (``depth`` timm blocks, ``heads`` heads)."""

    name = "token_transformer"

    def __init__(self, latent_shape: tuple[int, ...], action_dim: int, width: int = 64, depth: int = 2,
                 heads: int = 4, history: int = 1) -> None:
        super().__init__()
        if len(latent_shape) != 2:
            raise ValueError(f"TokenPredictor needs token latents (T, d), got {latent_shape} (latent kind 'tokens')")
        tokens, dim = latent_shape
        self.tokens, self.history = int(tokens), int(history)
        self.inp = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.normal_(self.pos, std=0.02)
        if self.history > 1:  # which frame of the history a token belongs to
            self.frame = nn.Parameter(torch.zeros(1, self.history, 1, width))
            nn.init.normal_(self.frame, std=0.02)
        self.act = nn.Linear(action_dim, width)
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio=2.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.config = {"name": self.name, "latent_shape": list(latent_shape), "action_dim": int(action_dim),
                       "width": int(width), "depth": int(depth), "heads": int(heads), "history": self.history}

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        frames = z if self.history > 1 else z[:, None]  # (B, k, T, d)
        x = self.inp(frames) + self.pos[:, None] + self.act(a.to(z.dtype))[:, None, None]
        if self.history > 1:
            x = x + self.frame
        x = self.blocks(x.flatten(1, 2))[:, -self.tokens:]  # every frame's tokens attend; the newest are read out
        return frames[:, -1] + self.out(self.norm(x))


class Ensemble(LatentDynamics):
    """``M`` members of one architecture, each initialised on its own: ``forward`` / :meth:`rollout` give the
    members' mean; :meth:`rollout_members` gives every member's own open-loop rollout ``(M, B, H, *S)``, whose
    spread grows where the training data did not pin the dynamics down. Trained with one loss per member on the
    same minibatch (:func:`planners.fit.rollout_loss`); the members differ by their initialisation only."""

    def __init__(self, members: list[LatentDynamics]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.name, self.history = members[0].name, members[0].history
        self.config = {**members[0].config, "ensemble": len(members)}

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(z, a) for m in self.members]).mean(0)

    def rollout_members(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Every member rolled out on its own: ``z0 (B, *S)``, ``actions (B, H, A)`` → ``(M, B, H, *S)``."""
        return torch.stack([m.rollout(z0, actions) for m in self.members])

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The members' mean rollout ``(B, H, *S)`` (each member feeds back its own predictions)."""
        return self.rollout_members(z0, actions).mean(0)


DYNAMICS = {cls.name: cls for cls in (PooledMLP, TokenPredictor)}


def build_dynamics(name: str, latent_shape: tuple[int, ...], action_dim: int, frameskip: int = 1,
                   ensemble: int = 1, **kwargs: Any) -> LatentDynamics:
    """The transition model ``name`` (``pooled_mlp`` | ``token_transformer``) for latents of ``latent_shape``;
    with ``ensemble`` M > 1, an :class:`Ensemble` of M of them (initialised one after the other from the global
    torch generator).

    ``frameskip`` r: one model step spans r env steps; its action is the r env actions concatenated, so the model
    takes ``action_dim`` = r × the env's action width (the caller passes the product)."""
    if name not in DYNAMICS:
        raise KeyError(f"unknown dynamics model {name!r}; known: {sorted(DYNAMICS)}")
    if int(frameskip) < 1 or action_dim % int(frameskip):
        raise ValueError(f"frameskip must be >= 1 and divide action_dim ({action_dim}), got {frameskip}")
    if int(ensemble) < 1:
        raise ValueError(f"ensemble must be >= 1, got {ensemble}")
    members = [DYNAMICS[name](tuple(latent_shape), action_dim, **kwargs) for _ in range(int(ensemble))]
    for m in members:
        m.config.setdefault("history", int(getattr(m, "history", 1)))
    model = members[0] if len(members) == 1 else Ensemble(members)
    for m in [model, *members]:
        m.frameskip = int(frameskip)
        m.config["frameskip"] = int(frameskip)
    return model
