"""The trainable BC network: per-frame trunk → (+ normalised proprio) → frame stack → head → action chunk.

Shapes (``S`` = ``frame_stack``, ``k`` = ``chunk``, ``A`` = action dim, ``P`` = proprio dim,
``F_d`` = ``frame_dim`` = trunk output + ``P`` if ``use_proprio``)::

    frames {key: (B, S, ...)}, proprio (B, S, P) ──stacked_vectors──► (B, S, F_d)
    (F_d also counts the instruction's sentence embedding ``frames["instruction"]`` with ``instruction_input``)
    (B, S, F_d) ──flatten──► head ──► (B, k·A) normalised ──unnormalise──► actions (B, k, A) in [-1, 1]

Frames are ordered oldest first; at an episode's start the first frame is repeated. The network is
rebuilt from ``(policy config, shape_meta)`` by :func:`build_model`, so a checkpoint stores only those
plus the state dict (which includes the normalisation statistics, and a fine-tuned encoder's weights: its
architecture shell is passed in as ``encoder``).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from policies.cnn import ConvTrunk
from policies.finetune import FinetuneTrunk
from policies.heads import make_head
from policies.normalization import Normalizer
from policies.trunks import FeatureTrunk, NullTrunk
from robrep.encoders.base import Encoder
from robrep.precision import autocast, resolve_precision


class BCModel(nn.Module):
    """Trunk + normalisers + head. ``min_std`` floors the fitted standard deviations."""

    def __init__(self, trunk: nn.Module, head: str, head_kwargs: Mapping[str, Any], action_dim: int,
                 proprio_dim: int, frame_stack: int = 1, chunk: int = 1, use_proprio: bool = True,
                 instruction_dim: int = 0) -> None:
        super().__init__()
        if frame_stack < 1 or chunk < 1:
            raise ValueError(f"frame_stack and chunk must be >= 1, got {frame_stack}, {chunk}")
        self.trunk = trunk
        self.action_dim, self.proprio_dim = int(action_dim), int(proprio_dim)
        self.frame_stack, self.chunk, self.use_proprio = int(frame_stack), int(chunk), bool(use_proprio)
        self.action_norm = Normalizer(self.action_dim)
        self.proprio_norm = Normalizer(self.proprio_dim)
        self.instruction_dim = int(instruction_dim)  # > 0: frames carry "instruction" (B, instruction_dim)
        self.frame_dim = trunk.output_dim + (self.proprio_dim if self.use_proprio else 0) + self.instruction_dim
        self.head = make_head(head, self.frame_stack * self.frame_dim, self.chunk * self.action_dim, **head_kwargs)

    def set_statistics(self, proprio: torch.Tensor, actions: torch.Tensor, min_std: float) -> None:
        """Fit the normalisers on training frames: ``proprio (F, P)``, ``actions (F, A)``."""
        self.proprio_norm.load_state_dict(Normalizer.fit(proprio, min_std).state_dict())
        self.action_norm.load_state_dict(Normalizer.fit(actions, min_std).state_dict())

    def frame_vectors(self, frames: Mapping[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        """One frame per sample: ``frames {key: (B, ...)}``, ``proprio (B, P)`` raw → ``(B, F_d)``."""
        if self.trunk.output_dim:
            vec = self.trunk(frames)
        else:  # no perception (trunk none): the proprio alone
            vec = proprio.new_zeros(proprio.shape[0], 0, dtype=torch.float32)
        if self.use_proprio:
            vec = torch.cat([vec, self.proprio_norm.normalize(proprio.float())], dim=-1)
        if self.instruction_dim:
            vec = torch.cat([vec, frames["instruction"].to(vec.dtype)], dim=-1)
        return vec

    def stacked_vectors(self, frames: Mapping[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        """``frames {key: (B, S, ...)}``, ``proprio (B, S, P)`` → ``(B, S, F_d)``."""
        b, s = proprio.shape[:2]
        flat = {k: v.flatten(0, 1) for k, v in frames.items()}
        return self.frame_vectors(flat, proprio.flatten(0, 1)).reshape(b, s, -1)

    def loss(self, frames: Mapping[str, torch.Tensor], proprio: torch.Tensor, actions: torch.Tensor,
             precision: str = "float32") -> torch.Tensor:
        """Training objective (MSE or NLL in normalised units) for target chunks ``actions (B, k, A)`` raw; the
        trunk runs at ``precision`` (autocast, :mod:`robrep.precision`), the head in float32."""
        with autocast(proprio.device, precision):
            x = self.stacked_vectors(frames, proprio).flatten(1)
        return self.head.loss(x.float(), self.action_norm.normalize(actions).flatten(1))

    def predict(self, stack: torch.Tensor) -> torch.Tensor:
        """Frame stack ``(B, S, F_d)`` → deterministic action chunk ``(B, k, A)``, raw units clipped to [-1, 1]."""
        out = self.head.predict(stack.flatten(1)).reshape(-1, self.chunk, self.action_dim)
        return self.action_norm.unnormalize(out).clamp(-1.0, 1.0)


#: Keys of a policy config (``configs/policy/*.yaml``); anything else is a typo and an error.
POLICY_KEYS = frozenset({"name", "trunk", "readout", "readout_kwargs", "token_dropout", "cnn", "finetune", "head",
                         "head_kwargs", "frame_stack", "chunk", "use_proprio", "min_std", "ensemble_decay", "train",
                         "feature_shifts", "feature_shift_pad", "chunk_execution", "instruction_input"})
#: How a policy executes its predicted chunks (``chunk_execution``; :class:`policies.policy.Policy`): ``ensemble``
#: encodes every step and averages the overlapping chunks (ACT temporal ensembling, the default); ``open_loop``
#: encodes an env once per chunk and executes the chunk's ``k`` actions without looking (k× fewer encoder calls).
CHUNK_EXECUTIONS = ("ensemble", "open_loop")
#: Trunks built on a pretrained encoder (need an ``EncoderSpec``): frozen cached features, or fine-tuned.
ENCODER_TRUNKS = frozenset({"features", "finetune"})


def check_policy_config(policy_cfg: Mapping[str, Any]) -> None:
    """Raise ``KeyError`` naming unknown keys of a policy config, ``ValueError`` for a bad ``chunk_execution``
    (see :func:`check_chunk_execution`)."""
    unknown = sorted(set(policy_cfg) - POLICY_KEYS)
    if unknown:
        raise KeyError(f"unknown policy config key(s) {unknown}; known: {sorted(POLICY_KEYS)}")
    check_chunk_execution(policy_cfg.get("chunk_execution", "ensemble"), int(policy_cfg.get("frame_stack", 1)))


def resolve_train_precision(policy_cfg: dict[str, Any], device: str) -> dict[str, Any]:
    """``policy_cfg`` with ``train.precision: auto`` resolved for ``device`` (:func:`robrep.precision.resolve_precision`),
    in place and returned: a stored policy config, and the sweep's policy key, name the precision that ran."""
    train = policy_cfg.get("train", {})
    if str(train.get("precision", "float32")) == "auto":
        train["precision"] = resolve_precision("auto", device)
    return policy_cfg


def check_chunk_execution(mode: Any, frame_stack: int) -> str:
    """``mode`` if it names a way to execute chunks (:data:`CHUNK_EXECUTIONS`) usable with ``frame_stack``, else
    ``ValueError``: ``open_loop`` skips the frames between re-encodes, so a frame stack would have no features for
    them."""
    if mode not in CHUNK_EXECUTIONS:
        raise ValueError(f"unknown chunk_execution {mode!r}; known: {', '.join(CHUNK_EXECUTIONS)}")
    if mode == "open_loop" and frame_stack > 1:
        raise ValueError(f"chunk_execution 'open_loop' needs frame_stack 1, got frame_stack {frame_stack}: the frames "
                         "executed open loop are never encoded, so the stack would lack their features")
    return str(mode)


def build_trunk(policy_cfg: Mapping[str, Any], shape_meta: Mapping[str, Any], encoder: Encoder | None = None
                ) -> nn.Module:
    """The per-frame trunk named by ``policy_cfg["trunk"]`` (``features`` | ``cnn`` | ``finetune`` | ``none``: no
    perception, the proprio alone — the privileged-state oracle with ``obs_keys.proprio=[state]``).
    ``finetune`` takes the trainable ``encoder`` module (its weights become the trunk's)."""
    kind = policy_cfg["trunk"]
    if kind == "features":
        return FeatureTrunk(shape_meta["feature_dim"], tuple(shape_meta["grid"]), policy_cfg["readout"],
                            policy_cfg.get("readout_kwargs") or {}, policy_cfg.get("token_dropout", 0.0))
    if kind == "cnn":
        return ConvTrunk(tuple(shape_meta["image_size"]), **dict(policy_cfg["cnn"]))
    if kind == "finetune":
        if encoder is None:
            raise ValueError("trunk 'finetune' needs the trainable encoder: build_model(..., encoder=...)")
        return FinetuneTrunk(encoder, tuple(shape_meta["image_size"]), policy_cfg["readout"],
                             policy_cfg.get("readout_kwargs") or {}, policy_cfg.get("token_dropout", 0.0),
                             **dict(policy_cfg["finetune"]))
    if kind == "none":
        if not policy_cfg.get("use_proprio", True):
            raise ValueError("trunk 'none' reads nothing but the proprio: use_proprio must be true")
        return NullTrunk()
    raise KeyError(f"unknown policy trunk {kind!r}; known: features, cnn, finetune, none")


def build_model(policy_cfg: Mapping[str, Any], shape_meta: Mapping[str, Any], encoder: Encoder | None = None
                ) -> BCModel:
    """Rebuild the network of a policy config (``configs/policy/*.yaml``, resolved) and its ``shape_meta``
    (``action_dim``, ``proprio_dim`` and ``feature_dim``/``grid`` or ``image_size``); ``encoder`` = the
    trainable encoder of a ``finetune`` trunk (ignored otherwise)."""
    check_policy_config(policy_cfg)
    trunk = build_trunk(policy_cfg, shape_meta, encoder)
    return BCModel(trunk, policy_cfg["head"], dict(policy_cfg.get("head_kwargs") or {}),
                   shape_meta["action_dim"], shape_meta["proprio_dim"], frame_stack=policy_cfg.get("frame_stack", 1),
                   chunk=policy_cfg.get("chunk", 1), use_proprio=policy_cfg.get("use_proprio", True),
                   instruction_dim=int(shape_meta.get("instruction_dim", 0)) if policy_cfg.get("instruction_input") else 0)
