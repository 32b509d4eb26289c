"""``robrep collect``: scripted-expert demonstrations in robomimic's HDF5 layout."""

from __future__ import annotations

from omegaconf import DictConfig

from robrep.collect import collect_demos


def run(cfg: DictConfig) -> None:
    summary = collect_demos(
        cfg.task.name, cfg.num_demos, cfg.out, image_size=cfg.task.image_size, seed_start=cfg.seed_start,
        noise_std=cfg.noise_std, subset_sizes=tuple(cfg.subset_sizes), subset_seeds=tuple(cfg.subset_seeds),
        valid_fraction=cfg.valid_fraction, progress=cfg.progress,
    )
    print(f"wrote {summary['num_demos']} demos ({summary['frames']} frames) to {summary['path']} in "
          f"{summary['seconds']:.1f} s; expert success {summary['expert_success_rate']:.1%} "
          f"over {summary['attempts']} episodes")
