"""Does the goal-image cost reward moving the gripper rather than the block? (issue 21's push hypothesis)

    python -m benchmarks.goal_confound --model runs/plan/push_<encoder>_pooled_mlp_<key>.pt [--episodes 10]
        [--split dev] [--proprio-weight 1] [--commit | --out PATH]

For each layout (``robrep.seeds.eval_seeds(episodes, 0, split)``) the scripted expert's goal frame is read as the
latent planners read it (:func:`planners.mpc.expert_trajectory`, ``goal_settle`` from the world model's record is
not applied: the last frame). Four scenes are rendered from the simulator, all other state equal:

* ``start``: the layout as reset;
* ``gripper_at_goal``: the start, with the gripper moved to its pose in the goal frame (block unmoved);
* ``block_at_goal``: the start, with the block moved to its goal-frame pose (gripper unmoved);
* ``goal``: the goal frame's state itself (distance 0 up to rendering).

Each is encoded by the world model's encoder and latent map (:class:`planners.latent.LatentMap`) and its distance to
the goal latent taken as the planner takes it (``LatentMap.distance``, image and proprio parts averaged apart; the
image part alone beside it). A cost that can plan push must put ``block_at_goal`` nearer the goal than
``gripper_at_goal``; the share of layouts where it does is printed per part. Writes one row per layout and scene
to runs/benchmarks/goal_confound/goal_confound.csv (``--commit``: results/plan/<task>_goal_confound.csv).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv

NAME = "goal_confound"
SCENES = ("start", "gripper_at_goal", "block_at_goal", "goal")


def scenes(env, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{scene: (image uint8 (H, W, 3), proprio (4,))}`` of one push layout (see the module docstring)."""
    import mujoco

    from planners.mpc import expert_trajectory

    u = env.unwrapped
    frames, _ = expert_trajectory(env, seed)
    goal_state = frames[-1]["sim_state"].copy()
    u.set_sim_state(goal_state)
    goal_q = u.data.qpos.copy()
    env.reset(seed=seed)
    start_state = u.get_sim_state().copy()
    hand = np.concatenate([u._hand_qpos, u._finger_qpos])
    block = u.model.joint("block")
    block_q = np.arange(block.qposadr[0], block.qposadr[0] + 7)

    def render(qpos_from_goal: np.ndarray | None, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u.set_sim_state(base)
        if qpos_from_goal is not None:
            u.data.qpos[qpos_from_goal] = goal_q[qpos_from_goal]
        mujoco.mj_forward(u.model, u.data)
        return u.render_camera("front"), u.privileged_state()[:4].copy()

    return {"start": render(None, start_state), "gripper_at_goal": render(hand, start_state),
            "block_at_goal": render(block_q, start_state), "goal": render(None, goal_state)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a world-model checkpoint written by `robrep plan`")
    parser.add_argument("--task", default="push", help="the world model's task (one with a block and a goal)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--proprio-weight", type=float, default=1.0)
    add_output_args(parser, NAME, "results/plan/<task>_goal_confound.csv")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)

    from envs.registration import make_env
    from planners.world_model import load_world_model
    from robrep.encoders.spec import EncoderSpec
    from robrep.seeds import eval_seeds

    latent, _, payload = load_world_model(args.model)
    enc = payload["encoder"]
    spec = EncoderSpec.from_record(enc)
    encoder = spec.load("cpu")
    if encoder.weights_hash() != enc["identity"]["weights_hash"]:
        raise SystemExit(f"{spec.weights} is not the encoder {args.model} was trained on")
    env = make_env(args.task, observe_sim_state=True, terminate_on_success=False)
    text = [env.unwrapped.instruction] * len(SCENES) if enc.get("use_language") else None
    rows, wins = [], {"planner": 0, "image": 0}
    seeds = eval_seeds(args.episodes, 0, args.split)
    for seed in seeds:
        views = scenes(env, int(seed))
        images = np.stack([views[s][0] for s in SCENES])
        proprio = np.stack([views[s][1] for s in SCENES]).astype(np.float32)
        with torch.no_grad():
            z = latent(encoder.encode_frames(images, text).tokens, torch.from_numpy(proprio))
            planner_d = latent.distance(z, z[-1:], args.proprio_weight)
            image_d = latent.distance(z, z[-1:], 0.0)
        for j, s in enumerate(SCENES):
            rows.append({"seed": int(seed), "scene": s, "planner_distance": round(float(planner_d[j]), 5),
                         "image_distance": round(float(image_d[j]), 5)})
        wins["planner"] += bool(planner_d[2] < planner_d[1])
        wins["image"] += bool(image_d[2] < image_d[1])
    env.close()
    for part, k in wins.items():
        print(f"{part} distance: block_at_goal nearer the goal than gripper_at_goal on {k}/{len(seeds)} layouts")
    for s in SCENES:
        vals = [r for r in rows if r["scene"] == s]
        print(f"{s:>16}: planner distance {np.mean([r['planner_distance'] for r in vals]):.4f}, "
              f"image {np.mean([r['image_distance'] for r in vals]):.4f} (mean over layouts)")
    path = output_path(args, NAME, f"results/plan/{args.task}_goal_confound.csv")
    write_csv(rows, path, comments=[command(NAME, argv), f"world model {Path(args.model).name}: encoder "
                                    f"{spec.name} weights {spec.weights}; proprio_weight {args.proprio_weight}; "
                                    f"trained by: {payload['record']['command']}"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
