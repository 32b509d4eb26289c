"""How precisely does a planner latent say where things are? (issue 21: can a latent cost plan push at all?)

    python -m benchmarks.latent_localisation --model runs/plan/<task>_<encoder>_pooled_mlp_<key>.pt [MODEL ...]
        [--task push] [--grids 6] [--steps 3000] [--commit | --out PATH]

A latent cost — a goal image's latent distance or a learned reward — can steer the block to the goal only if the
latent holds the block's position to well within the task's success tolerance (push: 4 cm). This reads the world
model's own demo and play files (its training / ``valid`` split, features from the cache), maps every frame with
its :class:`planners.latent.LatentMap` (``grid`` × ``grid`` cells × ``dim`` principal components of the tokens; the
image part only: proprio would hand the gripper over) and with the same map refitted at each of ``--grids`` (the
same ``dim``), and fits one MLP probe per latent (2 × 256, AdamW 1e-3, batch 256, ``--steps`` steps, seed 0) from
the latent to the privileged block, gripper and goal xy (metres). Reported: the root-mean-square error on the valid
frames per quantity in cm (xy pooled, and x — across the image — and y — depth, away from the front camera —
apart; the median and 90th percentile of the xy error's length), against the task's success tolerance, and the
spread of each quantity (the error of predicting its mean). Writes runs/benchmarks/latent_localisation/ (``--commit``:
results/plan/<task>_latent_localisation.csv).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from benchmarks._output import add_output_args, command, output_path
from robrep.results import write_csv

NAME = "latent_localisation"
#: Privileged quantities probed (xy of each, metres in the state).
QUANTITIES = ("block_pos", "gripper_pos", "goal_pos")


def probe(z_train: torch.Tensor, y_train: torch.Tensor, z_valid: torch.Tensor, steps: int, seed: int = 0
          ) -> torch.Tensor:
    """Fit an MLP ``z (F, L)`` → standardised ``y (F, Q)`` on the training frames; its predictions for ``z_valid``
    ``(F', Q)`` in ``y``'s units."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(z_train.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, y_train.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
    mu, sd = y_train.mean(0), y_train.std(0).clamp_min(1e-6)
    for _ in range(steps):
        idx = torch.randint(len(z_train), (256,), generator=gen)
        loss = ((net(z_train[idx]) - (y_train[idx] - mu) / sd) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(z_valid) * sd + mu


def localise(model: str, task: str, grids: list[int], steps: int, cache_dir: str) -> tuple[list[dict], str]:
    """The rows of one world model (its latent and each of ``grids``, every quantity) and a note naming it."""
    from envs.registration import make_env
    from envs.state import split_state
    from planners.data import concat, load_cells, valid_split
    from planners.latent import LatentMap
    from planners.world_model import load_world_model
    from robrep.data.feature_cache import FeatureCache, compute_features
    from robrep.encoders.spec import EncoderSpec

    latent, _, payload = load_world_model(model)
    enc, record = payload["encoder"], payload["record"]
    spec = EncoderSpec.from_record(enc)
    encoder = spec.load("cpu")
    label = spec.run_label
    env = make_env(task)
    state_spec, tolerance = env.unwrapped.state_spec, float(getattr(env.unwrapped, "goal_tolerance", float("nan")))
    env.close()

    base = {**latent.config(), "use_proprio": False}
    maps = {f"planner latent ({latent.grid}x{latent.grid}x{latent.dim})": LatentMap(**base)}
    maps.update({f"{g}x{g}x{latent.dim}": LatentMap(**{**base, "grid": g}) for g in grids if g != latent.grid})
    parts: dict[str, dict[str, list]] = {name: {"train": [], "valid": []} for name in maps}
    for path in record["files"]:
        with torch.inference_mode():
            cache_file = compute_features(encoder, path, cache_dir, encoder_name=spec.label,
                                          use_language=bool(enc.get("use_language")), progress=False)
        split = valid_split(path)
        with FeatureCache(cache_file, encoder) as cache:
            for name, m in maps.items():
                for key, names in split.items():
                    if names:
                        parts[name][key].append(load_cells(str(path), cache, names, m))
    rows = []
    for name, m in maps.items():
        train, valid = concat(parts[name]["train"]), concat(parts[name]["valid"])
        if train.state is None or valid.state is None:
            raise SystemExit(f"{model}'s files lack obs/state: no privileged positions to probe")
        if name.startswith("planner latent"):
            m.load_state_dict({k: v for k, v in payload["latent_state"].items() if k in m.state_dict()})
        else:
            m.fit(train.cells, train.proprio)

        def targets(cells) -> torch.Tensor:
            s = split_state(cells.state.numpy(), state_spec)
            return torch.from_numpy(np.concatenate([s[q][:, :2] for q in QUANTITIES], 1)).float()

        with torch.no_grad():
            z_train, z_valid = m.map_cells(train.cells, train.proprio), m.map_cells(valid.cells, valid.proprio)
        y_train, y_valid = targets(train), targets(valid)
        err = probe(z_train, y_train, z_valid, steps) - y_valid  # (F', 2Q) metres
        rmse = (err ** 2).mean(0).sqrt().numpy()
        spread = y_valid.std(0).numpy()
        for j, q in enumerate(QUANTITIES):
            xy = slice(2 * j, 2 * j + 2)
            rows.append({"task": task, "encoder": label, "latent": name, "latent_dim": int(z_train.shape[1]),
                         "quantity": q.removesuffix("_pos"),
                         "rmse_cm": round(100 * float(np.sqrt((rmse[xy] ** 2).mean())), 2),
                         "rmse_x_cm": round(100 * float(rmse[2 * j]), 2),
                         "rmse_y_cm": round(100 * float(rmse[2 * j + 1]), 2),
                         "median_cm": round(100 * float(err[:, xy].norm(dim=1).median()), 2),
                         "p90_cm": round(100 * float(err[:, xy].norm(dim=1).quantile(0.9)), 2),
                         "spread_cm": round(100 * float(np.sqrt((spread[xy] ** 2).mean())), 2),
                         "tolerance_cm": round(100 * tolerance, 1), "train_frames": len(z_train),
                         "valid_frames": len(z_valid)})
            print(f"{label} {name}: {q} xy RMSE {rows[-1]['rmse_cm']:.2f} cm (x {rows[-1]['rmse_x_cm']:.2f}, y "
                  f"{rows[-1]['rmse_y_cm']:.2f}; median {rows[-1]['median_cm']:.2f}, p90 {rows[-1]['p90_cm']:.2f}; spread {rows[-1]['spread_cm']:.2f} "
                  f"cm; success tolerance {rows[-1]['tolerance_cm']:.1f} cm)")
    return rows, (f"world model {Path(model).name}: encoder {label} weights {spec.weights}; its files "
                  f"{', '.join(record['files'])}; trained by: {record['command']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, nargs="+",
                        help="world-model checkpoints written by `robrep plan` (one task; e.g. an encoder and its "
                             "random init)")
    parser.add_argument("--task", default="push", help="the world models' task (one with a block and a goal)")
    parser.add_argument("--grids", type=int, nargs="+", default=[6], help="finer pooling grids to compare")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--cache-dir", default="cache/features")
    add_output_args(parser, NAME, "results/plan/<task>_latent_localisation.csv")
    args = parser.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)

    rows, notes = [], []
    for model in args.model:
        model_rows, note = localise(model, args.task, args.grids, args.steps, args.cache_dir)
        rows += model_rows
        notes.append(note)
    path = output_path(args, NAME, f"results/plan/{args.task}_latent_localisation.csv")
    write_csv(rows, path, comments=[command(NAME, argv), *notes])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
