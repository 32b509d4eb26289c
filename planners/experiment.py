"""The planning experiment: data, latent world model, CEM imagination planner evaluated in simulation.

1. data: the task's expert demos and play episodes (collected when missing), their frozen features cached;
2. world model (skipped when its checkpoint exists): :class:`planners.latent.LatentMap` fitted on the training
   episodes, transition model trained with the multi-step loss (``train.horizon``), best valid weights kept;
   open-loop error vs horizon h = 1 … ``diagnostics_horizon`` on held-out episodes (model and copy baseline);
3. evaluation: :class:`planners.mpc.LatentPlanner` on the shared evaluation seeds — success with a Wilson 95 %
   interval, mean episode length, ms per planned action, optional videos.

:func:`run_plan` writes ``<out_dir>/<task>_<encoder>_<dynamics>.json`` (everything), ``..._horizon.csv``/``.png``
and a row of ``<out_dir>/plan.csv`` (one row per (task, encoder, dynamics), replaced on re-runs).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from planners.cem import CEMConfig
from planners.world_model import (load_progress_model, load_world_model, progress_path, save_progress_model,
                                  save_world_model)
from planners.data import Transitions, concat, load_cells, load_tokens, valid_split
from planners.diagnostics import bound_table, cost_monotonicity, steps_to_go
from planners.dynamics import build_dynamics
from planners.latent import LatentMap
from planners.mpc import LatentPlanner
from planners.fit import DynamicsTrainConfig, ProgressTrainConfig, fit_dynamics, fit_progress, horizon_errors
from planners.reward import ProgressModel
from robrep import results
from robrep.data.demo_file import DemoFile
from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.digest import json_hash
from robrep.encoders.spec import EncoderSpec
from robrep.eval.rollouts import evaluate
from robrep.precision import resolve_precision
from robrep.threads import thread_limit

log = logging.getLogger(__name__)


def ensure_data(cfg: DictConfig) -> tuple[Path, Path]:
    """The demo file and the play file of ``cfg.task`` (collected when missing)."""
    from robrep.data.collect import collect_demos
    from robrep.data.play import PlayBehaviour, collect_play, task_path


    demos = Path(cfg.demos)
    if not demos.exists():
        collect_demos(cfg.task.name, int(cfg.num_demos), demos, image_size=cfg.task.image_size, subset_sizes=(),
                      subset_seeds=(), progress=cfg.progress, visuals=str(cfg.task.visuals))
    play = task_path(cfg.play_dir, cfg.task.name)
    if not play.exists():
        collect_play([cfg.task.name], int(cfg.play_episodes), cfg.play_dir, PlayBehaviour(),
                     image_size=cfg.task.image_size, visuals=str(cfg.task.visuals), progress=cfg.progress)
    return demos, play


def train_world_model(cfg: DictConfig, spec, encoder, files: list[Path], out: Path) -> Path:
    """Features → latent map → transitions → trained transition model + diagnostics, saved to ``out``; then the
    progress model on the demo file's (``files[0]``) latents and the cost-monotonicity diagnostic on its valid
    episodes, saved beside it (:func:`planners.world_model.progress_path`)."""

    dyn = OmegaConf.to_container(cfg.dynamics, resolve=True)
    latent = LatentMap(**dyn["latent"], feature_dim=encoder.feature_dim, grid_in=encoder.grid_size, proprio_dim=4,
                       use_proprio=bool(cfg.use_proprio))
    parts: dict[str, list] = {"train": [], "valid": []}
    caches: dict[Path, tuple[Path, dict[str, list[str]]]] = {}
    for path in files:
        with torch.inference_mode():
            cache_file = compute_features(encoder, path, cfg.cache_dir, encoder_name=spec.label,
                                          use_language=cfg.use_language, progress=cfg.progress)
        split = valid_split(path)
        caches[path] = (cache_file, split)
        with FeatureCache(cache_file, encoder) as cache:
            for key, names in split.items():
                if names:
                    parts[key].append(load_cells(str(path), cache, names, latent))
    train_cells, valid_cells = concat(parts["train"]), concat(parts["valid"])
    latent.fit(train_cells.cells, train_cells.proprio)
    skip, hist = int(dyn.get("frameskip", 1)), int(dyn.get("history", 1))
    train = Transitions.from_cells(train_cells, latent, skip, hist)
    valid = Transitions.from_cells(valid_cells, latent, skip, hist)
    torch.manual_seed(int(cfg.seed))  # ---- seeding: model init and minibatches
    model = build_dynamics(dyn["name"], latent.shape, 4 * skip, frameskip=skip, history=hist,
                           ensemble=int(dyn.get("ensemble", 1)), **dyn.get("kwargs", {}))
    tcfg = DynamicsTrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    fit = fit_dynamics(model, train, valid, tcfg, torch.Generator().manual_seed(int(cfg.seed)), progress=cfg.progress,
                       distance=latent.distance if tcfg.part_loss else None)
    errors = horizon_errors(model, valid, int(cfg.diagnostics_horizon))
    bound_rows, estimates = bound_table(model, valid, int(cfg.diagnostics_horizon))
    record = {"fit": fit, "horizon_errors": errors, "error_bound": {"rows": bound_rows, "estimates": estimates},
              "train_frames": len(train), "valid_frames": len(valid),
              "train_episodes": len(train_cells.lengths), "valid_episodes": len(valid_cells.lengths),
              "files": [str(f) for f in files], "train_config": OmegaConf.to_container(cfg.train, resolve=True),
              "command": results.command_line()}
    encoder_record = {**spec.to_dict(), "identity": encoder.identity(), "use_language": bool(cfg.use_language)}
    save_world_model(latent, model, encoder_record, record, out)
    wm_hash = load_world_model(out)[2]["hash"]

    # ---- progress model (trained on its target's frames) and the cost diagnostics (held-out expert demos)
    target = str(cfg.progress_model.get("target", "steps_to_go"))
    if target not in ("steps_to_go", "task_cost"):
        raise ValueError(f"progress_model.target must be steps_to_go or task_cost, got {target!r}")
    demo_path = files[0]
    cache_file, split = caches[demo_path]
    with FeatureCache(cache_file, encoder) as cache:
        held_out = load_tokens(str(demo_path), cache, split["valid"]) if split["valid"] else None
        if target == "steps_to_go":  # expert demos only: steps-to-go are known there
            sources = {k: load_cells(str(demo_path), cache, names, latent) for k, names in split.items() if names}
    if target == "steps_to_go":
        labels = {k: torch.from_numpy(steps_to_go(c.lengths)).float() for k, c in sources.items()}
    else:  # task_cost: every frame of demos and play, labelled by the privileged cost (training only)
        sources = {k: c for k, c in (("train", train_cells), ("valid", valid_cells)) if len(c.lengths)}
        labels = task_cost_labels(cfg.task.name, sources)
    with torch.no_grad():
        z = {k: latent.map_cells(c.cells, c.proprio) for k, c in sources.items()}
    progress = ProgressModel(latent.shape, scale=float(cfg.progress_model.scale))
    pcfg = ProgressTrainConfig(**{k: v for k, v in OmegaConf.to_container(cfg.progress_model, resolve=True).items()
                                  if k not in ("scale", "target")})
    pfit = fit_progress(progress, z["train"], labels["train"], z.get("valid"), labels.get("valid"), pcfg,
                        torch.Generator().manual_seed(int(cfg.seed)))
    pfit["target"] = target
    monotonicity = []
    if held_out is not None:
        monotonicity = cost_monotonicity(goal_costs(held_out, latent, progress), held_out.lengths)
    save_progress_model(progress, wm_hash, {"fit": pfit, "monotonicity": monotonicity,
                                            "command": results.command_line()}, progress_path(out))
    return out


def task_cost_labels(task: str, parts: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The ladder's rung (a) cost (:func:`planners.sim_model.privileged_cost`, metres) of every frame of each
    :class:`planners.data.EpisodeCells` in ``parts`` (with privileged ``state``), ``{key: (F,)}``: the target of a
    reward model that learns to read, from the latent alone, what rung (a) reads from the simulator."""
    from envs.registration import make_env
    from planners.sim_model import privileged_cost

    if any(c.state is None for c in parts.values()):
        raise ValueError("progress_model.target=task_cost needs obs/state in every demo and play file")
    env = make_env(task)
    try:
        spec = env.unwrapped.state_spec
    finally:
        env.close()
    return {k: torch.from_numpy(privileged_cost(task, spec, c.state.numpy())).float() for k, c in parts.items()}


def goal_costs(ep, latent: LatentMap, progress) -> dict[str, np.ndarray]:
    """Per frame of held-out expert episodes ``ep`` (:class:`planners.data.EpisodeTokens`), every candidate planning
    cost towards the episode's last frame: the planner latent's distance (``latent``), the same with standardised
    proprio added (``latent+proprio``, when the latent lacks it), the unpooled tokens' distance (channels
    standardised over the held-out frames; ``tokens``, ``tokens+proprio``) and the progress model's steps-to-go."""
    ends = np.cumsum(ep.lengths) - 1
    goal_of = torch.from_numpy(np.repeat(ends, ep.lengths)).long()
    with torch.no_grad():
        z = latent(ep.tokens, ep.proprio)
        tok = ep.tokens.float()
        tok = (tok - tok.mean((0, 1))) / tok.std((0, 1)).clamp_min(1e-6)
        prop = (ep.proprio - latent.proprio_mean) / latent.proprio_std
        d_lat = latent.distance(z, z[goal_of])  # the planner's distance (proprio channels averaged apart)
        d_tok = ((tok - tok[goal_of]) ** 2).mean((1, 2))
        d_prop = ((prop - prop[goal_of]) ** 2).mean(1)
        out = {"latent": d_lat, "tokens": d_tok, "tokens+proprio": d_tok + d_prop, "progress": progress(z)}
        if not latent.use_proprio:
            out["latent+proprio"] = d_lat + d_prop
    return {k: v.numpy() for k, v in out.items()}


def trained_seeds(files: list[Path]) -> list[int]:
    """Reset seeds of every episode the world model learnt from (checked disjoint from the evaluation seeds)."""

    seeds: list[int] = []
    for path in files:
        with DemoFile(path) as f:
            seeds += f.demo_seeds
    return seeds


def plot_horizon(series: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Open-loop latent MSE vs horizon h: per series (label → rows with ``h``, ``mse``, ``copy_mse``) the model as
    a solid line and its copy baseline (ẑ = z_t) dashed in the same colour. Writes a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (name, errors) in enumerate(series.items()):
        h = [int(e["h"]) for e in errors]
        ax.plot(h, [float(e["mse"]) for e in errors], "o-", color=f"C{i}", markersize=3, label=f"{name}: model")
        ax.plot(h, [float(e["copy_mse"]) for e in errors], "--", color=f"C{i}", alpha=0.6, label=f"{name}: copy ẑ = z_t")
    ax.set_xlabel("open-loop horizon h (steps)")
    ax.set_ylabel("latent MSE (standardised units)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(series) > 2 else 1)
    return results.save_figure(fig, path, suffixes=(".png",), dpi=120)[0]


def horizon_table(out: Path, task: str, runs: list[dict[str, str]]) -> tuple[Path, Path] | None:
    """Every (encoder, dynamics) planned on ``task`` (rows of plan.csv) side by side: ``<task>_horizon_errors.csv``
    (encoder, dynamics, h, mse, copy_mse, model_over_copy — the ratio is comparable across encoders, whose latent
    units differ) and one plot; None if no run has its horizon CSV."""
    series: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        path = out / f"{task}_{r['encoder']}_{r['dynamics']}_horizon.csv"
        if r["task"] == task and path.exists():
            series[(r["encoder"], r["dynamics"])] = results.read_csv(path)
    if not series:
        return None
    rows = [{"encoder": enc, "dynamics": dyn, **e,
             "model_over_copy": round(float(e["mse"]) / max(float(e["copy_mse"]), 1e-12), 4)}  # < 1: beats copying
            for (enc, dyn), errs in series.items() for e in errs]
    csv_path = results.write_csv(rows, out / f"{task}_horizon_errors.csv",
                                 comments=[f"open-loop latent MSE vs h on held-out episodes, every `robrep plan task={task}` "
                                           f"run in plan.csv (per run: <task>_<encoder>_<dynamics>_horizon.csv)"])
    return csv_path, plot_horizon({f"{enc}/{dyn}": errs for (enc, dyn), errs in series.items()},
                                  out / f"{task}_horizon_errors.png",
                                  f"{task}: open-loop latent error vs horizon (held-out episodes)")


def write_diagnostics(out: Path, label: str, name: str, cfg: DictConfig, record: dict, progress_record: dict | None
                      ) -> None:
    """Per run ``<label>.bound.csv`` (measured open-loop error vs DESIGN.md's bound) and ``<label>.costs.csv`` (each
    cost's rank correlation with steps-to-go on held-out expert episodes); across the encoders of ``plan.csv`` +
    this run, ``<task>_open_loop_vs_bound.csv/png`` and ``<task>_cost_monotonicity.csv/png``."""
    task = str(cfg.task.name)
    bound = record.get("error_bound")
    if bound:
        est = bound["estimates"]
        results.write_csv(bound["rows"], out / f"{label}.bound.csv", comments=[
            record["command"], f"delta (p95 one-step error norm) {est['delta']:.4f}, mean {est['delta_mean']:.4f}; "
            f"empirical Lipschitz L max {est['L_max']:.4f}, mean {est['L_mean']:.4f}"])
    if progress_record and progress_record.get("monotonicity"):
        results.write_csv(progress_record["monotonicity"], out / f"{label}.costs.csv",
                          comments=[progress_record["command"]])
    series_bound, series_cost = {}, {}
    for path in sorted(out.glob(f"{task}_*.bound.csv")):
        series_bound[path.name[len(task) + 1: -len(".bound.csv")]] = results.read_csv(path)
    for path in sorted(out.glob(f"{task}_*.costs.csv")):
        series_cost[path.name[len(task) + 1: -len(".costs.csv")]] = results.read_csv(path)
    if series_bound:
        rows = [{"run": run, **r} for run, rs in series_bound.items() for r in rs]
        results.write_csv(rows, out / f"{task}_open_loop_vs_bound.csv", comments=[f"every <run>.bound.csv of {task} in {out}"])
        plot_bound(series_bound, out / f"{task}_open_loop_vs_bound.png", f"{task}: open-loop error vs the bound")
    if series_cost:
        rows = [{"run": run, **r} for run, rs in series_cost.items() for r in rs]
        results.write_csv(rows, out / f"{task}_cost_monotonicity.csv",
                          comments=[f"every <run>.costs.csv of {task} in {out}: Spearman rho of cost vs steps-to-go"])
        plot_monotonicity(series_cost, out / f"{task}_cost_monotonicity.png",
                          f"{task}: does each cost fall with the steps to go? (held-out expert episodes)")


def plot_bound(series: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Per run, the mean (solid) and 95th-percentile (dotted) open-loop error norm and the bound (dashed) vs h."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 3.8))
    for i, (run, rows) in enumerate(series.items()):
        h = [int(r["h"]) for r in rows]
        ax.plot(h, [float(r["error_mean"]) for r in rows], "o-", color=f"C{i}", markersize=3, label=f"{run}: mean")
        ax.plot(h, [float(r["error_p95"]) for r in rows], ":", color=f"C{i}", label=f"{run}: p95")
        ax.plot(h, [float(r["bound"]) for r in rows], "--", color=f"C{i}", alpha=0.6, label=f"{run}: bound")
    ax.set_yscale("log")
    ax.set_xlabel("open-loop horizon h (steps)")
    ax.set_ylabel("latent error norm (standardised units)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return results.save_figure(fig, path, suffixes=(".png",), dpi=120)[0]


def plot_monotonicity(series: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Grouped bars: per run and cost, the mean Spearman rho with steps-to-go (± its standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = list(dict.fromkeys(r["cost"] for rows in series.values() for r in rows))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / max(len(costs), 1)
    for j, cost in enumerate(costs):
        vals = [next((r for r in rows if r["cost"] == cost), None) for rows in series.values()]
        xs = [i + (j - (len(costs) - 1) / 2) * width for i in range(len(series))]
        ax.bar(xs, [float(v["spearman_mean"]) if v else 0.0 for v in vals], width,
               yerr=[float(v["spearman_se"]) if v and v["spearman_se"] not in ("", "nan") else 0.0 for v in vals],
               label=cost, color=f"C{j}")
    ax.set_xticks(range(len(series)), list(series), rotation=20, fontsize=7)
    ax.axhline(0, color="k", linewidth=0.6)
    ax.set_ylim(-1, 1)
    ax.set_ylabel("Spearman ρ(cost, steps to go)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    return results.save_figure(fig, path, suffixes=(".png",), dpi=120)[0]


#: The planning ladder's rungs: what plans (model) and what scores (cost).
RUNGS = {"a": ("simulator", "privileged state"), "b": ("simulator", "latent of rendered frames"),
         "c": ("learned transition model", "latent")}
LADDER_KEY = ("task", "encoder", "rung", "eval_split", "episodes", "horizon", "action_repeat", "samples", "elites",
              "iterations", "cost", "approach_weight", "subgoal_ahead", "use_proprio", "proprio_weight", "goal_settle",
              "running_weight", "world_model", "risk", "prior")


def world_model_label(cfg: DictConfig) -> str:
    """Rung (c)'s transition model in one cell: dynamics name, frameskip, its kwargs, its latent (grid × grid cells ×
    principal components) and training steps (``pooled_mlp ×5 hidden=256 layers=2, 3x3x16, 3000 steps``), and
    its on-policy rounds (``aggregate``) when it has some."""
    label = _world_model_label(OmegaConf.to_container(cfg.dynamics, resolve=True), int(cfg.train.steps))
    rounds = int(cfg.get("aggregate", {}).get("rounds", 0))
    if rounds > 0:
        label += f", {rounds} planner rounds × {int(cfg.aggregate.episodes)} episodes"
    return label


def _world_model_label(dyn: dict[str, Any], steps: int) -> str:
    kwargs = " ".join(f"{k}={v}" for k, v in sorted(dict(dyn.get("kwargs") or {}).items()))
    lat = dyn.get("latent") or {}
    grid = f"{lat.get('grid')}x{lat.get('grid')}x{lat.get('dim')}"
    members = int(dyn.get("ensemble", 1))
    ensemble = f", ensemble of {members}" if members > 1 else ""
    return f"{dyn['name']} ×{int(dyn.get('frameskip', 1))} {kwargs}, {grid}, {steps} steps{ensemble}"


def cost_label(cfg: DictConfig) -> str:
    """``planner.cost``, with the reward model's target where it is not steps-to-go (``progress[task_cost]``)."""
    cost, target = str(cfg.planner.cost), str(cfg.progress_model.get("target", "steps_to_go"))
    return cost.replace("progress", f"progress[{target}]") if "progress" in cost and target != "steps_to_go" else cost


def ladder_row(cfg: DictConfig, rung: str, encoder: str, result, planner, split: str, repeat: int) -> dict[str, Any]:
    """One row of ``ladder.csv``: a rung's success (Wilson 95 %) on the shared layouts and its planning cost."""
    model, cost = RUNGS[rung]
    return {"task": cfg.task.name, "encoder": encoder, "rung": rung, "model": model, "scored_by": cost,
            "eval_split": split, "episodes": result.episodes, "successes": result.successes,
            "success_rate": round(result.success_rate, 4), "ci_low": round(result.ci[0], 4),
            "ci_high": round(result.ci[1], 4), "mean_length": round(result.mean_length, 2),
            "horizon": int(cfg.planner.horizon), "action_repeat": repeat, "samples": int(cfg.planner.samples),
            "elites": int(cfg.planner.elites), "iterations": int(cfg.planner.iterations),
            "cost": "privileged" if rung == "a" else cost_label(cfg),
            "approach_weight": float(cfg.planner.approach_weight) if rung == "a" else "",
            "subgoal_ahead": int(cfg.planner.subgoal_ahead) if rung != "a" else "",
            "use_proprio": bool(cfg.use_proprio) if rung != "a" else "",
            "proprio_weight": float(cfg.planner.proprio_weight) if rung != "a" and cfg.use_proprio else "",
            "goal_settle": int(cfg.planner.goal_settle) if rung != "a" else "",
            "running_weight": float(cfg.planner.running_weight),
            "world_model": world_model_label(cfg) if rung == "c" else "",
            "risk": (float(cfg.planner.get("risk", 0.0))
                     if rung == "c" and int(cfg.dynamics.get("ensemble", 1)) > 1 else ""),
            "prior": planner.prior.describe() if getattr(planner, "prior", None) is not None else "",
            "ms_per_action": round(planner.ms_per_action, 2),
            "ms_per_plan": round(planner.ms_per_plan, 2), "command": results.command_line()}


def write_ladder(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Add ``rows`` to the ladder table at ``path``, replacing rows with the same :data:`LADDER_KEY`; redraw
    ``ladder_<task>.png`` beside it for each task in ``rows`` (:func:`plot_ladder`)."""
    keys = {tuple(str(r[k]) for k in LADDER_KEY) for r in rows}
    old = [r for r in (results.read_csv(path) if path.exists() else [])
           if tuple(str(r.get(k, "")) for k in LADDER_KEY) not in keys]
    columns = list(dict.fromkeys(k for r in rows + old for k in r))  # rows from before a column existed: blank
    table = [{k: r.get(k, "") for k in columns} for r in old + rows]
    out = results.write_csv(table, path, comments=["one row per (task, encoder, rung, planner settings): "
                                                   "`robrep plan ladder=true` (rung a is encoder-free: '-')"])
    for task in dict.fromkeys(str(r["task"]) for r in rows):
        plot_ladder([r for r in table if str(r["task"]) == task], path.parent / f"ladder_{task}.png")
    return out


def _without_frameskip(label: str) -> str:
    """A :func:`world_model_label` without its ``×<frameskip>`` (the plot shows H × repeat already)."""
    name, _, rest = label.partition(" ×")
    return f"{name} {rest.partition(' ')[2]}"


def _default_world_model() -> str:
    """:func:`world_model_label` of ``configs/plan.yaml``'s defaults (its ``dynamics`` default and ``train.steps``),
    read from the config files, frameskip dropped."""
    from robrep.config import config_dir

    plan = OmegaConf.load(Path(config_dir()) / "plan.yaml")
    dynamics = next(d["dynamics"] for d in OmegaConf.to_container(plan.defaults)
                    if isinstance(d, dict) and "dynamics" in d)
    dyn = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "dynamics" / f"{dynamics}.yaml"))
    return _without_frameskip(_world_model_label(dyn, int(plan.train.steps)))


def _world_model_note(row: dict[str, Any], default: str) -> str:
    """``"\n<world model>"`` for a plot label when ``row``'s transition model is not ``default`` (only what differs
    when it extends the default, e.g. ``ensemble of 5 risk 3.0``; else its parts one per line), else ``""``."""
    wm = str(row.get("world_model") or "")
    if not wm or _without_frameskip(wm) == default:
        return ""
    short, base = _without_frameskip(wm).replace(" steps", ""), default.replace(" steps", "")
    note = short[len(base):].lstrip(", ") if short.startswith(base) else short.replace(", ", "\n")
    risk = str(row.get("risk") or "")
    return "\n" + note.replace("ensemble of ", "ens ") + (f"\nrisk {risk}" if risk else "")


def _policy_name(prior: str) -> str:
    """``"mae_n100_s0"`` of a ladder row's prior ``"mae_n100_s0_<content key>.pt std=… weight=…"``."""
    return str(prior).split()[0].removesuffix(".pt").rsplit("_", 1)[0]


def plot_ladder(rows: list[dict[str, Any]], path: Path) -> Path:
    """Success (Wilson 95 % bars) per ladder row of one task: one point per (rung, encoder), grouped by rung, labelled
    with the row's split, episodes and horizon × action repeat. Only the test-split rows (the reported ones) once the
    task has any — the development rows that chose their settings stay in the table; before that the dev rows,
    hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = [r for r in rows if r["eval_split"] == "test"]
    rows = sorted(test or rows, key=lambda r: (str(r["rung"]), str(r.get("prior") or ""), str(r["encoder"]),
                                               str(r["eval_split"])))
    default = _default_world_model()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * len(rows) + 1.5), 3.8))
    for x, r in enumerate(rows):
        p, lo, hi = (float(r[k]) for k in ("success_rate", "ci_low", "ci_high"))
        color = f"C{'abc'.index(str(r['rung']))}"
        ax.errorbar([x], [p], yerr=[[p - lo], [hi - p]], fmt="o", color=color, capsize=3,
                    markerfacecolor=color if r["eval_split"] == "test" else "white")
    ax.set_xticks(range(len(rows)), [f"({r['rung']}) {r['encoder']}\n{r['eval_split']} n={r['episodes']}\n"
                                     f"H{r['horizon']}×{r['action_repeat']}"
                                     + ("" if r["rung"] == "a" else f"\n{r['cost']}"
                                        + (f" sg{r['subgoal_ahead']}" if str(r.get("subgoal_ahead", "0")) not in
                                           ("", "0") else "")
                                        + _world_model_note(r, default))
                                     + (f"\nprior {_policy_name(r['prior'])}" if r.get("prior") else "")
                                     for r in rows], fontsize=5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("success (Wilson 95 %)")
    task = rows[0]["task"] if rows else ""
    ax.set_title(f"{task}: planning ladder\n(a) simulator + privileged cost · (b) simulator + latent cost · "
                 "(c) imagination", fontsize=7)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.grid(alpha=0.3, axis="y")
    return results.save_figure(fig, path, suffixes=(".png",), dpi=120)[0]


def planner_settings(cfg: DictConfig) -> tuple[CEMConfig, dict[str, Any], dict[str, Any], str]:
    """``(cem, planner kwargs, env_kwargs, eval_split)`` of a plan config: the kwargs every MPC planner takes
    (``running_weight``, ``action_repeat``, ``seed``) plus ``cost``, ``subgoal_ahead`` (latent planners) and
    ``approach_weight`` (rung a)."""
    plan_cfg = OmegaConf.to_container(cfg.planner, resolve=True)
    kwargs = {"running_weight": float(plan_cfg.pop("running_weight", 0.1)),
              "action_repeat": int(plan_cfg.pop("action_repeat", 1)), "seed": int(cfg.seed),
              "cost": str(plan_cfg.pop("cost", "goal")), "subgoal_ahead": int(plan_cfg.pop("subgoal_ahead", 0)),
              "approach_weight": float(plan_cfg.pop("approach_weight", 0.5)),
              "proprio_weight": float(plan_cfg.pop("proprio_weight", 1.0)),
              "goal_settle": int(plan_cfg.pop("goal_settle", 0)), "risk": float(plan_cfg.pop("risk", 0.0)),
              "prior": plan_cfg.pop("prior", None), "prior_std": float(plan_cfg.pop("prior_std", 0.2)),
              "prior_weight": float(plan_cfg.pop("prior_weight", 0.0))}
    plan_cfg.pop("name", None)
    env_kwargs = {"image_size": cfg.task.image_size, "visuals": str(cfg.task.visuals)}
    return CEMConfig(**plan_cfg), kwargs, env_kwargs, str(cfg.get("eval_split", "dev"))


def with_prior(cfg: DictConfig, planner, policy: Any = None):
    """``planner`` (rung c's) with the policy prior of ``planner.prior`` attached (:class:`planners.prior.PolicyPrior`
    around ``policy``, that BC policy loaded by the caller: planners do not import policies); none when
    ``planner.prior`` is null. Returns the planner. The simulator rungs plan without it."""
    _, kw, env_kwargs, _ = planner_settings(cfg)
    if not kw["prior"]:
        return planner
    if policy is None:
        raise ValueError(f"planner.prior={kw['prior']} needs that BC policy loaded (policies.load_policy) and passed "
                         "as run_plan(cfg, prior_policy=...), as `robrep plan` does")
    from planners.prior import PolicyPrior

    prior = PolicyPrior(policy, kw["prior_std"], kw["prior_weight"], str(kw["prior"]))
    prior.check_env(str(cfg.task.name), env_kwargs)
    planner.prior = prior
    return planner


def _pick(kwargs: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: kwargs[k] for k in keys}


def run_search_rung(cfg: DictConfig) -> dict[str, Any]:
    """Rung (a) alone (``ladder=true rungs=[a]``): the simulator as the model, the privileged cost — no encoder,
    data or world model; for choosing the search's settings on development layouts. Returns its ladder row."""
    from planners.sim_model import SimStatePlanner

    cem, kw, env_kwargs, split = planner_settings(cfg)
    repeat = kw["action_repeat"]
    with thread_limit(cfg.threads):
        planner = SimStatePlanner(cem, cfg.task.name, env_kwargs,
                                  **_pick(kw, "action_repeat", "running_weight", "approach_weight", "seed"))
        try:
            result = evaluate(planner, int(cfg.episodes), seed_start=int(cfg.eval_seed_start),
                              num_envs=int(cfg.num_envs), video_episodes=int(cfg.videos), progress=cfg.progress,
                              demo_seeds=[], split=split)
        finally:
            planner.close()
    row = ladder_row(cfg, "a", "-", result, planner, split, repeat)
    write_ladder(Path(cfg.out_dir) / "ladder.csv", [row])
    if cfg.videos:
        result.write_videos(Path(cfg.out_dir) / "videos" / f"{cfg.task.name}_rung_a.mp4")
    log.info(f"rung (a): {result.format()}; {planner.ms_per_plan:.0f} ms per replanning call")
    return row


def world_model_key(cfg: DictConfig, weights_hash: str) -> str:
    """Content key (12 hex) of the world model a plan config trains: the encoder's weights and everything that
    shapes the model — latent map, dynamics, proprio use, both training configs, the data's task, visuals, demo and
    play counts — so a default model path is reused only by a config that would train the same model."""
    dynamics = OmegaConf.to_container(cfg.dynamics, resolve=True)
    if int(dynamics.get("ensemble", 1)) == 1:  # a single model keys as before ensembles existed
        dynamics.pop("ensemble", None)
    parts = {"weights": weights_hash, "dynamics": dynamics,
             "use_proprio": bool(cfg.use_proprio), "train": OmegaConf.to_container(cfg.train, resolve=True),
             "progress_model": OmegaConf.to_container(cfg.progress_model, resolve=True), "task": cfg.task.name,
             "visuals": cfg.task.get("visuals"), "num_demos": int(cfg.num_demos),
             "play_episodes": int(cfg.play_episodes), "seed": int(cfg.seed)}
    return json_hash(parts, digits=12)


def load_plan_models(model_path: Path, weights_hash: str) -> tuple[LatentMap, Any, dict, Any, dict | None]:
    """``(latent map, transition model, world-model payload, reward model or None, its record or None)`` of the world
    model at ``model_path`` (refused when built on other encoder weights) and the reward model beside it, if any."""
    latent, dynamics, payload = load_world_model(model_path, weights_hash)
    progress, precord = None, None
    if progress_path(model_path).exists():
        progress, ppayload = load_progress_model(progress_path(model_path), payload["hash"])
        precord = ppayload["record"]
    return latent, dynamics, payload, progress, precord


def latent_planner(cfg: DictConfig, encoder, latent: LatentMap, dynamics, progress, prior_policy: Any = None
                   ) -> LatentPlanner:
    """Rung (c)'s :class:`planners.mpc.LatentPlanner` of a plan config with a loaded world model (latent map,
    transition model) and reward model (or None), and the BC policy of ``planner.prior`` (or None)."""
    cem, kw, env_kwargs, _ = planner_settings(cfg)
    return with_prior(cfg, LatentPlanner(encoder, latent, dynamics, cem, cfg.task.name, env_kwargs,
                                         use_language=bool(cfg.use_language), progress=progress, cost=kw["cost"],
                                         risk=kw["risk"], **_pick(kw, "action_repeat", "running_weight", "seed",
                                                                  "subgoal_ahead", "proprio_weight", "goal_settle")),
                      prior_policy)


def aggregate_rounds(cfg: DictConfig, spec, encoder, files: list[Path], model_path: Path,
                     prior_policy: Any = None) -> Path:
    """``aggregate.rounds`` rounds of on-policy data (:mod:`planners.aggregate`): each runs rung (c)'s planner with
    the current world model for ``aggregate.episodes`` episodes on planner-play seeds, adds them to the training
    files and trains the world model (and its reward model) again on all of them; returns the last model's path
    (``model_path`` itself with no rounds). Files and models are named after the base model and a hash of the planner
    settings and episodes (they shape the data), beside it, and are reused when present (``retrain`` retrains)."""
    from planners.aggregate import PLANNER_PLAY_SEEDS, collect_planner_play

    rounds, episodes = int(cfg.get("aggregate", {}).get("rounds", 0)), int(cfg.get("aggregate", {}).get("episodes", 0))
    if rounds <= 0:
        return model_path
    _, _, env_kwargs, _ = planner_settings(cfg)
    planner = OmegaConf.to_container(cfg.planner, resolve=True)
    if not planner.get("prior"):  # no prior: the settings (and file names) of before priors existed
        for key in ("prior", "prior_std", "prior_weight"):
            planner.pop(key, None)
    tag = json_hash({"planner": planner, "episodes": episodes}, digits=8)
    base, files = model_path, list(files)
    for r in range(1, rounds + 1):
        data = base.with_name(f"{base.stem}.planner_play{r}_{tag}.hdf5")
        if not data.exists():
            latent, dynamics, _, progress, _ = load_plan_models(model_path, encoder.weights_hash())
            planner = latent_planner(cfg, encoder, latent, dynamics, progress, prior_policy)
            try:
                info = collect_planner_play(planner, cfg.task.name, episodes, data,
                                            PLANNER_PLAY_SEEDS.start + (r - 1) * episodes, env_kwargs)
            finally:
                planner.close()
            log.info(f"round {r}: {info['episodes']} planner episodes ({info['successes']} successes, "
                     f"{info['frames']} frames, {info['seconds']:.0f} s) -> {data}")
        files.append(data)
        nxt = base.with_name(f"{base.stem}.agg{r}_{tag}.pt")
        if cfg.retrain or not nxt.exists():
            train_world_model(cfg, spec, encoder, files, nxt)
        model_path = nxt
    return model_path


def run_plan(cfg: DictConfig, prior_policy: Any = None) -> dict[str, Any]:
    """The planning experiment of a composed ``configs/plan.yaml``; returns the plan.csv row (or, for
    ``ladder=true rungs=[a]``, rung (a)'s ladder row: :func:`run_search_rung`). ``prior_policy``: the loaded BC policy
    that ``planner.prior`` names (rung c then plans around it, :mod:`planners.prior`)."""

    if cfg.get("ladder") and {str(r) for r in cfg.rungs} == {"a"}:
        return run_search_rung(cfg)
    t0 = time.perf_counter()
    with thread_limit(cfg.threads):
        spec = EncoderSpec.from_cfg(cfg, precision=resolve_precision(cfg.encoder_precision, cfg.device))
        encoder = spec.load(cfg.device)
        demos, play = ensure_data(cfg)
        name = spec.run_label  # random init (weights=null): its own row
        label = f"{cfg.task.name}_{name}_{cfg.dynamics.name}"
        model_path = Path(cfg.model or f"runs/plan/{label}_{world_model_key(cfg, encoder.weights_hash())}.pt")
        if cfg.retrain or not model_path.exists():
            log.info(f"training the {cfg.dynamics.name} world model on {demos} + {play} -> {model_path}")
            train_world_model(cfg, spec, encoder, [demos, play], model_path)
        model_path = aggregate_rounds(cfg, spec, encoder, [demos, play], model_path, prior_policy)
        latent, dynamics, payload, progress, prec = load_plan_models(model_path, encoder.weights_hash())
        record = payload["record"]
        out = Path(cfg.out_dir)
        errors = record["horizon_errors"]
        results.write_csv(errors, out / f"{label}_horizon.csv", comments=[record["command"]])
        plot_horizon({name: errors}, out / f"{label}_horizon.png",
                     f"{cfg.task.name} / {name} / {cfg.dynamics.name}: open-loop error (held-out episodes)")
        write_diagnostics(out, label, name, cfg, record, prec)
        cem, kw, env_kwargs, split = planner_settings(cfg)
        repeat, cost_kind = kw["action_repeat"], kw["cost"]
        latent_kw = _pick(kw, "action_repeat", "running_weight", "seed", "subgoal_ahead", "proprio_weight",
                          "goal_settle")
        plan_cfg = OmegaConf.to_container(cfg.planner, resolve=True)
        seen = trained_seeds([demos, play])

        def run_rung(planner, videos: int = 0) -> Any:
            try:
                return evaluate(planner, int(cfg.episodes), seed_start=int(cfg.eval_seed_start),
                                num_envs=int(cfg.num_envs), video_episodes=videos, progress=cfg.progress,
                                demo_seeds=seen, split=split)
            finally:
                planner.close()

        ladder_rows = []
        if cfg.get("ladder"):
            from planners.sim_model import SimLatentPlanner, SimStatePlanner

            for rung in [str(r) for r in cfg.rungs if str(r) in ("a", "b")]:
                planner = (SimStatePlanner(cem, cfg.task.name, env_kwargs,
                                           **_pick(kw, "action_repeat", "running_weight", "approach_weight", "seed"))
                           if rung == "a" else
                           SimLatentPlanner(encoder, latent, cem, cfg.task.name, env_kwargs,
                                            use_language=bool(cfg.use_language), progress=progress, cost=cost_kind,
                                            **latent_kw))
                res = run_rung(planner)
                ladder_rows.append(ladder_row(cfg, rung, "-" if rung == "a" else name, res, planner, split, repeat))
                log.info(f"rung ({rung}): {res.format()}")
        planner = latent_planner(cfg, encoder, latent, dynamics, progress, prior_policy)
        result = run_rung(planner, int(cfg.videos))  # only rung (c)'s videos are written
        if cfg.get("ladder") and "c" in [str(r) for r in cfg.rungs]:
            ladder_rows.append(ladder_row(cfg, "c", name, result, planner, split, repeat))
    if cfg.videos:
        result.write_videos(out / "videos" / f"{label}.mp4")
    h1 = errors[0] if errors else {}
    row: dict[str, Any] = {
        "task": cfg.task.name, "encoder": name, "weights_hash": encoder.weights_hash(),
        "dynamics": cfg.dynamics.name, "latent": payload["latent"]["kind"], "use_proprio": bool(cfg.use_proprio),
        "episodes": result.episodes, "successes": result.successes, "success_rate": round(result.success_rate, 4),
        "ci_low": round(result.ci[0], 4), "ci_high": round(result.ci[1], 4),
        "goal_expert_success": round(sum(planner.goal_success.values()) / max(len(planner.goal_success), 1), 4),
        "mean_length": round(result.mean_length, 2), "ms_per_action": round(planner.ms_per_action, 2),
        "ms_per_plan": round(planner.ms_per_plan, 2), "cost": cost_kind, "subgoal_ahead": kw["subgoal_ahead"],
        "horizon": plan_cfg["horizon"],
        "action_repeat": repeat, "samples": plan_cfg["samples"],
        "iterations": plan_cfg["iterations"], "eval_split": split,
        "h1_mse": round(h1.get("mse", math.nan), 4), "h1_copy_mse": round(h1.get("copy_mse", math.nan), 4),
        "h15_mse": round(errors[-1]["mse"], 4) if errors else math.nan,
        "train_seconds": round(record["fit"]["seconds"], 1), "eval_seconds": round(result.wall_s, 1),
        "command": results.command_line(),
    }
    results.write_json({**row, "result": result.to_dict(), "world_model": str(model_path), "record": record},
                       out / f"{label}.json")
    table = out / "plan.csv"
    rows = [{k: r.get(k, "") for k in row} for r in (results.read_csv(table) if table.exists() else [])
            if (r["task"], r["encoder"], r["dynamics"]) != (row["task"], row["encoder"], row["dynamics"])]
    results.write_csv(rows + [row], table, comments=["one row per `robrep plan task=<t> encoder=<e> dynamics=<d>` (the latest run)"])
    horizon_table(out, str(cfg.task.name), results.read_csv(table))
    if ladder_rows:
        write_ladder(out / "ladder.csv", ladder_rows)
    log.info(f"{result.format()}\nplanning: {planner.ms_per_action:.1f} ms per action (encode + CEM, {result.num_envs} envs "
             f"batched); open-loop latent MSE h=1 {row['h1_mse']} (copy {row['h1_copy_mse']}), h={len(errors)} "
             f"{row['h15_mse']}\nwrote {out / f'{label}.json'}, {table} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return row
