"""Env speed and scripted-expert success per task and visual setting, on this machine.

    python benchmarks/env_speed.py [--episodes 100] [--image-size 96] [--tasks push reach ...]
                                   [--settings clean varied heldout]

Prints one row per task and setting (``visuals``, envs/visuals.py; Meta-World tasks: clean only):
env steps/s with random actions (one env, one camera) and with the expert, and expert success over
seeded episodes; writes results/env_speed.csv (+ the command).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envs import TASK_IDS, make_env  # noqa: E402
from envs.experts import make_expert  # noqa: E402
from envs.visuals import SETTINGS  # noqa: E402
from robrep.rollout import run_episode  # noqa: E402
from robrep.results import command_line, write_csv  # noqa: E402

METAWORLD = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]


def random_steps_per_second(task: str, image_size: int, steps: int, visuals: str = "clean") -> float:
    env = make_env(task, image_size=image_size, visuals=visuals)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def expert_success(task: str, image_size: int, episodes: int, seed_start: int,
                   visuals: str = "clean") -> tuple[float, float, float]:
    """(success rate, mean episode length, env steps/s) of the scripted expert."""
    env = make_env(task, image_size=image_size, visuals=visuals)
    expert = make_expert(env)
    wins, steps, start = 0, 0, time.perf_counter()
    for seed in range(seed_start, seed_start + episodes):
        expert.reset()
        result = run_episode(env, expert, seed)
        wins += result["success"]
        steps += result["length"]
    rate = steps / (time.perf_counter() - start)
    env.close()
    return wins / episodes, steps / episodes, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(TASK_IDS) + METAWORLD)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--random-steps", type=int, default=2000)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--out", default="results/env_speed.csv")
    parser.add_argument("--note", default="", help="an extra comment line for the CSV, e.g. the machine's load")
    args = parser.parse_args()
    rows = []
    header = (f"{'task':<24}{'setting':<9}{'random steps/s':>15}{'expert steps/s':>15}{'expert success':>15}"
              f"{'mean length':>12}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.image_size}x{args.image_size} px")
    print(header)
    runs = [(task, setting) for task in args.tasks for setting in args.settings
            if setting == "clean" or not task.startswith("metaworld/")]  # Meta-World: no visual variation
    for task, setting in runs:
        is_mw = task.startswith("metaworld/")
        rand = random_steps_per_second(task, args.image_size, args.random_steps // (10 if is_mw else 1), setting)
        episodes = min(args.episodes, 20) if is_mw else args.episodes
        success, length, expert_rate = expert_success(task, args.image_size, episodes, args.seed_start, setting)
        print(f"{task:<24}{setting:<9}{rand:>15.0f}{expert_rate:>15.0f}{success:>14.0%} {length:>12.1f}", flush=True)
        rows.append({"task": task, "setting": setting, "image_size": args.image_size,
                     "random_steps_per_s": round(rand, 1),
                     "expert_steps_per_s": round(expert_rate, 1), "expert_success": success,
                     "expert_episodes": episodes, "mean_episode_length": round(length, 1)})
    out = write_csv(rows, args.out, [f"command: {command_line()}",
                                     f"machine: {os.cpu_count()}-core CPU, no GPU, MUJOCO_GL={os.environ['MUJOCO_GL']}",
                                     *([f"note: {args.note}"] if args.note else [])])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
