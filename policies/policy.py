"""``Policy``: a trained BC policy ready to act in an env (frozen encoder + readout + head, the CNN, or a
fine-tuned encoder + readout + head).

Usage (one env or a vector env)::

    policy = load_policy("runs/policies/push_demos_mae_mlp_n10_s0.pt")
    env = envs.registration.make_env(policy.task, **policy.env_kwargs)
    policy.reset(num_envs=1)
    action = policy.act(obs)            # obs: image uint8 (H, W, 3), proprio (P,) → float32 (A,) in [-1, 1]
    actions = policy.act(batched_obs)   # image (B, H, W, 3), proprio (B, P) → (B, A); policy.reset_env(i) on autoreset

``A`` = :attr:`Policy.action_dim`, the training file's action dimension (4 for robrep's tasks). The obs keys read
are those the policy was trained on (:attr:`Policy.obs_keys`, the checkpoint's ``obs_keys``): ``image`` and
``proprio`` for robrep's files, e.g. ``agentview_image`` and ``robot0_eef_pos`` + ``robot0_gripper_qpos``
(concatenated) for a policy trained on a robomimic dataset.

Per env the policy keeps the last ``frame_stack`` frame vectors (the first frame is repeated after a
reset, as in training) and the last ``chunk`` action chunks for temporal ensembling.

How a chunk of ``k > 1`` actions is executed is the policy config's ``chunk_execution``:

- ``ensemble`` (default): every step encodes every env's frame, predicts a chunk and executes the average of
  the ``k`` overlapping predictions for this step (ACT temporal ensembling, :mod:`policies.chunking`).
- ``open_loop``: an env is encoded only when its last chunk is used up (or after a reset); it then executes
  that chunk's ``k`` actions one per step without looking at the frames in between. The encoder — most of an
  evaluation's time — runs on each env once every ``k`` steps instead of every step, at the price of ``k``-step
  open-loop control between observations (no reaction to what happens inside a chunk). It needs
  ``frame_stack: 1``. Like any setting, choose it on development layouts, not on the test table.

``Policy.encoded_frames`` counts the frames encoded (frozen encoder or image trunk) since construction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from policies.checkpoint import PolicyCheckpointError, read_policy_checkpoint
from robrep.encoders.spec import EncoderSpec
from policies.chunking import TemporalEnsembler
from policies.finetune import encoder_from_identity
from policies.model import BCModel, build_model, check_chunk_execution
from robrep.data.obs_keys import ObsKeys
from robrep.encoders.base import Encoder, per_image_texts
from robrep.precision import autocast


class RecordedEnv:
    """The env a checkpoint's demos were recorded in, read from ``self.meta`` (what ``robrep.eval.evaluate`` builds
    for a policy): shared by :class:`Policy` and :class:`policies.exported.ExportedPolicy`."""

    meta: dict[str, Any]

    @property
    def task(self) -> str:
        """Task name for ``envs.registration.make_env`` (e.g. ``"push"``)."""
        return str(self.meta["task"])

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """Env constructor kwargs the demos were recorded with (``image_size``, ...)."""
        return dict(self.meta["env_kwargs"])


class Policy(RecordedEnv):
    """Acts from observations. ``model`` (eval mode) holds the trunk and head; ``encoder`` is the frozen
    encoder for feature policies, ``None`` for image trunks (the from-scratch CNN; a fine-tuned encoder,
    which lives in ``model.trunk.encoder``). ``meta`` is the checkpoint without its weights (``task``,
    ``env_kwargs``, ``config``, ``train`` losses, ...). ``chunk_execution`` (``ensemble`` | ``open_loop``, see
    the module docstring) overrides the policy config's (default: the config's, ``ensemble`` if it has none)."""

    def __init__(self, model: BCModel, encoder: Encoder | None, meta: Mapping[str, Any],
                 device: str | torch.device = "cpu", chunk_execution: str | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.encoder = None if encoder is None else encoder.freeze()
        self.meta = dict(meta)
        self.obs_keys = ObsKeys.from_cfg(self.meta.get("obs_keys"))  # older checkpoints: the defaults
        config = self.meta["policy_config"]
        mode = config.get("chunk_execution", "ensemble") if chunk_execution is None else chunk_execution
        self.chunk_execution = check_chunk_execution(mode, model.frame_stack)
        if chunk_execution is not None:  # the meta names what acts
            self.meta["policy_config"] = {**config, "chunk_execution": self.chunk_execution}
        decay = float(config.get("ensemble_decay", 0.01))
        self.ensembler = TemporalEnsembler(model.chunk, model.action_dim, decay)
        self.encoded_frames = 0                  # frames passed to the encoder (or image trunk) since construction
        self._stack: torch.Tensor | None = None  # (E, S, frame_dim)
        self._fresh = np.ones(0, dtype=bool)     # (E,) envs whose stack (open_loop: chunk) restarts at the next act
        self._chunks: torch.Tensor | None = None  # open_loop: (E, k, A) each env's last predicted chunk (CPU float32)
        self._next = np.zeros(0, dtype=np.int64)  # open_loop: (E,) index in its chunk of each env's next action
        self.reset(1)

    # ------------------------------------------------------------------ env description
    @property
    def action_dim(self) -> int:
        """``A``: the size of each action (the training demos' ``actions.shape[-1]``)."""
        return self.model.action_dim

    @property
    def num_envs(self) -> int:
        return len(self._fresh)

    @property
    def uses_language(self) -> bool:
        """Whether the encoder takes the instruction (language-conditioned features were trained on)."""
        enc = self.meta.get("encoder") or {}
        return self.encoder is not None and bool(enc.get("use_language")) and hasattr(self.encoder, "encode_with_language")

    @property
    def reads_instruction(self) -> bool:
        """Whether acting needs the instruction: a language-conditioned encoder, or ``instruction_input`` (its sentence
        embedding is part of every frame vector)."""
        return self.uses_language or self.model.instruction_dim > 0

    # ------------------------------------------------------------------ state
    def reset(self, num_envs: int = 1) -> None:
        """Clear every env's frame stack and action-chunk history; expect ``num_envs`` envs."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self._stack, self._chunks = None, None
        self._fresh = np.ones(num_envs, dtype=bool)
        self._next = np.zeros(num_envs, dtype=np.int64)
        self.ensembler.reset(num_envs)

    def reset_env(self, i: int) -> None:
        """Clear env ``i``'s state only (after a vector env auto-reset it); with ``open_loop`` its queued actions
        are dropped and it is encoded at the next ``act``."""
        if not 0 <= i < self.num_envs:
            raise IndexError(f"env index {i} out of range for {self.num_envs} envs")
        self._fresh[i] = True
        self.ensembler.reset_env(i)

    # ------------------------------------------------------------------ acting
    def _texts(self, obs: Mapping[str, Any], batch: int) -> list[str] | None:
        if not self.reads_instruction:
            return None
        texts = obs.get("instruction", self.meta.get("instruction"))
        if texts is None:
            raise ValueError("this policy reads the instruction and the training demos had several: "
                             "pass obs['instruction'] (a string, or one per env)")
        return per_image_texts(texts, batch)

    @torch.no_grad()
    def frame_inputs(self, images: np.ndarray, texts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """uint8 ``(B, H, W, 3)`` → the trunk's per-frame inputs: frozen features ``tokens (B, N, D)``
        (+ ``global_token (B, D)``) rounded through float16 as in the feature cache, or the images; with
        ``instruction_input`` also ``instruction (B, 384)``, the sentence embedding of each frame's text."""
        if self.encoder is None:
            out = {"image": torch.from_numpy(np.ascontiguousarray(images)).to(self.device)}
        else:
            feats = self.encoder.encode_frames(images, texts if self.uses_language else None)
            out = {"tokens": feats.tokens.half().float()}
            if feats.global_token is not None and self.meta["shape_meta"].get("has_global_token", True):
                out["global_token"] = feats.global_token.half().float()
        if self.model.instruction_dim:
            from robrep.encoders.language import embed_sentences

            out["instruction"] = embed_sentences(list(texts)).to(self.device)
        return out

    def _validated(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, bool]:
        """``obs`` → ``(images uint8 (B, H, W, 3), proprio (B, P), single)`` after checking keys, shapes and finiteness
        (``single``: the obs was un-batched)."""
        keys = self.obs_keys
        missing = keys.missing(obs)
        if missing:
            raise KeyError(f"Policy.act needs obs{missing} (the policy was trained on the image {keys.image!r} and the "
                           f"proprio {list(keys.proprio)}); got keys {sorted(obs)}")
        images, proprio = keys.image_of(obs), keys.proprio_of(obs)
        single = images.ndim == 3
        if single:
            images, proprio = images[None], proprio[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"obs[{keys.image!r}] must be uint8 (B, H, W, 3) or (H, W, 3), got {images.dtype} "
                             f"{np.asarray(obs[keys.image]).shape}")
        b = len(images)
        if proprio.shape != (b, self.model.proprio_dim):
            raise ValueError(f"obs proprio {list(keys.proprio)} must be ({b}, {self.model.proprio_dim}) together, "
                             f"got {proprio.shape}")
        if not np.isfinite(proprio).all():
            bad = sorted({int(i) for i in np.nonzero(~np.isfinite(proprio))[0]})
            raise ValueError(f"obs proprio {list(keys.proprio)} is not finite for env(s) {bad}: {proprio[bad].tolist()}")
        return images, proprio, single

    @torch.no_grad()
    def predict_chunks(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Stateless prediction: observations (as :meth:`act`, batched ``B``) → each frame's action chunk, float32
        ``(B, k, A)`` in [-1, 1], read from that frame alone (needs ``frame_stack`` 1); no per-env state is read or
        changed. What a planner samples around (:class:`planners.prior.PolicyPrior`)."""
        if self.model.frame_stack != 1:
            raise ValueError(f"predict_chunks reads one frame; this policy stacks {self.model.frame_stack}")
        images, proprio, single = self._validated(obs)
        vec = self._frame_vectors(images, proprio, self._texts(obs, len(images)))  # (B, frame_dim)
        chunks = np.clip(self.model.predict(vec[:, None]).detach().to("cpu", torch.float32).numpy(), -1.0, 1.0)
        return chunks[0] if single else chunks

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """``obs[image]`` uint8 ``(B, H, W, 3)`` and ``obs[proprio keys]`` ``(B, P_i)`` (concatenated to ``(B, P)``,
        finite) → float32 actions ``(B, A)`` clipped to [-1, 1]; un-batched ``(H, W, 3)``/``(P_i,)`` → ``(A,)``. The
        keys are :attr:`obs_keys` (``image``, ``proprio`` unless trained otherwise). Optional ``obs["instruction"]``
        (str or one per env) for language-conditioned encoders and ``instruction_input`` policies. Other keys are ignored. One batched encoder call: on every env
        (``ensemble``), or (``open_loop``) only on the envs whose chunk is used up or that were reset — the others
        execute their chunk's next action without an encoder call."""
        images, proprio, single = self._validated(obs)
        b = len(images)
        if b != self.num_envs:
            if self._stack is None and self._chunks is None and self._fresh.all():
                self.reset(b)  # first act after reset(): adopt the batch size
            else:
                raise ValueError(f"got {b} observations but the policy tracks {self.num_envs} envs; call reset({b})")
        if self.chunk_execution == "open_loop":
            actions = self._act_open_loop(images, proprio, self._texts(obs, b))
            return actions[0] if single else actions
        vec = self._frame_vectors(images, proprio, self._texts(obs, b))  # (B, frame_dim)
        fresh = torch.from_numpy(self._fresh).to(self.device)
        if self._stack is None:
            self._stack = vec[:, None].repeat(1, self.model.frame_stack, 1)
        else:
            rolled = torch.cat([self._stack[:, 1:], vec[:, None]], dim=1)
            self._stack = torch.where(fresh[:, None, None], vec[:, None].expand_as(rolled), rolled)
        self._fresh[:] = False
        actions = self.ensembler(self.model.predict(self._stack))
        actions = np.clip(actions, -1.0, 1.0)  # the action space (the envs clip the same way)
        return actions[0] if single else actions

    def observation_needed(self) -> np.ndarray:
        """Which envs' observation images the next :meth:`act` will encode, bool ``(E,)``: with ``open_loop`` only the
        envs whose chunk is used up or that were reset (the others' images are validated but not read, so an
        evaluation loop may skip rendering them: ``envs.tabletop.TabletopEnv.skip_next_images``); every env with
        ``ensemble``."""
        if self.chunk_execution != "open_loop" or self._chunks is None:
            return np.ones(self.num_envs, dtype=bool)
        return self._fresh | (self._next >= self.model.chunk)

    def _frame_vectors(self, images: np.ndarray, proprio: np.ndarray, texts: Sequence[str] | None) -> torch.Tensor:
        """uint8 ``(M, H, W, 3)`` + proprio ``(M, P)`` → per-frame vectors float32 ``(M, frame_dim)``: one batched
        encoder (or image trunk) call at the training precision, counted in :attr:`encoded_frames`."""
        self.encoded_frames += len(images)
        frames = self.frame_inputs(images, texts)
        with autocast(self.device, self.meta["policy_config"]["train"].get("precision")):  # as trained
            return self.model.frame_vectors(frames, torch.from_numpy(proprio).to(self.device)).float()

    def _act_open_loop(self, images: np.ndarray, proprio: np.ndarray, texts: list[str] | None) -> np.ndarray:
        """``open_loop`` acting on validated ``images (E, H, W, 3)``, ``proprio (E, P)``: encode (one batched call)
        the envs that are fresh or whose chunk is used up, give them a new chunk ``(k, A)``, and return every env's
        next queued action, float32 ``(E, A)`` in [-1, 1]."""
        k, e = self.model.chunk, self.num_envs
        if self._chunks is None:
            self._chunks = torch.zeros(e, k, self.model.action_dim)
        need = np.nonzero(self._fresh | (self._next >= k))[0]  # (M,) envs to encode
        if len(need):
            vec = self._frame_vectors(images[need], proprio[need],
                                      None if texts is None else [texts[i] for i in need])  # (M, F_d)
            chunks = self.model.predict(vec[:, None])  # frame_stack 1: (M, 1, F_d) → (M, k, A)
            self._chunks[torch.from_numpy(need)] = chunks.detach().to("cpu", torch.float32)
            self._next[need] = 0
        self._fresh[:] = False
        actions = self._chunks[torch.arange(e), torch.from_numpy(self._next)].numpy().astype(np.float32)  # (E, A)
        self._next += 1
        return np.clip(actions, -1.0, 1.0)  # the action space (the envs clip the same way)


def load_policy(path: str | os.PathLike, device: str = "cpu", chunk_execution: str | None = None) -> Policy:
    """Rebuild the policy saved at ``path``: its network from the checkpoint and, for feature policies,
    the frozen encoder via ``load_encoder``; refuses (:class:`PolicyCheckpointError`) an encoder whose
    weights hash differs from the one recorded at training time. A fine-tuned policy carries its encoder's
    weights (rebuilt from the recorded architecture; the base weights file is not needed, nor checked).
    ``chunk_execution`` overrides the checkpoint's (acting only: the network is the same, see :class:`Policy`)."""
    data = read_policy_checkpoint(path)
    record = data["encoder"]
    finetuned = data["policy_config"]["trunk"] == "finetune"
    shell = encoder_from_identity(record["identity"]) if finetuned else None
    model = build_model(data["policy_config"], data["shape_meta"], encoder=shell)
    model.load_state_dict(data["state_dict"])
    model.requires_grad_(False)
    encoder = None
    if record is not None and not finetuned:
        encoder = EncoderSpec.from_record(record).load(device)
        expected, found = record["identity"]["weights_hash"], encoder.weights_hash()
        if found != expected:
            raise PolicyCheckpointError(
                f"{Path(path)}: the policy was trained on features of encoder weights {expected} "
                f"({record['identity']['family']}, weights={record['weights']!r}) but re-loading them gives {found}; "
                "the encoder weights changed since training: retrain the policy or restore the original weights")
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return Policy(model, encoder, meta, device, chunk_execution=chunk_execution)
