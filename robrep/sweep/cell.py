"""One cell of a data-efficiency sweep as a function: train (arm, N, seed), evaluate, write a record.

:class:`CellSpec` holds everything a cell needs, resolved (no config objects, no override strings), so a
launcher can pickle it to another process or machine; :func:`run_cell` is the whole cell.
:func:`arm_config` composes an arm's ``configs/arm/<arm>.yaml`` (encoder + policy + weights), and
:meth:`CellSpec.from_cfg` is the one factory from a command config to a spec — ``robrep cell`` and
``robrep sweep`` both use it.

The record ``<sweep_dir>/cells/<arm>_n<N>_s<seed>.json`` (see :mod:`robrep.sweep.table`) is written atomically
at the very end, so an interrupted cell leaves nothing half-done; when it exists the cell is skipped. The trained
policy is kept under ``policy_dir`` so a re-run whose evaluation was interrupted does not train again, and a training
run killed midway continues from its resume state there (``<policy>.fit-state.pt``).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from policies.model import ENCODER_TRUNKS, resolve_train_precision
from robrep import results
from robrep.config import compose
from robrep.data.obs_keys import ObsKeys
from robrep.data.sources import resolve_dataset
from robrep.digest import json_hash
from robrep.encoders.spec import EncoderSpec
from robrep.precision import resolve_precision
from robrep.sweep.table import cell_name, cell_path
from robrep.tb import tb_dir
from robrep.threads import thread_limit

log = logging.getLogger(__name__)

#: Seconds between a cell's training resume states (:mod:`policies.fit_state`): the most training a kill loses.
RESUME_EVERY_S = 120.0


@dataclass(frozen=True)
class CellSpec:
    """A sweep cell, fully resolved. ``policy`` is the resolved ``configs/policy`` node of the arm; ``encoder`` is
    ``None`` for end-to-end arms (CNN); ``eval_visuals`` ``None`` evaluates in the demos' visual setting;
    ``config`` is the resolved cell config stored in the policy checkpoint (provenance only); ``obs_keys`` the
    dataset's image and proprio keys (:class:`robrep.data.obs_keys.ObsKeys`; robrep's files: the defaults)."""

    arm: str
    n: int
    seed: int
    dataset: str
    sweep_dir: str
    policy_dir: str
    policy: dict[str, Any]
    encoder: EncoderSpec | None = None
    episodes: int = 50
    eval_seed_start: int = 0
    eval_split: str = "dev"
    eval_visuals: str | None = None
    num_envs: int = 10
    videos: int = 0
    cache_dir: str = "cache/features"
    use_language: bool = True
    feature_batch_size: int = 64
    threads: int = 1
    device: str = "cpu"
    progress: bool = False
    command: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    tensorboard: str | None = None     # TensorBoard scalars of the training (robrep.tb); not part of the policy key
    obs_keys: ObsKeys = ObsKeys()

    def __post_init__(self) -> None:
        """Refuse degenerate settings before anything is trained (one message naming every bad value)."""
        bad = [f"{k}={getattr(self, k)!r} (must be >= {low})" for k, low in
               (("n", 1), ("episodes", 1), ("num_envs", 1), ("videos", 0), ("threads", 1), ("feature_batch_size", 1))
               if not isinstance(getattr(self, k), int) or getattr(self, k) < low]
        try:  # the layouts exist in the split (test: only its first TEST_LAYOUTS)
            from robrep.seeds import eval_seeds

            eval_seeds(self.episodes if isinstance(self.episodes, int) and self.episodes > 0 else 1,
                       self.eval_seed_start, self.eval_split)
        except ValueError as exc:
            bad.append(f"eval_split={self.eval_split!r}, eval_seed_start={self.eval_seed_start}: {exc}")
        if bad:
            raise ValueError(f"cell {self.arm} n={self.n} seed={self.seed}: " + "; ".join(bad))

    @property
    def name(self) -> str:
        """``<arm>_n<N>_s<seed>``: the stem of the cell's record and policy files."""
        return cell_name(self.arm, self.n, self.seed)

    @property
    def record_path(self) -> Path:
        return cell_path(self.sweep_dir, self.arm, self.n, self.seed)

    @property
    def policy_key(self) -> str:
        """Content key of the policy this cell trains (16 hex): sha256 of the dataset file's bytes, the encoder
        (name, architecture, precision, the weights file's bytes or the random-init seed), the resolved policy
        config, N, seed and language use. A trained policy is reused only under the same key, so a policy trained
        on other data, weights or settings is never picked up by a cell that did not make it. The default
        ``chunk_execution: ensemble`` is left out of the config hashed, so keys made before that option existed
        still hold; so are ``train.min_delta: 0``, ``train.schedule: constant`` and the default ``obs_keys``."""
        encoder = None
        if self.encoder is not None:
            e = self.encoder
            weights = e.weights_resolved if e.weights_resolved and Path(e.weights_resolved).is_file() else e.weights
            encoder = {"name": e.name, "arch": e.arch, "precision": e.precision,
                       "weights": _content_hash(weights) if weights and Path(weights).is_file() else weights,
                       "init_seed": e.init_seed if e.weights is None else None}
        policy = {k: v for k, v in self.policy.items()
                  if (k, v) not in (("chunk_execution", "ensemble"), ("instruction_input", False))}
        if "train" in policy:  # options at their defaults of old are left out: keys made before them still hold
            policy["train"] = {k: v for k, v in policy["train"].items()
                               if (k, v) not in (("min_delta", 0.0), ("min_delta", 0), ("schedule", "constant"))}
        payload = {"dataset": _content_hash(self.dataset), "encoder": encoder, "policy": policy, "n": self.n,
                   "seed": self.seed, "use_language": self.use_language}
        if not self.obs_keys.is_default:
            payload["obs_keys"] = self.obs_keys.to_dict()
        return json_hash(payload)

    @property
    def done(self) -> bool:
        """Whether the cell's record exists *and* was made by this spec's policy (same :attr:`policy_key`): a record
        left by other settings (another training rule, dataset, weights) is stale and the cell runs again."""
        if not self.record_path.exists():
            return False
        return results.read_json(self.record_path).get("policy_key") == self.policy_key

    @property
    def policy_path(self) -> Path:
        """``<policy_dir>/<arm>_n<N>_s<seed>_<policy_key>.pt``: content-addressed (see :attr:`policy_key`)."""
        return Path(self.policy_dir) / f"{self.name}_{self.policy_key}.pt"

    @classmethod
    def from_cfg(cls, cfg: DictConfig, arm_cfg: DictConfig | None = None, n: int | None = None,
                 seed: int | None = None, precision: str | None = None) -> "CellSpec":
        """The cell of a ``robrep cell`` or ``robrep sweep`` config ``cfg`` (shared keys: dataset, episodes, ...)
        for the arm composed in ``arm_cfg`` (default: ``cfg`` itself, as in ``robrep cell``), at ``n``/``seed``
        (default ``cfg.n``/``cfg.seed``). ``precision`` is the encoder's resolved compute precision (default:
        ``cfg.encoder_precision`` resolved for ``cfg.device``; the sweep resolves it once for all its cells)."""
        arm_cfg = cfg if arm_cfg is None else arm_cfg
        n = int(cfg.n if n is None else n)
        seed = int(cfg.seed if seed is None else seed)
        # auto resolved here, so the policy key and record name the precision that ran
        policy = resolve_train_precision(OmegaConf.to_container(arm_cfg.policy, resolve=True),
                                         str(cfg.get("device", "cpu")))
        encoder = None
        if policy["trunk"] in ENCODER_TRUNKS:
            encoder = EncoderSpec.from_cfg(arm_cfg, precision=precision or resolve_precision(
                str(cfg.get("encoder_precision", "float32")), str(cfg.get("device", "cpu"))))
        sweep_dir = str(cfg.sweep_dir)
        policy_dir = str(cfg.get("policy_dir") or Path("runs/sweeps") / Path(sweep_dir).name / "policies")
        eval_visuals = cfg.get("eval_visuals")
        name = cell_name(str(arm_cfg.arm), n, seed)
        tb = tb_dir(bool(cfg.get("tensorboard", False)), Path(sweep_dir).name, name)
        return cls(
            arm=str(arm_cfg.arm), n=n, seed=seed, dataset=str(resolve_dataset(cfg.dataset)), sweep_dir=sweep_dir, policy_dir=policy_dir,
            policy=policy, encoder=encoder, episodes=int(cfg.episodes), eval_seed_start=int(cfg.get("eval_seed_start", 0)),
            eval_split=str(cfg.get("eval_split", "dev")),
            eval_visuals=None if eval_visuals is None else str(eval_visuals), num_envs=int(cfg.num_envs),
            videos=int(cfg.get("videos", 0)), cache_dir=str(cfg.cache_dir),
            use_language=bool(cfg.use_language) and bool(arm_cfg.get("use_language", True)),  # an arm may withhold it
            feature_batch_size=int(cfg.feature_batch_size), threads=int(cfg.get("threads", 1)), device=str(cfg.device),
            progress=bool(cfg.progress), command=f"{results.command_line()} [cell {name}]",
            obs_keys=ObsKeys.from_cfg(cfg if "obs_keys" in cfg else arm_cfg),
            config={**OmegaConf.to_container(cfg, resolve=True), "arm": str(arm_cfg.arm), "n": n, "seed": seed,
                    "policy": policy, "encoder": OmegaConf.to_container(arm_cfg.encoder, resolve=True),
                    "weights": arm_cfg.get("weights")},
            tensorboard=None if tb is None else str(tb),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _content_hash(path: str | Path) -> str:
    """sha256 (16 hex) of a file's bytes, computed once per (path, size, mtime) in this process."""
    stat = Path(path).stat()
    return _hash_file(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    from robrep.digest import file_hash

    return file_hash(path)


def arm_config(arm: str, weights_budget: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The arm's composed cell config (``configs/cell.yaml`` with ``arm=<arm>``): its ``encoder`` group, ``policy``
    group and ``weights`` (``weights/<encoder>_<weights_budget>.pt``), plus ``overrides`` (e.g.
    ``policy.train.steps=500``) applied to every arm."""
    return compose("cell", [f"arm={arm}", f"weights_budget={weights_budget}", *overrides])


def cell_features(spec: CellSpec, threads: int | None = None, demos: Sequence[str] | None = None) -> Path | None:
    """The feature cache of ``spec``'s frozen encoder over its dataset (computed when missing, on ``threads``
    threads; with ``demos``, a partial cache of those demos: :func:`stage_demos`); ``None`` for arms that train on
    images (CNN, fine-tuning)."""
    from policies.train import policy_feature_cache

    if spec.policy["trunk"] != "features":
        return None
    with thread_limit(threads or spec.threads):
        return policy_feature_cache(spec.policy, spec.encoder.load(spec.device), spec.dataset, spec.cache_dir,
                                    spec.encoder.label, spec.feature_batch_size, spec.use_language, spec.progress,
                                    spec.obs_keys, demos=demos)


def stage_demos(specs: Sequence[CellSpec], extra_seeds: Sequence[int] = ()) -> list[str]:
    """The demos the cells ``specs`` (one dataset) train and validate on: each cell's training subset (and that of
    every seed of ``extra_seeds`` at the cells' N: the tuning seed) plus the ``valid`` demos, in file order. A
    stage at N = 10 encodes these, not the whole file."""
    from robrep.data.demo_file import DemoFile

    with DemoFile(specs[0].dataset) as demos:
        wanted = set(demos.demo_names("valid")) if "valid" in demos.filter_keys else set()
        for n, seed in {(s.n, s.seed) for s in specs} | {(s.n, int(e)) for s in specs for e in extra_seeds}:
            wanted.update(demos.subset(n, seed))
        return [name for name in demos.demo_names() if name in wanted]


def ensure_policy(spec: CellSpec) -> Path:
    """The cell's policy at ``spec.policy_path``, trained unless it exists (content-addressed: same inputs, same
    file). A training run killed midway (a sweep interrupted, a session's end) continues from its last resume
    state (saved every :data:`RESUME_EVERY_S` s beside the policy) when the cell runs again."""
    from policies.train import train_policy

    path = spec.policy_path
    if not path.exists():
        with thread_limit(spec.threads):
            train_policy(spec.policy, spec.dataset, spec.n, spec.seed, path, encoder=spec.encoder,
                         cache_dir=spec.cache_dir, use_language=spec.use_language,
                         feature_batch_size=spec.feature_batch_size, device=spec.device, config=spec.config,
                         progress=spec.progress, tensorboard=spec.tensorboard, obs_keys=spec.obs_keys,
                         resume_every_s=RESUME_EVERY_S)
    return path


def train_cell(spec: CellSpec) -> dict[str, Any]:
    """:func:`ensure_policy`, then its training record (``policies.train.FitResult`` fields: valid_mse, best_step,
    ...) plus ``path`` and ``lr``/``weight_decay``. Tuning (:mod:`robrep.sweep.tune`) calls it on grid variants;
    the variant it keeps is the file :func:`run_cell` then finds."""
    from policies.checkpoint import read_policy_checkpoint

    path = ensure_policy(spec)
    train = dict(read_policy_checkpoint(path)["train"])
    train.pop("history", None)
    return {**train, "path": str(path), "lr": spec.policy["train"]["lr"],
            "weight_decay": spec.policy["train"]["weight_decay"]}


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Train (unless ``spec.policy_path`` exists), evaluate on ``spec.episodes`` shared layouts, write the record;
    returns it. A cell whose record exists returns that record without running."""
    from policies import load_policy
    from robrep.eval.rollouts import evaluate, policy_demo_seeds

    if spec.done:
        log.info(f"{spec.name}: done already ({spec.record_path})")
        return results.read_json(spec.record_path)
    policy_path, policy_key = spec.policy_path, spec.policy_key
    with thread_limit(spec.threads):
        t0 = time.perf_counter()
        ensure_policy(spec)
        train_s = time.perf_counter() - t0
        policy = load_policy(policy_path, device=spec.device)
        eval_env = {} if spec.eval_visuals is None else {"visuals": spec.eval_visuals}
        result = evaluate(policy, spec.episodes, seed_start=spec.eval_seed_start, split=spec.eval_split,
                          num_envs=spec.num_envs,
                          video_episodes=spec.videos, progress=spec.progress, demo_seeds=policy_demo_seeds(policy),
                          env_kwargs=eval_env)
    videos = result.write_videos(Path(spec.sweep_dir) / "videos" / f"{spec.name}.mp4") if spec.videos else []
    meta = policy.meta
    enc = meta.get("encoder") or {}
    uses_encoder = spec.policy["trunk"] in ENCODER_TRUNKS
    record = {
        "arm": spec.arm, "task": result.task, "encoder": enc.get("name", ""),
        "weights": enc.get("weights", ""), "weights_hash": (enc.get("identity") or {}).get("weights_hash", ""),
        "readout": (spec.policy.get("readout", "") if uses_encoder else f"{spec.policy['cnn']['arch']}+spatial_softmax"
                    if spec.policy["trunk"] == "cnn" else "none"),
        "trunk": spec.policy["trunk"],
        "head": spec.policy.get("head", ""), "n": spec.n, "seed": spec.seed,
        "demo_visuals": str(policy.env_kwargs.get("visuals", "clean")),
        "eval_visuals": str(result.env_kwargs.get("visuals", "clean")),
        **result.summary(), "train_seconds": round(float(meta.get("train", {}).get("seconds", train_s)), 1),
        "eval_seconds": round(result.wall_s, 1), "valid_mse": meta.get("train", {}).get("valid_mse"),
        **{k: meta.get("train", {}).get(k) for k in ("steps", "best_step", "max_steps", "stopped", "cap_bound")},
        "train_curve": meta.get("train", {}).get("history", []), "policy_config": spec.policy,
        "eval_split": spec.eval_split, "episode_seeds": result.seeds, "episode_success": [int(s) for s in result.success],
        "episode_length": [r.length for r in result.records], "policy": str(policy_path),
        "policy_key": policy_key, "policy_hash": meta.get("hash", ""),
        "dataset": spec.dataset, "dataset_hash": _content_hash(spec.dataset), "command": spec.command, "videos": [str(v) for v in videos],
    }
    results.write_json(record, spec.record_path)
    log.info(f"{spec.name}: {result.format()} -> {spec.record_path}")
    return record
