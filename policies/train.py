"""Behaviour-cloning training: data from the feature cache (or demo images for the CNN and the fine-tuned
encoder) → a policy checkpoint.

:func:`fit` is the loop (read it top to bottom): random minibatches of training frames, AdamW (a fine-tuned
encoder's tail in its own parameter group, :func:`param_groups`), every
``eval_every`` steps the action MSE on the ``valid`` demos, the best state kept, early stopping after
``patience`` evaluations without improvement. :func:`train_policy` gathers the data of the nested subset
``train_n{N}_seed{seed}``, seeds everything in one marked place, fits and writes the checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm import tqdm

from policies.checkpoint import save_policy_checkpoint
from policies.fit_state import FitResume
from robrep.failpoints import failpoint
from robrep.encoders.spec import EncoderSpec
from policies.datasets import DemoTensors, load_demo_tensors
from policies.model import ENCODER_TRUNKS, BCModel, build_model, check_policy_config, resolve_train_precision
from robrep.data.demo_file import DemoFile, subset_key
from robrep.data.feature_cache import FeatureCache, compute_features, file_hash
from robrep.data.obs_keys import ObsKeys
from robrep.data.sources import resolve_dataset
from robrep.digest import json_hash
from robrep.encoders.base import Encoder
from robrep.precision import autocast
from robrep.tb import NullWriter, ScalarWriter, scalar_writer


#: Learning-rate schedules over the step budget (TrainConfig.schedule).
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Optimisation settings (``train:`` in ``configs/policy/*.yaml``).

    The step budget is :meth:`budget`: ``steps`` when ``epochs`` is None; otherwise ``epochs`` passes over the
    training frames (``ceil(epochs * frames / batch_size)``, so it grows with N), at least ``min_steps`` and at
    most ``steps`` (a ceiling: when it decides the budget the cap *binds*, which :class:`FitResult` reports).
    With ``evals`` set, validation runs ``evals`` times over the budget (``eval_every = ceil(budget / evals)``)
    and ``patience`` counts those evaluations, so early stopping scales with the budget too."""

    steps: int = 2000             # gradient steps at most (early stopping may end sooner); with epochs: the ceiling
    batch_size: int = 64          # frames per step (sampled with replacement)
    lr: float = 1e-3              # AdamW learning rate (the peak, with a schedule)
    schedule: str = "constant"    # constant | cosine: lr follows a half cosine from `lr` to 0 over the step budget
                                  # (torch CosineAnnealingLR, stepped every step; early stopping may end it sooner)
    weight_decay: float = 1e-4    # AdamW decoupled weight decay
    eval_every: int = 100         # steps between validation evaluations (unless `evals` is set)
    patience: int = 10            # evaluations without progress (see min_delta) before stopping
    min_delta: float = 0.0        # progress = a valid MSE below (1 - min_delta) x the last progress point's (relative;
                                  # Lightning's EarlyStopping min_delta, made scale-free); the kept weights are still
                                  # the lowest valid MSE. > 0 stops a run whose running minimum only creeps down by
                                  # evaluation noise, and cap_bound then means real progress was cut off
    epochs: float | None = None   # budget in passes over the training frames (None: `steps`)
    min_steps: int = 1            # with epochs: the budget's floor (small N)
    evals: int | None = None      # validation points over the budget (None: every `eval_every` steps)
    grad_clip: float | None = 1.0  # max gradient norm (None = off)
    eval_batch_size: int = 256    # frames per forward pass when evaluating
    precision: str = "float32"    # float32 | bfloat16 (autocast, robrep.precision): halves a ResNet-18 step here

    def __post_init__(self) -> None:
        """Degenerate budgets would write an untrained checkpoint that looks like a result: refuse them."""
        bad = [f"{k}={getattr(self, k)!r}" for k in ("steps", "batch_size", "eval_every", "patience", "eval_batch_size",
                                                      "min_steps") if int(getattr(self, k)) < 1]
        bad += [f"lr={self.lr!r}" for _ in [0] if not self.lr > 0]
        bad += [f"epochs={self.epochs!r}" for _ in [0] if self.epochs is not None and not self.epochs > 0]
        bad += [f"evals={self.evals!r}" for _ in [0] if self.evals is not None and int(self.evals) < 1]
        bad += [f"min_delta={self.min_delta!r}" for _ in [0] if not 0.0 <= float(self.min_delta) < 1.0]
        bad += [f"schedule={self.schedule!r} (constant | cosine)" for _ in [0] if self.schedule not in SCHEDULES]
        if bad:
            raise ValueError(f"policy.train: {', '.join(bad)} (each must be >= 1; lr, epochs > 0; 0 <= min_delta < 1)")

    def budget(self, frames: int) -> tuple[int, int, bool]:
        """``(max_steps, eval_every, ceiling_decides)`` for ``frames`` training frames (see the class docstring)."""
        if self.epochs is None:
            steps, capped = int(self.steps), True
        else:
            wanted = max(int(self.min_steps), math.ceil(float(self.epochs) * frames / int(self.batch_size)))
            steps, capped = min(wanted, int(self.steps)), wanted >= int(self.steps)
        every = math.ceil(steps / int(self.evals)) if self.evals else min(int(self.eval_every), steps)
        return steps, every, capped


@dataclass
class FitResult:
    """What :func:`fit` reports. Losses: ``train_loss`` = the objective (MSE or NLL, normalised units)
    averaged over the steps before the best evaluation; ``valid_mse``/``train_mse`` = action MSE in raw
    action units ([-1, 1]) of the kept (best) weights on all valid / training frames."""

    steps: int
    best_step: int
    train_loss: float
    valid_mse: float
    train_mse: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    max_steps: int = 0            # the step budget (TrainConfig.budget)
    eval_every: int = 0
    stopped: str = ""             # "early" (patience ran out) | "budget" (max_steps reached)
    cap_bound: bool = False       # the budget ended training while valid MSE still made progress (a progress point,
                                  # see TrainConfig.min_delta, among the last `patience` evaluations): more steps
                                  # could have helped
    progress_step: int = 0        # the step of the last progress point (= best_step when min_delta is 0)


def to_device(frames: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in frames.items()}


@torch.no_grad()
def evaluate_mse(model: BCModel, data: DemoTensors, batch_size: int = 256, precision: str = "float32") -> float:
    """Mean squared error (raw action units) of the predicted chunks over every frame of ``data``; the trunk
    runs at ``precision`` as in training."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        frames, proprio, actions = data.batch(idx)
        with autocast(device, precision):
            vectors = model.stacked_vectors(to_device(frames, device), proprio.to(device)).float()
        pred = model.predict(vectors)
        total += float(((pred - actions.to(device)) ** 2).sum())
        count += actions.numel()
    return total / max(count, 1)


def param_groups(model: BCModel, lr: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: every trainable parameter at ``lr``, except a fine-tuned encoder's tail
    (``model.trunk.tail_parameters()``), which gets its own group at ``model.trunk.encoder_lr``."""
    tail_of = getattr(model.trunk, "tail_parameters", None)
    tail = [p for p in tail_of() if p.requires_grad] if tail_of is not None else []
    in_tail = {id(p) for p in tail}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in in_tail], "lr": lr}]
    if tail:
        groups.append({"params": tail, "lr": float(model.trunk.encoder_lr)})
    return groups


def fit(model: BCModel, train: DemoTensors, valid: DemoTensors | None, cfg: TrainConfig,
        generator: torch.Generator, progress: bool = False, scalars: ScalarWriter | None = None,
        resume: FitResume | None = None) -> FitResult:
    """Train ``model`` in place for at most ``cfg.budget(len(train))`` steps and leave it in eval mode holding the
    best (lowest valid MSE) weights. Without valid demos the last weights are kept. At every evaluation
    ``scalars`` (a TensorBoard writer, :mod:`robrep.tb`) gets ``train/loss``, ``valid/mse``, ``train/lr`` and
    ``train/steps_per_s``. With ``resume``, the loop's state is saved there at evaluations (at most every
    ``resume.every_s`` s) and a saved one is continued from (:mod:`policies.fit_state`); ``seconds`` then counts
    every run's training time."""
    start = time.perf_counter()
    scalars = scalars or NullWriter()
    last_step, last_time = 0, start
    max_steps, eval_every, _ = cfg.budget(len(train))
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps) if cfg.schedule == "cosine"
                 else None)
    best_score, best_state, best_step, best_loss = math.inf, copy.deepcopy(model.state_dict()), 0, math.nan
    progress_score, progress_step = math.inf, 0  # early stopping's reference (min_delta)
    history: list[dict[str, float]] = []
    window: list[float] = []
    stale, step, stopped = 0, 0, "budget"
    saved = resume.load() if resume is not None else None
    if saved is not None:  # continue a killed run: every piece of state the next step reads
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        best_state, history = saved["best_state"], list(saved["history"])
        best_score, best_step, best_loss = saved["best_score"], saved["best_step"], saved["best_loss"]
        progress_score, progress_step, stale = saved["progress_score"], saved["progress_step"], saved["stale"]
        step, start = saved["step"], start - saved["seconds"]
        last_step, last_time = step, time.perf_counter()
    bar = tqdm(range(step + 1, max_steps + 1), disable=not progress, desc="train", unit="step", initial=step,
               total=max_steps)
    for step in bar:
        model.train()
        idx = torch.randint(len(train), (cfg.batch_size,), generator=generator)
        view = torch.randint(train.num_views, (cfg.batch_size,), generator=generator) if train.shifted else None
        frames, proprio, actions = train.batch(idx, view)
        loss = model.loss(to_device(frames, device), proprio.to(device), actions.to(device), cfg.precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        window.append(loss.detach().item())
        if step % eval_every and step != max_steps:
            continue
        failpoint("train.eval")
        train_loss, window = sum(window) / len(window), []
        valid_mse = evaluate_mse(model, valid, cfg.eval_batch_size, cfg.precision) if valid is not None else math.nan
        history.append({"step": step, "train_loss": train_loss, "valid_mse": valid_mse})
        now = time.perf_counter()
        lr, speed = optimizer.param_groups[0]["lr"], (step - last_step) / max(now - last_time, 1e-9)
        for tag, value in (("train/loss", train_loss), ("valid/mse", valid_mse), ("train/lr", lr),
                           ("train/steps_per_s", speed)):
            scalars.add_scalar(tag, value, step)
        last_step, last_time = step, now
        bar.set_postfix(loss=f"{train_loss:.4f}", valid_mse=f"{valid_mse:.4f}")
        score = valid_mse if valid is not None else -step  # no valid demos: keep the last weights
        if score < best_score:
            best_score, best_state, best_step, best_loss = score, copy.deepcopy(model.state_dict()), step, train_loss
        if made_progress(score, progress_score, cfg.min_delta):
            progress_score, progress_step, stale = score, step, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                stopped = "early"
                break
        if resume is not None and resume.due():
            resume.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                         "best_state": best_state, "best_score": best_score, "best_step": best_step,
                         "best_loss": best_loss, "progress_score": progress_score, "progress_step": progress_step,
                         "stale": stale, "history": history, "seconds": time.perf_counter() - start})
    model.load_state_dict(best_state)
    valid_mse = evaluate_mse(model, valid, cfg.eval_batch_size, cfg.precision) if valid is not None else math.nan
    train_mse = evaluate_mse(model, train, cfg.eval_batch_size, cfg.precision)
    cap_bound = stopped == "budget" and progress_step > max_steps - cfg.patience * eval_every
    return FitResult(step, best_step, best_loss, valid_mse, train_mse, time.perf_counter() - start, history,
                     max_steps=max_steps, eval_every=eval_every, stopped=stopped, cap_bound=cap_bound,
                     progress_step=progress_step)


def made_progress(score: float, reference: float, min_delta: float) -> bool:
    """Early stopping's test: ``score`` (valid MSE) is below ``(1 - min_delta) × reference`` (the last progress
    point's score; ``inf`` before the first evaluation). The one definition :func:`fit` and the budget pilot's
    replay (benchmarks/budget_pilot.py) share."""
    return score < reference * (1.0 - float(min_delta))  # inf × (1 − min_delta) stays inf: any first score counts


def policy_feature_cache(policy_cfg: Mapping[str, Any], encoder: Encoder, dataset: str | os.PathLike,
                         cache_dir: str | os.PathLike, label: str, batch_size: int = 64, use_language: bool = True,
                         progress: bool = False, obs_keys: ObsKeys | None = None,
                         demos: Sequence[str] | None = None) -> Path:
    """The feature cache a ``trunk: features`` policy trains on: ``dataset``'s ``obs_keys.image`` frames through the
    frozen ``encoder``, with the policy's ``feature_shifts`` shifted copies (±``feature_shift_pad`` px) when it asks
    for them; with ``demos``, a partial cache of those demos (:func:`compute_features`)."""
    with torch.inference_mode():
        return compute_features(encoder, dataset, cache_dir, encoder_name=label, batch_size=batch_size,
                                use_language=use_language, progress=progress,
                                shifts=int(policy_cfg.get("feature_shifts", 0)),
                                shift_pad=int(policy_cfg.get("feature_shift_pad", 4)), obs_keys=obs_keys,
                                demos=demos)


def attach_instructions(*parts: DemoTensors | None) -> int:
    """Give every frame of each :class:`DemoTensors` its episode's instruction as a frozen sentence embedding,
    ``frames["instruction"] (F, 384)`` (:func:`robrep.encoders.language.embed_sentences`, MiniLM), for a policy with
    ``instruction_input``; returns the embedding width. ValueError names episodes without an instruction."""
    from robrep.encoders.language import LANGUAGE_DIM, embed_sentences

    for data in (p for p in parts if p is not None):
        missing = [e for e, t in zip(data.episodes, data.instructions) if not t]
        if missing:
            raise ValueError(f"instruction_input needs an instruction per episode; {missing[:3]} have none")
        data.frames["instruction"] = embed_sentences(list(data.instructions))[data.episode_index]
    return LANGUAGE_DIM


def shared_instruction(instructions: list[str | None]) -> str | None:
    """The instruction if every demo has the same one, else None."""
    unique = set(instructions)
    return unique.pop() if len(unique) == 1 else None


def resume_state_path(out: str | os.PathLike) -> Path:
    """Where :func:`train_policy` keeps the resume state of the policy it writes to ``out``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".pt") + ".fit-state.pt")


def train_policy(
    policy_cfg: Mapping[str, Any],
    dataset: str | os.PathLike,
    n: int,
    seed: int,
    out: str | os.PathLike,
    encoder: EncoderSpec | None = None,
    cache_dir: str | os.PathLike = "cache/features",
    use_language: bool = True,
    feature_batch_size: int = 64,
    device: str = "cpu",
    config: Mapping[str, Any] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    tensorboard: str | os.PathLike | None = None,
    obs_keys: ObsKeys | None = None,
    resume_every_s: float | None = None,
) -> dict[str, Any]:
    """Train the policy ``policy_cfg`` (a resolved ``configs/policy/*.yaml``) on ``train_n{n}_seed{seed}``
    of ``dataset``, early-stopped on its ``valid`` demos, and write the checkpoint to ``out``.

    ``trunk: features`` needs ``encoder``: its features come from the cache in ``cache_dir`` (computed once
    by :func:`robrep.data.feature_cache.compute_features`); ``trunk: cnn`` trains on the demo images;
    ``trunk: finetune`` builds ``encoder`` trainable and fine-tunes its last ``finetune.blocks`` blocks on the
    demo images (no cache; ``use_language`` does not apply).
    ``dataset`` is a demo file or ``lerobot:<dir>`` (:func:`robrep.data.sources.resolve_dataset`).
    ``obs_keys`` (default :class:`ObsKeys`: ``obs/image``, ``obs/proprio``) names the file's image and proprio keys;
    the head's action dimension is the file's (``actions (T, A)``, any ``A``); both are recorded in the checkpoint
    (``obs_keys``, ``shape_meta.action_dim``).
    ``resume_every_s``: keep the loop's resume state in ``<out>.fit-state.pt`` (at most every that many seconds)
    and continue from one a killed run with the same settings left (:mod:`policies.fit_state`); deleted once the
    checkpoint is written. None = no resume state.
    ``config`` (the command's resolved config) is stored as is. ``tensorboard``: a directory for TensorBoard scalars
    of the loop (:func:`fit`); None = none. Raises
    :class:`robrep.data.demo_file.DemoFileError` when the subset does not exist (e.g. ``n`` larger than the
    train demos). Returns ``{"path", "train": FitResult fields, "frames", "seconds"}``.
    """
    start = time.perf_counter()
    dataset = resolve_dataset(dataset)
    policy_cfg = copy.deepcopy(dict(policy_cfg))
    check_policy_config(policy_cfg)
    resolve_train_precision(policy_cfg, device)  # stored resolved: acting uses it as trained
    train_cfg = TrainConfig(**policy_cfg["train"])
    stack, chunk = int(policy_cfg.get("frame_stack", 1)), int(policy_cfg.get("chunk", 1))
    kind = policy_cfg["trunk"]
    if kind in ENCODER_TRUNKS and encoder is None:
        raise ValueError(f"policy {policy_cfg.get('name')!r} ({kind}) is built on a pretrained encoder: "
                         "pass an encoder spec")
    obs_keys = obs_keys or ObsKeys()
    with DemoFile(dataset) as demos:
        demos.require_obs_keys(obs_keys, proprio=True, purpose=f"policy {policy_cfg.get('name')!r}")
        filter_key = subset_key(n, seed)
        train_names = demos.subset(n, seed)
        valid_names = demos.demo_names("valid") if "valid" in demos.filter_keys else []
        env_args = demos.env_args
        enc_record, cache, trainable = None, None, None
        if kind == "features":
            enc = encoder.load(device)
            cache_file = policy_feature_cache(policy_cfg, enc, dataset, cache_dir, encoder.label, feature_batch_size,
                                              use_language, progress, obs_keys, demos=[*train_names, *valid_names])
            cache = FeatureCache(cache_file, enc)
            enc_record = {**encoder.to_dict(), "identity": enc.identity(), "use_language": bool(use_language),
                          "cache": str(cache_file)}
            del enc  # training reads the cache only
        elif kind == "finetune":
            trainable = encoder.load(device, frozen=False)  # a fresh copy; FinetuneTrunk unfreezes only its tail
            enc_record = {**encoder.to_dict(), "identity": trainable.identity(), "use_language": False,
                          "finetuned_blocks": int(policy_cfg["finetune"]["blocks"])}
        try:
            images = kind != "none"
            train = load_demo_tensors(demos, train_names, stack, chunk, cache, shifted=bool(cache and cache.shifts),
                                      obs_keys=obs_keys, images=images)
            valid = (load_demo_tensors(demos, valid_names, stack, chunk, cache, obs_keys=obs_keys, images=images)
                     if valid_names else None)
        finally:
            if cache is not None:
                cache.close()
    shape_meta: dict[str, Any] = {"action_dim": int(train.actions.shape[1]), "proprio_dim": int(train.proprio.shape[1])}
    if cache is not None:
        tokens = train.frames["tokens"]
        shape_meta.update(feature_dim=int(tokens.shape[2]), grid=list(cache.grid),
                          has_global_token="global_token" in train.frames)
    elif "image" in train.frames:
        shape_meta["image_size"] = list(train.frames["image"].shape[1:3])
    if trainable is not None:
        shape_meta.update(feature_dim=int(trainable.feature_dim), grid=list(trainable.grid_size))
    if policy_cfg.get("instruction_input"):
        shape_meta["instruction_dim"] = attach_instructions(train, valid)
    if log:
        log(f"{len(train_names)} train demos ({len(train)} frames), {len(valid_names)} valid demos "
            f"({0 if valid is None else len(valid)} frames) from {dataset}")

    # ---- seeding: the one place that fixes every random draw of training (init, dropout, batches, shifts)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    model = build_model(policy_cfg, shape_meta, encoder=trainable).to(device)
    model.set_statistics(train.proprio, train.actions, float(policy_cfg.get("min_std", 1e-2)))
    if trainable is not None and log:
        tail = sum(p.numel() for p in model.trunk.tail_parameters())
        log(f"fine-tuning the last {model.trunk.blocks} blocks of {encoder.label}: {tail:,} of "
            f"{sum(p.numel() for p in trainable.parameters()):,} encoder parameters trainable")
    resume = None
    if resume_every_s is not None:
        setting = {"policy": policy_cfg, "dataset": file_hash(dataset), "train": train_names, "valid": valid_names,
                   "seed": int(seed), "device": str(device),  # the cache's path (partial or merged) is left out
                   "encoder": {k: v for k, v in enc_record.items() if k != "cache"} if enc_record else enc_record}
        resume = FitResume(resume_state_path(out), json_hash(setting), float(resume_every_s))
    with scalar_writer(tensorboard) as scalars:
        result = fit(model, train, valid, train_cfg, generator, progress, scalars, resume)
    if trainable is not None:
        enc_record["finetuned_weights_hash"] = model.trunk.encoder.weights_hash()
    losses = [result.train_loss, *([result.valid_mse] if valid_names else [])]  # no valid demos: valid MSE is nan
    if not all(math.isfinite(float(v)) for v in losses):
        raise FloatingPointError(f"training {policy_cfg.get('name')!r} on {dataset} (N={n}, seed {seed}) ended with a "
                                 f"non-finite loss (train {result.train_loss}, valid MSE {result.valid_mse}); "
                                 f"no checkpoint written to {out}")
    payload = {
        "state_dict": model.state_dict(),
        "policy_config": policy_cfg,
        "shape_meta": shape_meta,
        "normalization": {"action": model.action_norm.stats(), "proprio": model.proprio_norm.stats()},
        "encoder": enc_record,
        "task": str(env_args.get("task", env_args.get("env_name"))),
        "env_kwargs": dict(env_args.get("env_kwargs", {})),
        "env_args": json.loads(json.dumps(env_args)),
        "instruction": shared_instruction(train.instructions),
        "obs_keys": obs_keys.to_dict(),
        "dataset": {"path": str(dataset), "hash": file_hash(dataset), "filter_key": filter_key,
                    "train_demos": train_names, "valid_demos": valid_names},
        "n": int(n),
        "seed": int(seed),
        "config": json.loads(json.dumps(dict(config or {}), default=str)),
        "train": {**asdict(result), "frames": len(train)},
    }
    path = save_policy_checkpoint(payload, out)
    if resume is not None:
        resume.discard()
    return {"path": path, "train": asdict(result), "frames": len(train), "seconds": time.perf_counter() - start}
