"""Camera framing: pixels on the 5 cm block per candidate front-camera pose (configs/ablation/camera.yaml).

For each camera and image size, resets the push task on ``episodes`` layout seeds and counts the block's
pixels (red mask) in the first frame: the block's apparent side (sqrt of its area) in pixels and in
patches of ``patch_size``, and how often it is partly out of view or hidden (area < 50 % of the median).
Prints a table and writes ``camera_framing.csv`` under runs/benchmarks/camera_framing/ (``--commit``: the
reference results/camera_framing.csv).

    python -m benchmarks.camera_framing [--commit | --out PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from benchmarks._output import add_output_args, command, output_path
from robrep import results
from robrep.config import config_dir

NAME = "camera_framing"
COMMITTED = "results/camera_framing.csv"


def block_area(image: np.ndarray) -> int:
    """Pixels of the red block in a uint8 ``(H, W, 3)`` frame (the only saturated red object in push)."""
    im = image.astype(int)
    return int(((im[..., 0] > 150) & (im[..., 1] < 80) & (im[..., 2] < 80)).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; before MuJoCo is imported
    from envs.registration import make_env
    from envs.scene import CameraPose

    cfg = OmegaConf.load(Path(config_dir()) / "ablation" / "camera.yaml")
    rows = []
    for name, cam in cfg.cameras.items():
        pose = CameraPose(tuple(cam.pos), tuple(cam.target), float(cam.fovy))
        for size in cfg.image_sizes:
            env = make_env(cfg.task, image_size=int(size), camera=pose)
            areas = np.array([block_area(env.reset(seed=int(cfg.seed_start) + i)[0]["image"])
                              for i in range(int(cfg.episodes))])
            env.close()
            side = np.sqrt(areas)
            rows.append({
                "camera": name, "image_size": size, "episodes": len(areas),
                "block_side_px_median": f"{np.median(side):.1f}", "block_side_px_p10": f"{np.percentile(side, 10):.1f}",
                "block_side_patches_median": f"{np.median(side) / cfg.patch_size:.2f}",
                "cut_or_hidden_fraction": f"{np.mean(areas < 0.5 * np.median(areas)):.3f}",
                "pos": list(cam.pos), "target": list(cam.target), "fovy": cam.fovy,
            })
            r = rows[-1]
            print(f"{name:<9} {size:>4} px: block side median {r['block_side_px_median']} px "
                  f"({r['block_side_patches_median']} patches of {cfg.patch_size}), p10 {r['block_side_px_p10']} px, "
                  f"cut/hidden {r['cut_or_hidden_fraction']}")
    path = results.write_csv(rows, output_path(args, NAME, COMMITTED), comments=[command(NAME, argv)])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
