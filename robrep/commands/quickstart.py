"""``robrep quickstart``: the README's main job on its embedded default.

For now: collect a small demo file for one task and write a video of the scripted expert.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from robrep.collect import collect_demos
from robrep.rollout import expert_frames
from robrep.video import write_video


def run(cfg: DictConfig) -> None:
    out = Path(cfg.out_dir)
    summary = collect_demos(
        cfg.task.name, cfg.num_demos, out / f"{cfg.task.name}_demos.hdf5", image_size=cfg.task.image_size,
        subset_sizes=tuple(cfg.subset_sizes), subset_seeds=tuple(cfg.subset_seeds), progress=cfg.progress,
    )
    video = write_video(expert_frames(cfg.task.name, cfg.video_episodes, image_size=cfg.task.image_size),
                        out / f"{cfg.task.name}_expert.mp4", fps=cfg.fps)
    print(f"demos: {summary['path']} ({summary['num_demos']} demos, expert success "
          f"{summary['expert_success_rate']:.0%}, {summary['seconds']:.1f} s)")
    print(f"video: {video}")
