"""In-domain pretraining of one encoder family within a budget of optimizer steps or minutes (``robrep pretrain``):
:func:`run_pretrain`.

Saves ``out`` (encoder checkpoint with resolved config, content hash, steps, FLOPs, wall time, loss curve and the
command), ``<out>.state.pt`` (the resume state: the objective's weights incl. its decoder, optimizer moments, RNGs,
schedule; :func:`state_path`) and ``<out>.loss.csv`` / ``<out>.loss.png``. ``resume=<checkpoint>`` continues a run
from its state file; ``steps=+N`` grows its budget.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robrep import results
from robrep.data.feature_cache import file_hash
from robrep.data.frames import FrameDataset
from robrep.data.play import play_files
from robrep.encoders import build_encoder, save_checkpoint
from robrep.pretrain.loop import STATE_FORMAT, check_budget, pretrain, write_loss_curve
from robrep.torch_io import load_checked, save_atomic
from robrep.pretrain.objective import make_objective
from robrep.tb import scalar_writer, tb_dir
from robrep.precision import resolve_precision
from robrep.threads import thread_limit

log = logging.getLogger(__name__)


def pretraining_files(cfg: DictConfig) -> list[str]:
    """``data`` if given, else the play corpus ``corpus.dir/<task>.hdf5`` of ``corpus.tasks`` minus
    ``corpus.exclude`` (leave-one-task-out); FileNotFoundError names missing files and how to make them."""
    if cfg.data:
        return [str(p) for p in cfg.data]
    corpus = cfg.corpus
    return [str(p) for p in play_files(corpus.dir, list(corpus.tasks), exclude=list(corpus.exclude))]


def state_path(checkpoint: str | Path) -> Path:
    """The resume state saved beside an encoder checkpoint: ``<checkpoint>.state.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".pt") + ".state.pt")


def state_hash(state: dict) -> str:
    """Content hash of a resume state: its step and the checkpoint hash it belongs to (the tensors are covered by
    the metadata hash's shapes and by the paired checkpoint's weights hash, checked on load)."""
    return f"{state['checkpoint_hash']}@{state['step']}"


def target_steps(steps: int | str | None, resumed_at: int) -> int | None:
    """The absolute step budget of ``steps``: an int, ``"+N"`` (N more than ``resumed_at``), or None (minutes)."""
    if steps is None:
        return None
    text = str(steps).strip()
    if text.startswith("+"):
        return resumed_at + int(text[1:])
    if resumed_at and int(text) <= resumed_at:
        raise ValueError(f"steps={text} is not beyond the resumed checkpoint's {resumed_at} steps; use steps=+N")
    return int(text)


def load_resume_state(checkpoint: str | Path, digest: str) -> dict:
    """The resume state of ``checkpoint`` (whose encoder weights hash is ``digest``); FileNotFoundError names the
    missing file, ValueError a state that belongs to other weights."""
    path = state_path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"resume={checkpoint}: its resume state {path} is missing (it is written beside every "
                                "checkpoint robrep pretrain saves; committed weights/ do not carry one)")
    state = load_checked(path, STATE_FORMAT, state_hash, "pretraining resume state")
    if state["checkpoint_hash"] != digest:
        raise ValueError(f"{path} belongs to weights {state['checkpoint_hash']}, not to {checkpoint} ({digest})")
    return state


def run_pretrain(cfg: DictConfig) -> Path:
    """Pretrain the encoder of a composed ``configs/pretrain.yaml`` on ``cfg.threads`` threads; returns ``cfg.out``."""
    with thread_limit(cfg.threads):
        return _run(cfg)


def _run(cfg: DictConfig) -> Path:
    enc_cfg = cfg.encoder
    resume, previous = cfg.get("resume"), None
    if resume:
        from robrep.encoders.checkpoint import read_checkpoint

        previous = read_checkpoint(resume)
        state = load_resume_state(resume, previous["hash"])
    else:
        state = None
    steps = target_steps(cfg.get("steps"), int(state["step"]) if state else 0)
    check_budget(cfg.budget_minutes, steps)  # before any data is read
    asked = cfg.get("precision", "float32")
    if state is not None and asked == "auto":  # a resume keeps its run's arithmetic
        precision = state.get("precision", "float32")
    else:
        precision = resolve_precision(asked)
    files = pretraining_files(cfg)
    frames = FrameDataset.from_files(files)
    encoder = build_encoder(enc_cfg.name, weights=enc_cfg.weights, **OmegaConf.to_container(enc_cfg.arch))
    objective = make_objective(encoder, **OmegaConf.to_container(enc_cfg.pretrain.objective))
    params = sum(p.numel() for p in encoder.parameters())
    budget = f"to step {steps}" if steps is not None else f"for {cfg.budget_minutes} min"
    log.info(f"pretraining {enc_cfg.name} ({params / 1e6:.2f} M encoder params) on {len(frames)} frames "
             f"from {len(files)} files {budget}" + (f", resumed from {resume} at step {state['step']}" if state else ""))
    out = Path(cfg.out)
    tb = tb_dir(bool(cfg.get("tensorboard", False)), "pretrain", out.stem)
    if tb is not None:
        log.info(f"TensorBoard scalars: {tb}")
    with scalar_writer(tb) as scalars:
        summary = pretrain(objective, frames, budget_minutes=cfg.budget_minutes,
                           batch_size=enc_cfg.pretrain.batch_size, lr=enc_cfg.pretrain.lr,
                           weight_decay=enc_cfg.pretrain.weight_decay, shift_pad=enc_cfg.pretrain.shift_pad,
                           max_steps=steps, schedule_steps=cfg.schedule_steps, seed=cfg.seed,
                           progress=cfg.progress, scalars=scalars, state=state, precision=precision)
    meta = {
        "command": results.command_line(),
        "resolved_config": OmegaConf.to_container(cfg, resolve=True),
        "data": {p: file_hash(p) for p in files},
        "frames": len(frames), "encoder_params": params, "precision": precision,
        **{k: summary[k] for k in ("steps", "schedule_steps", "seconds", "seconds_total", "flops_per_step", "flops",
                                   "schedule", "final_loss", "loss_curve")},
        "runs": [*(previous["meta"].get("runs", []) if previous else []),
                 {"command": results.command_line(), "steps": summary["steps"], "seconds": summary["seconds"]}],
    }
    if previous:
        meta["resumed_from"] = {"path": str(resume), "hash": previous["hash"], "steps": int(state["step"])}
    data_arg = "" if cfg.data else f" data=[{','.join(files)}]"  # the files themselves, whatever the default becomes
    meta["reproduce"] = ("the runs in meta['runs'] in order" if previous else
                         f"{meta['command']}{data_arg} steps={summary['steps']} schedule_steps={summary['schedule_steps']}"
                         " (bitwise on the same torch build and thread count)")
    if not math.isfinite(float(summary["final_loss"])):
        raise FloatingPointError(f"pretraining {enc_cfg.name} ended with a non-finite loss ({summary['final_loss']}) "
                                 f"after {summary['steps']} steps; no checkpoint written to {out}")
    digest = save_checkpoint(encoder, out, meta)
    save_atomic({**summary["state"], "checkpoint_hash": digest, "hash": state_hash({**summary["state"],
                                                                                   "checkpoint_hash": digest})},
                state_path(out))
    csv_path, png_path = write_loss_curve(summary["loss_curve"], out.with_suffix(".loss"),
                                          title=f"{enc_cfg.name}: {summary['steps']} steps")
    log.info(f"saved {out} (hash {digest}): {summary['steps']} steps in {summary['seconds'] / 60:.1f} min "
             f"({summary['seconds_total'] / 60:.1f} min in all), {summary['flops'] / 1e12:.2f} TFLOP, final loss "
             f"{summary['final_loss']:.4f}; resume state {state_path(out)}; loss curve {csv_path}, {png_path}")
    return out
