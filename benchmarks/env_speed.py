"""Env speed and scripted-expert success per task and visual setting, on this machine.

    python -m benchmarks.env_speed [--episodes 100] [--image-size 96] [--tasks push reach ...]
                                    [--settings clean varied heldout] [--commit | --out PATH]

Prints one row per task and setting (``visuals``, envs/visuals.py; Meta-World tasks: clean only):
env steps/s with random actions (one env, one camera; rendering every step, and one step in 4 as an evaluation
of 4-action open-loop chunks does) and with the expert, and expert success over
seeded episodes; writes runs/benchmarks/env_speed/env_speed.csv (+ the command; ``--commit``: the
reference results/env_speed.csv). Renders headless (``MUJOCO_GL=egl`` unless set).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv

NAME = "env_speed"
COMMITTED = "results/env_speed.csv"
#: Meta-World tasks benchmarked besides ``envs.TASK_IDS`` (clean visuals, fewer steps and episodes).
METAWORLD = ["metaworld/reach-v3", "metaworld/push-v3", "metaworld/pick-place-v3"]
#: The sweeps' action chunk: their evaluations render one step in CHUNK (open-loop chunks, ``skip_next_images``).
CHUNK = 4


def random_steps_per_second(task: str, image_size: int, steps: int, visuals: str = "clean", render_every: int = 1
                            ) -> float:
    """Env steps/s with random actions; ``render_every=k``: only every k-th step renders (``skip_next_images`` on the
    others), as an evaluation whose policy executes k-action chunks open-loop."""
    from envs import make_env

    env = make_env(task, image_size=image_size, visuals=visuals)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for i in range(steps):
        if i % render_every:
            env.unwrapped.skip_next_images()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def expert_success(task: str, image_size: int, episodes: int, seed_start: int,
                   visuals: str = "clean") -> tuple[float, float, float]:
    """(success rate, mean episode length, env steps/s) of the scripted expert."""
    from envs import make_env
    from envs.experts import make_expert
    from robrep.data.collect import run_episode

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


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; before MuJoCo is imported (by envs)
    from envs import TASK_IDS
    from envs.visuals import SETTINGS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(TASK_IDS) + METAWORLD)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--random-steps", type=int, default=2000)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=SETTINGS)
    add_output_args(parser, NAME, COMMITTED)
    parser.add_argument("--note", default="", help="an extra comment line for the CSV, e.g. the machine's load")
    args = parser.parse_args(argv)
    rows = []
    header = (f"{'task':<24}{'setting':<9}{'random steps/s':>15}{'expert steps/s':>15}{'expert success':>15}"
              f"{'mean length':>12}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.image_size}x{args.image_size} px")
    print(header)
    runs = [(task, setting) for task in args.tasks for setting in args.settings
            if setting == "clean" or not task.startswith("metaworld/")]  # Meta-World: no visual variation
    for task, setting in runs:
        is_mw = task.startswith("metaworld/")
        n_random = args.random_steps // (10 if is_mw else 1)
        rand = random_steps_per_second(task, args.image_size, n_random, setting)
        rand_chunk = random_steps_per_second(task, args.image_size, n_random, setting, render_every=CHUNK)
        episodes = min(args.episodes, 20) if is_mw else args.episodes
        success, length, expert_rate = expert_success(task, args.image_size, episodes, args.seed_start, setting)
        print(f"{task:<24}{setting:<9}{rand:>15.0f}{expert_rate:>15.0f}{success:>14.0%} {length:>12.1f}", flush=True)
        rows.append({"task": task, "setting": setting, "image_size": args.image_size,
                     "random_steps_per_s": round(rand, 1), "random_steps_per_s_render_1_in_4": round(rand_chunk, 1),
                     "expert_steps_per_s": round(expert_rate, 1), "expert_success": success,
                     "expert_episodes": episodes, "mean_episode_length": round(length, 1)})
    out = write_csv(rows, output_path(args, NAME, COMMITTED),
                    [f"command: {command(NAME, argv)}",
                     f"machine: {os.cpu_count()}-core CPU, no GPU, MUJOCO_GL={os.environ['MUJOCO_GL']}",
                     *([f"note: {args.note}"] if args.note else [])])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
