"""In-domain pretraining of one encoder family within a wall-clock budget (``robrep pretrain``): :func:`run_pretrain`.

Saves ``out`` (encoder checkpoint with resolved config, content hash, loss curve and the command)
plus ``<out>.loss.csv`` / ``<out>.loss.png``.
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
from robrep.pretrain.loop import check_budget, pretrain, write_loss_curve
from robrep.pretrain.objective import make_objective
from robrep.tb import scalar_writer, tb_dir
from robrep.threads import thread_limit

log = logging.getLogger(__name__)


def pretraining_files(cfg: DictConfig) -> list[str]:
    """``data`` if given, else the play corpus ``corpus.dir/<task>.hdf5`` of ``corpus.tasks`` minus
    ``corpus.exclude`` (leave-one-task-out); FileNotFoundError names missing files and how to make them."""
    if cfg.data:
        return [str(p) for p in cfg.data]
    corpus = cfg.corpus
    return [str(p) for p in play_files(corpus.dir, list(corpus.tasks), exclude=list(corpus.exclude))]


def run_pretrain(cfg: DictConfig) -> Path:
    """Pretrain the encoder of a composed ``configs/pretrain.yaml`` on ``cfg.threads`` threads; returns ``cfg.out``."""
    with thread_limit(cfg.threads):
        return _run(cfg)


def _run(cfg: DictConfig) -> Path:
    enc_cfg = cfg.encoder
    check_budget(cfg.budget_minutes, cfg.max_steps)  # before any data is read
    files = pretraining_files(cfg)
    frames = FrameDataset.from_files(files)
    encoder = build_encoder(enc_cfg.name, weights=enc_cfg.weights, **OmegaConf.to_container(enc_cfg.arch))
    objective = make_objective(encoder, **OmegaConf.to_container(enc_cfg.pretrain.objective))
    params = sum(p.numel() for p in encoder.parameters())
    log.info(f"pretraining {enc_cfg.name} ({params / 1e6:.2f} M encoder params) on {len(frames)} frames "
             f"from {len(files)} files for {cfg.budget_minutes} min")
    out = Path(cfg.out)
    tb = tb_dir(bool(cfg.get("tensorboard", False)), "pretrain", out.stem)
    if tb is not None:
        log.info(f"TensorBoard scalars: {tb}")
    with scalar_writer(tb) as scalars:
        summary = pretrain(objective, frames, budget_minutes=cfg.budget_minutes,
                           batch_size=enc_cfg.pretrain.batch_size, lr=enc_cfg.pretrain.lr,
                           weight_decay=enc_cfg.pretrain.weight_decay, shift_pad=enc_cfg.pretrain.shift_pad,
                           max_steps=cfg.max_steps, schedule_steps=cfg.schedule_steps, seed=cfg.seed,
                           progress=cfg.progress, scalars=scalars)
    meta = {
        "command": results.command_line(),
        "resolved_config": OmegaConf.to_container(cfg, resolve=True),
        "data": {p: file_hash(p) for p in files},
        "frames": len(frames), "encoder_params": params,
        **{k: summary[k] for k in ("steps", "schedule_steps", "seconds", "final_loss", "loss_curve")},
    }
    data_arg = "" if cfg.data else f" data=[{','.join(files)}]"  # the files themselves, whatever the default becomes
    meta["reproduce"] = (f"{meta['command']}{data_arg} max_steps={summary['steps']} "
                         f"schedule_steps={summary['schedule_steps']} (bitwise on the same torch build and thread count)")
    if not math.isfinite(float(summary["final_loss"])):
        raise FloatingPointError(f"pretraining {enc_cfg.name} ended with a non-finite loss ({summary['final_loss']}) "
                                 f"after {summary['steps']} steps; no checkpoint written to {out}")
    digest = save_checkpoint(encoder, out, meta)
    csv_path, png_path = write_loss_curve(summary["loss_curve"], out.with_suffix(".loss"),
                                          title=f"{enc_cfg.name}: {summary['steps']} steps")
    log.info(f"saved {out} (hash {digest}): {summary['steps']} steps in {summary['seconds'] / 60:.1f} min, "
             f"final loss {summary['final_loss']:.4f}; loss curve {csv_path}, {png_path}")
    return out
