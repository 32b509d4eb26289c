"""The probe experiment (``robrep probe``): how well frozen features linearly (ridge) and non-linearly (MLP) carry privileged state.

For the configured encoder and (``baselines=true``) raw pixels and a random-init encoder of the same
architecture, fit probes on the nested ``train_n{N}_seed{s}`` subsets and score R² per state variable on the
``valid`` demos. Writes a tidy CSV (:data:`COLUMNS`, first line ``# <command>``) and a bar plot beside it,
prints a table at ``gate_n`` demos and the gate verdict (:func:`robrep.probe.state_probe.gate`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from robrep import results
from robrep.data.demo_file import DemoFile, subset_key
from robrep.data.feature_cache import FeatureCache, compute_features
from robrep.data.sources import resolve_dataset
from robrep.encoders import load_encoder
from robrep.encoders.base import Encoder
from robrep.encoders.registry import is_registered
from robrep.probe.plot import format_table, plot_probe
from robrep.threads import thread_limit
from robrep.probe.state_probe import READOUTS, FrameFeatures, even_frames, gate, probe_rows, state_targets
from robrep.readouts import check_readouts

log = logging.getLogger(__name__)

COLUMNS = ("encoder", "weights_hash", "readout", "probe", "n_demos", "variable", "r2", "n_train_frames",
           "n_test_frames", "seconds")


def pixel_tokens(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → ``(T, size², 3)`` in [0, 1], average-pooled (adaptive) to ``size × size``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return F.adaptive_avg_pool2d(x, (size, size)).flatten(2).transpose(1, 2)


def load_frames(demos: DemoFile, names: Sequence[str], frames_per_episode: int, pixel_size: int | None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Per episode: subsampled frame indices ``(T_e,)``, states ``(T_e, S)`` and (if ``pixel_size``) pixel
    tokens ``(T_e, pixel_size², 3)``."""
    idx, states, pixels = {}, {}, {}
    for name in names:
        ep = demos.episode(name)
        idx[name] = even_frames(len(ep["obs"]["state"]), frames_per_episode)
        states[name] = ep["obs"]["state"][idx[name]].astype(np.float64)
        if pixel_size:
            pixels[name] = pixel_tokens(ep["obs"]["image"][idx[name]], pixel_size)
    return idx, states, pixels


def encoder_frames(encoder: Encoder, cfg: DictConfig, cache_name: str, idx: Mapping[str, np.ndarray]) -> FrameFeatures:
    """Cached features (computed once per encoder weights × dataset) of the frames ``idx[episode]``."""
    with torch.inference_mode():
        path = compute_features(encoder, cfg.dataset, cfg.cache_dir, encoder_name=cache_name, batch_size=cfg.batch_size,
                                use_language=cfg.use_language, progress=cfg.progress)
    tokens, glob = {}, {}
    with FeatureCache(path, encoder) as cache:
        for name, frames in idx.items():
            feats = cache.features(name, dtype=torch.float16)
            tokens[name] = feats.tokens[frames]
            if feats.global_token is not None:
                glob[name] = feats.global_token[frames]
    return FrameFeatures(tokens, cache.grid, glob or None, flat_cells=cfg.flat_cells,
                         num_keypoints=cfg.num_keypoints, temperature=cfg.keypoint_temperature)


def write_csv(rows: Sequence[Mapping], path: str | os.PathLike, command: str) -> Path:
    """Tidy CSV (:data:`COLUMNS`) with a first comment line ``# <command>``, written atomically."""
    def fmt(row: Mapping) -> dict:
        r2 = float(row["r2"])
        return {**{k: row[k] for k in COLUMNS}, "r2": "nan" if math.isnan(r2) else f"{r2:.6f}",
                "seconds": f"{float(row['seconds']):.3f}"}

    return results.write_csv([fmt(r) for r in rows], path, [command])


def run_probe(cfg: DictConfig) -> tuple[bool, dict] | None:
    """The probe run of a composed ``configs/probe.yaml``; returns the gate verdict (``None`` with ``gate=false``)."""
    start = time.perf_counter()
    check_readouts(cfg.readouts, READOUTS, "the state probe")  # before any feature is computed
    bad = [f"frames_per_episode={cfg.frames_per_episode!r} (>= 0; 0 = every frame)"] if int(cfg.frames_per_episode) < 0 else []
    bad += [f"batch_size={cfg.batch_size!r} (>= 1)"] if int(cfg.batch_size) < 1 else []
    bad += [f"sizes={list(cfg.sizes)} (each >= 1)"] if not cfg.sizes or min(int(n) for n in cfg.sizes) < 1 else []
    if bad:
        raise ValueError(f"robrep probe: {'; '.join(bad)}")
    label = Path(str(cfg.encoder.name)).stem
    out = Path(cfg.out or f"runs/probe/probe_{Path(cfg.dataset).stem}_{label}.csv")
    progress_log = log.info if cfg.progress else None
    dataset = resolve_dataset(cfg.dataset)  # a demo file, or lerobot:<dir> converted once
    with thread_limit(cfg.threads):
        with DemoFile(dataset) as demos:
            demos.require_obs("image", "state", purpose="the state probe")
            targets = state_targets(demos.env_args["state_spec"], split_height=cfg.split_height)
            keys = {n: subset_key(n, cfg.subset_seed) for n in cfg.sizes}
            missing = [k for k in keys.values() if k not in demos.filter_keys]
            if missing:
                log.info(f"skipping fitting sets not in {dataset}: {missing}")
            subsets = {n: demos.demo_names(k) for n, k in keys.items() if k not in missing}
            if not subsets:
                raise ValueError(f"none of the subsets {list(keys.values())} is in {dataset} ({demos.filter_keys})")
            valid = demos.demo_names("valid")
            names = sorted({*valid, *(e for eps in subsets.values() for e in eps)}, key=lambda s: int(s.split("_")[-1]))
            idx, states, pixels = load_frames(demos, names, cfg.frames_per_episode, cfg.pixel_size if cfg.baselines else None)
        arch = OmegaConf.to_container(cfg.encoder.arch, resolve=True) or {}
        torch.manual_seed(cfg.seed)
        encoder = load_encoder(cfg.encoder.name, weights=cfg.weights, device=cfg.device, **arch)
        registry_name = cfg.encoder.name if is_registered(cfg.encoder.name) else encoder.family
        runs: list[tuple[str, Encoder | None]] = [(label, encoder)]
        if cfg.baselines:
            torch.manual_seed(cfg.seed)
            runs += [(f"{label}_random", load_encoder(registry_name, weights=None, device=cfg.device, **encoder.config)),
                     ("pixels", None)]
        kwargs = dict(readouts=list(cfg.readouts), probes=list(cfg.probes), max_features=cfg.max_features,
                      min_std=cfg.min_std, seed=cfg.seed, mlp_kwargs=OmegaConf.to_container(cfg.mlp),
                      log=progress_log)
        rows, by_hash = [], {}
        for name, enc in runs:
            if progress_log:
                progress_log(f"-- {name}" + (f" ({enc.weights_hash()})" if enc is not None else ""))
            if enc is None:
                feats, whash = FrameFeatures(pixels, (cfg.pixel_size,) * 2, flat_cells=cfg.pixel_size), "none"
                part = probe_rows(feats, states, targets, subsets, valid, **{**kwargs, "readouts": ["flat"]})
            elif (whash := enc.weights_hash()) in by_hash:
                part = by_hash[whash]  # same weights (e.g. weights=null): same features, same results
            else:
                part = by_hash[whash] = probe_rows(encoder_frames(enc, cfg, label, idx), states, targets, subsets,
                                                   valid, **kwargs)
            rows += [{"encoder": name, "weights_hash": whash, **r} for r in part]
    write_csv(rows, out, results.command_line())
    available = sorted(subsets)
    n_show = cfg.gate_n if cfg.gate_n in subsets else min(available, key=lambda n: abs(n - cfg.gate_n))
    png = plot_probe(rows, out.with_suffix(".png"), n_show, title=f"{label} on {Path(cfg.dataset).name}")
    log.info(format_table(rows, n_show))
    log.info(f"wrote {len(rows)} rows to {out} and {png} in {time.perf_counter() - start:.1f} s")
    if cfg.gate:
        passed, details = gate(rows, n=cfg.gate_n, threshold=cfg.gate_threshold)
        log.info(f"gate (N={cfg.gate_n}, ridge R² >= {cfg.gate_threshold} for every position variable on a spatial "
                 f"readout, above both baselines): {'PASS' if passed else 'FAIL'} - {details['reason']}")
        return passed, details
    log.info("gate: not evaluated (gate=false; reported only)")
    return None
