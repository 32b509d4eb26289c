"""An exported policy file acting in robrep's evaluation loop, so the deployed artefact is tested closed-loop.

:class:`ExportedPolicy` drives a file written by ``robrep export`` (ONNX through onnxruntime, or TorchScript) behind
the interface :func:`robrep.eval.rollouts.evaluate` uses — batched observations ``(E, H, W, 3)`` uint8 and proprio
``(E, P)`` in, actions ``(E, A)`` in [-1, 1] out — executing each predicted chunk ``(E, k, A)`` the way the
checkpoint's :class:`policies.policy.Policy` would (``open_loop``: play the chunk's ``k`` actions, encoding an env
again only when its chunk is used up or it was reset; ``ensemble``: ACT temporal ensembling every step). Evaluated
on the same layouts as the PyTorch policy, per-episode outcomes pair up (``benchmarks/export_fidelity.py``).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from policies.chunking import TemporalEnsembler
from policies.export import Runner
from policies.model import check_chunk_execution
from policies.policy import RecordedEnv
from robrep.data.obs_keys import ObsKeys


class ExportedPolicy(RecordedEnv):
    """``path``: the exported file; ``meta``: its checkpoint's metadata (``Policy.meta``: task, env kwargs, obs keys,
    the policy config's chunk execution); ``threads``, ``runtime``, ``precision``: as :class:`policies.export.Runner`
    (an ONNX file in onnxruntime or OpenVINO)."""

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any], threads: int | None = None,
                 runtime: str = "onnxruntime", precision: str | None = None) -> None:
        self.runner = Runner(path, threads, runtime, precision)
        self.meta = dict(meta)
        self.obs_keys = ObsKeys.from_cfg(self.meta.get("obs_keys"))
        config = self.meta["policy_config"]
        self.chunk_execution = check_chunk_execution(config.get("chunk_execution", "ensemble"), 1)
        self.decay = float(config.get("ensemble_decay", 0.01))
        self.action_dim = int(self.meta["shape_meta"]["action_dim"])
        self.encoded_frames = 0  # frames passed to the file since construction
        self.reset(1)

    @property
    def num_envs(self) -> int:
        return len(self._fresh)

    def reset(self, num_envs: int = 1) -> None:
        """Forget every env's chunk (``num_envs`` envs from now on)."""
        self._fresh = np.ones(num_envs, dtype=bool)      # (E,) envs to encode at the next act
        self._next = np.zeros(num_envs, dtype=np.int64)  # open_loop: (E,) index of each env's next action in its chunk
        self._chunks: np.ndarray | None = None            # open_loop: (E, k, A) each env's current chunk
        self._ensembler: TemporalEnsembler | None = None  # ensemble: built at the first chunk (k, A known then)

    def reset_env(self, i: int) -> None:
        """Forget env ``i``'s chunk only (its episode ended)."""
        self._fresh[i] = True
        if self._ensembler is not None:
            self._ensembler.reset_env(i)

    def observation_needed(self) -> np.ndarray:
        """bool ``(E,)``: the envs whose image the next :meth:`act` reads (all, except mid-chunk with ``open_loop``)."""
        if self.chunk_execution != "open_loop" or self._chunks is None:
            return np.ones(self.num_envs, dtype=bool)
        return self._fresh | (self._next >= self._chunks.shape[1])

    def predict(self, images: np.ndarray, proprio: np.ndarray) -> np.ndarray:
        """One call of the file: uint8 ``(M, H, W, 3)``, proprio ``(M, P)`` → chunks float32 ``(M, k, A)``."""
        self.encoded_frames += len(images)
        return np.asarray(self.runner(images, np.asarray(proprio, np.float32)), np.float32)  # Runner: contiguous

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Batched observations (``obs_keys``) → actions float32 ``(E, A)`` clipped to [-1, 1]."""
        images, proprio = self.obs_keys.image_of(obs), self.obs_keys.proprio_of(obs)
        if len(images) != self.num_envs:
            if not self._fresh.all():
                raise ValueError(f"got {len(images)} observations but {self.num_envs} envs; call reset({len(images)})")
            self.reset(len(images))
        if self.chunk_execution == "ensemble":
            chunks = self.predict(images, proprio)
            if self._ensembler is None:
                self._ensembler = TemporalEnsembler(chunks.shape[1], chunks.shape[2], self.decay)
                self._ensembler.reset(self.num_envs)
            self._fresh[:] = False
            return np.clip(self._ensembler(chunks), -1.0, 1.0).astype(np.float32)
        need = np.nonzero(self.observation_needed())[0]  # (M,) envs to encode
        if len(need):
            chunks = self.predict(images[need], proprio[need])
            if self._chunks is None:
                self._chunks = np.zeros((self.num_envs, *chunks.shape[1:]), np.float32)
            self._chunks[need], self._next[need] = chunks, 0
        self._fresh[:] = False
        actions = self._chunks[np.arange(self.num_envs), self._next]
        self._next += 1
        return np.clip(actions, -1.0, 1.0).astype(np.float32)
