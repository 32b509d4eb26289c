"""``robrep collect``: scripted-expert demonstrations (``mode=demos``) or a multi-task play corpus
(``mode=play``, :mod:`robrep.data.play`) in robomimic's HDF5 layout."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from robrep.data.collect import collect_demos

log = logging.getLogger(__name__)

MODES = ("demos", "play")


def run(cfg: DictConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"unknown collect mode {cfg.mode!r}; choose one of {list(MODES)}")
    if cfg.mode == "play":
        run_play(cfg)
        return
    summary = collect_demos(
        cfg.task.name, cfg.num_demos, cfg.out, image_size=cfg.task.image_size, seed_start=cfg.seed_start,
        noise_std=cfg.noise_std, subset_sizes=tuple(cfg.subset_sizes), subset_seeds=tuple(cfg.subset_seeds),
        valid_fraction=cfg.valid_fraction, progress=cfg.progress, visuals=cfg.task.visuals,
    )
    log.info(f"wrote {summary['num_demos']} demos ({summary['frames']} frames) to {summary['path']} in "
             f"{summary['seconds']:.1f} s; expert success {summary['expert_success_rate']:.1%} "
             f"over {summary['attempts']} episodes")


def run_play(cfg: DictConfig) -> None:
    """``mode=play``: collect the play corpus of ``cfg.play`` in the ``task.visuals`` setting and print
    frames per task, total frames, seconds, frames/s and the output files."""
    from robrep.data.play import PlayBehaviour, collect_play

    p = cfg.play
    behaviour = PlayBehaviour(noise_std=p.noise_std, random_prob=p.random_prob, segment_steps=p.segment_steps,
                              random_episode_fraction=p.random_episode_fraction)
    summary = collect_play(list(p.tasks), p.episodes_per_task, p.out_dir, behaviour, image_size=cfg.task.image_size,
                           visuals=cfg.task.visuals, seed_start=p.seed_start, valid_fraction=p.valid_fraction,
                           jobs=p.jobs, progress=cfg.progress)
    for r in summary["tasks"]:
        status = "kept (already complete)" if r["skipped"] else f"{r['seconds']:.1f} s"
        log.info(f"  {r['task']:<11} {r['episodes']} episodes, {r['frames']} frames, "
                 f"{r['successes']} successful, {status} -> {r['path']}")
    log.info(f"play corpus ({cfg.task.visuals}): {summary['frames']} frames in {len(summary['paths'])} files; "
             f"collected {summary['new_frames']} frames in {summary['seconds']:.1f} s "
             f"({summary['frames_per_s']:.1f} frames/s)")
    log.info("files: " + " ".join(summary["paths"]))
