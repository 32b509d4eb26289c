"""Planning time of the CEM imagination planner: encode the observation(s) + CEM through the transition model,
at the default planner (configs/planner/cem.yaml, overridable) and dynamics (configs/dynamics/*.yaml).

    python -m benchmarks.planner_speed [--encoders mae dift voltron clip] [--dynamics pooled_mlp token_transformer]
        [--batches 1 10] [--actions 30] [--set horizon=5 action_repeat=5 ...] [--frameskip 5] [--commit | --out PATH]

``ms_per_plan``: one replanning call of one env (its latency); ``ms_per_action``: that amortised over the
``action_repeat`` env steps each planned macro-action is held (the control-step cost; target ≤ 50 ms).

Encoders load ``weights/<name>_full.pt`` when present (else random init: the same cost); the latent map is
fitted on random tokens and the transition model is untrained, which changes no timing. One torch thread.
Prints ms per planned action split into encoding and CEM, per batch size (envs planned together), and writes
runs/benchmarks/planner_speed/planner_speed.csv (``--commit``: the reference results/planner_speed.csv).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks._output import add_output_args, command, output_path
from planners.cem import CEM, CEMConfig
from planners.dynamics import build_dynamics
from planners.latent import LatentMap
from planners.mpc import goal_cost
from robrep.config import config_dir
from robrep.encoders import load_encoder
from robrep.results import write_csv

NAME = "planner_speed"
COMMITTED = "results/planner_speed.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["mae", "dift", "voltron", "clip"])
    parser.add_argument("--dynamics", nargs="+", default=["pooled_mlp", "token_transformer"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--actions", type=int, default=30, help="replanning calls timed per setting (after 3 warm-up)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="planner overrides (configs/planner/cem.yaml keys), e.g. horizon=5 action_repeat=5")
    parser.add_argument("--frameskip", type=int, default=1, help="env steps per transition-model step")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    configs = Path(config_dir())
    plan_cfg = OmegaConf.merge(OmegaConf.load(configs / "planner" / "cem.yaml"), OmegaConf.from_dotlist(args.set))
    plan_cfg = OmegaConf.to_container(plan_cfg)
    running = plan_cfg.pop("running_weight")
    repeat = int(plan_cfg.pop("action_repeat", 1))
    fields = {f.name for f in dataclasses.fields(CEMConfig)}
    cem_cfg = CEMConfig(**{k: v for k, v in plan_cfg.items() if k in fields})  # the MPC's own keys are not CEM's
    rows = []
    for name in args.encoders:
        weights = Path("weights") / f"{name}_full.pt"
        arch = OmegaConf.to_container(OmegaConf.load(configs / "encoder" / f"{name}.yaml").arch)
        encoder = load_encoder(name, weights=str(weights)) if weights.exists() else load_encoder(name, **arch)
        for dyn_name in args.dynamics:
            dyn = OmegaConf.to_container(OmegaConf.load(configs / "dynamics" / f"{dyn_name}.yaml"))
            latent = LatentMap(**dyn["latent"], feature_dim=encoder.feature_dim, grid_in=encoder.grid_size,
                               proprio_dim=4, use_proprio=False)
            latent.fit(torch.randn(256, dyn["latent"]["grid"] ** 2, encoder.feature_dim), torch.randn(256, 4))
            model = build_dynamics(dyn_name, latent.shape, 4 * args.frameskip, frameskip=args.frameskip,
                                   **dyn["kwargs"]).eval()
            for batch in args.batches:
                images = torch.randint(0, 256, (batch, 96, 96, 3), dtype=torch.uint8).numpy()
                proprio = torch.zeros(batch, 4)
                goal = torch.randn(batch, *latent.shape)
                cem = CEM(cem_cfg, 4, batch=batch, generator=torch.Generator().manual_seed(0))
                enc_s = cem_s = 0.0
                for i in range(args.actions + 3):
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        z = latent(encoder.encode_images(images).tokens, proprio)
                    t1 = time.perf_counter()
                    cem.plan(lambda actions: goal_cost(model, z, goal, actions, running, repeat))
                    cem.shift(1)
                    t2 = time.perf_counter()
                    if i >= 3:
                        enc_s, cem_s = enc_s + t1 - t0, cem_s + t2 - t1
                per = 1000.0 / (args.actions * batch)  # per replanning call of one env
                row = {"encoder": name, "dynamics": dyn_name, "latent_shape": "x".join(map(str, latent.shape)),
                       "batch": batch, "horizon": cem_cfg.horizon, "action_repeat": repeat,
                       "frameskip": args.frameskip, "samples": cem_cfg.samples, "iterations": cem_cfg.iterations,
                       "encode_ms_per_plan": round(enc_s * per, 2), "cem_ms_per_plan": round(cem_s * per, 2),
                       "ms_per_plan": round((enc_s + cem_s) * per, 2),
                       "ms_per_action": round((enc_s + cem_s) * per / repeat, 2)}  # amortised over the held steps
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    path = write_csv(rows, output_path(args, NAME, COMMITTED),
                     [f"command: {command(NAME, argv)}",
                      f"{os.cpu_count()}-core CPU, 1 torch thread; weights/<encoder>_full.pt where present"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
