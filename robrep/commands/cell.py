"""``robrep cell``: one cell of a data-efficiency sweep — train (arm, N, seed), evaluate, write a record.

The record ``<sweep_dir>/cells/<arm>_n<N>_s<seed>.json`` (see :mod:`robrep.sweep.table`) is written
atomically at the very end, so an interrupted cell leaves nothing half-done; if it already exists the cell
is skipped. The trained policy is kept under ``runs/sweeps/<sweep name>/policies/`` so a re-run whose
evaluation was interrupted does not train again.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from policies.checkpoint import EncoderSpec
from policies.model import ENCODER_TRUNKS
from robrep import results
from robrep.commands.eval import demo_seeds_of
from robrep.threads import thread_limit
from robrep.sweep.table import cell_name, cell_path


def run(cfg: DictConfig) -> None:
    from policies import load_policy
    from policies.train import policy_feature_cache, train_policy
    from robrep.eval.rollouts import evaluate

    record_path = cell_path(cfg.sweep_dir, cfg.arm, cfg.n, cfg.seed)
    name = cell_name(cfg.arm, cfg.n, cfg.seed)
    policy_cfg = OmegaConf.to_container(cfg.policy, resolve=True)
    uses_encoder = policy_cfg["trunk"] in ENCODER_TRUNKS
    encoder = None
    if uses_encoder:
        arch = OmegaConf.to_container(cfg.encoder.arch, resolve=True) or {}
        encoder = EncoderSpec(str(cfg.encoder.name), cfg.weights, arch, init_seed=int(cfg.encoder_seed),
                              precision=cfg.encoder_precision)
    if cfg.features_only:
        if policy_cfg["trunk"] == "features":
            with thread_limit(cfg.threads):
                path = policy_feature_cache(policy_cfg, encoder.load(cfg.device), cfg.dataset, cfg.cache_dir,
                                            encoder.label, cfg.feature_batch_size, cfg.use_language, cfg.progress)
            print(f"{cfg.arm}: features {path}")
        return
    if record_path.exists():
        print(f"{name}: done already ({record_path})")
        return
    policy_dir = cfg.get("policy_dir") or Path("runs/sweeps") / Path(cfg.sweep_dir).name / "policies"
    policy_path = Path(policy_dir) / f"{name}.pt"
    with thread_limit(cfg.threads):
        t0 = time.perf_counter()
        if not policy_path.exists():
            train_policy(policy_cfg, cfg.dataset, int(cfg.n), int(cfg.seed), policy_path, encoder=encoder,
                         cache_dir=cfg.cache_dir, use_language=cfg.use_language,
                         feature_batch_size=cfg.feature_batch_size, device=cfg.device,
                         config=OmegaConf.to_container(cfg, resolve=True), progress=cfg.progress)
        train_s = time.perf_counter() - t0
        policy = load_policy(policy_path, device=cfg.device)
        eval_env = {} if cfg.get("eval_visuals") is None else {"visuals": str(cfg.eval_visuals)}
        result = evaluate(policy, int(cfg.episodes), seed_start=int(cfg.eval_seed_start), num_envs=int(cfg.num_envs),
                          video_episodes=int(cfg.videos), progress=cfg.progress, demo_seeds=demo_seeds_of(policy),
                          env_kwargs=eval_env)
    if cfg.videos:
        result.write_videos(record_path.parent.parent / "videos" / f"{name}.mp4")
    meta = policy.meta
    enc = meta.get("encoder") or {}
    record = {
        "arm": str(cfg.arm), "task": result.task, "encoder": enc.get("name", ""),
        "weights": enc.get("weights", ""), "weights_hash": (enc.get("identity") or {}).get("weights_hash", ""),
        "readout": policy_cfg.get("readout", "") if uses_encoder else f"{policy_cfg['cnn']['arch']}+spatial_softmax",
        "trunk": policy_cfg["trunk"],
        "head": policy_cfg.get("head", ""), "n": int(cfg.n), "seed": int(cfg.seed),
        "demo_visuals": str(policy.env_kwargs.get("visuals", "clean")),
        "eval_visuals": str(result.env_kwargs.get("visuals", "clean")),
        **result.summary(), "train_seconds": round(float(meta.get("train", {}).get("seconds", train_s)), 1),
        "eval_seconds": round(result.wall_s, 1), "valid_mse": meta.get("train", {}).get("valid_mse"),
        "episode_seeds": result.seeds, "episode_success": [int(s) for s in result.success],
        "episode_length": [r.length for r in result.records], "policy": str(policy_path),
        "dataset": str(cfg.dataset), "command": results.command_line(program="robrep cell"),
    }
    results.write_json(record, record_path)
    print(f"{name}: {result.format()} -> {record_path}")
