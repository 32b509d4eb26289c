"""Which DIFT (up_block, t) to read: linear probes of the privileged state from frozen features.

    python -m benchmarks.dift_sweep --checkpoint weights/dift.pt --demos data/push_demos.hdf5 \
        [--frames 400] [--blocks 0 1 2] [--ts 0 50 100 200 400 700] [--ensemble 1] [--folds 4] \
        [--random-baseline] [--commit | --out PATH]

Takes ``--frames`` frames spread evenly over the episodes of the demo file, computes the features of
every (up_block, t) (one U-Net pass per t serves all blocks) and fits closed-form ridge regressions
from (a) mean-pooled tokens ``(C,)`` (the ``mean`` readout) and (b) the feature map average-pooled to 4×4
and flattened ``(16·C,)`` (the ``flat`` readout with 4 cells a side, channel-major here; CSV column
``pooling``: ``mean`` / ``4x4``) to each non-constant position dimension of ``obs/state`` (entries named ``*_pos`` in
``env_args["state_spec"]``; the first 3 are the gripper xyz). Features are centred and divided by one
global scale, targets standardised, both on the training folds; the ridge penalty is picked per target
by grouped (by episode) inner cross-validation; R² is computed on the pooled out-of-fold predictions of
``--folds`` folds of whole held-out *episodes* (so prefer many episodes, few frames each: per-episode
constants such as the goal have one value per episode). Baselines: raw pixels pooled the same way, and
with ``--random-baseline`` the same U-Net at random initialisation. Prints a table; writes
runs/benchmarks/dift_sweep/dift_sweep.csv (``--commit``: the reference results/dift_sweep.csv; first lines:
the command and the inputs' hashes). Read-out pooling (``pool``) does not change either probe, so the table
also covers ``pool=2``. Torch and BLAS run on ``--threads`` threads (1 is fastest on a shared CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._output import add_output_args, command, output_path
from robrep.data.demo_file import DemoFile
from robrep.data.feature_cache import file_hash
from robrep.encoders import load_encoder
from robrep.encoders.dift import DIFTEncoder
from robrep.probe.ridge import probe_r2
from robrep.results import write_csv
from robrep.threads import thread_limit

NAME = "dift_sweep"
COMMITTED = "results/dift_sweep.csv"


def load_frames(path: str, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, list[int]]]]:
    """``images (N, H, W, 3)``, ``targets (N, K)``, ``episode (N,)`` and the target groups (name, columns)."""
    with DemoFile(path) as demos:
        names = demos.demo_names()
        spec = [(str(n), int(d)) for n, d in demos.env_args.get("state_spec", [["gripper_pos", 3]])]
        per_ep = max(1, int(np.ceil(n_frames / len(names))))
        images, states, episode = [], [], []
        for i, name in enumerate(names):
            e = demos.episode(name)
            idx = np.unique(np.linspace(0, len(e["actions"]) - 1, per_ep).round().astype(int))
            images.append(e["obs"]["image"][idx])
            states.append(e["obs"]["state"][idx])
            episode.append(np.full(len(idx), i))
    images, states, episode = np.concatenate(images), np.concatenate(states).astype(np.float64), np.concatenate(episode)
    groups, cols, start = [], [], 0
    for name, d in spec:
        keep = [c for c in range(start, start + d) if name.endswith("_pos") and states[:, c].std() > 1e-6]
        if keep:
            groups.append((name, list(range(len(cols), len(cols) + len(keep)))))
            cols += keep
        start += d
    return images, states[:, cols], episode, groups


def pooled(fmap: torch.Tensor) -> dict[str, np.ndarray]:
    """``(B, C, h, w)`` → ``{"mean": (B, C), "4x4": (B, 16·C)}``."""
    return {"mean": fmap.mean(dim=(2, 3)).float().numpy(),
            "4x4": F.adaptive_avg_pool2d(fmap.float(), 4).flatten(1).numpy()}


def dift_features(encoder: DIFTEncoder, images: np.ndarray, blocks: list[int], t: int, ensemble: int,
                  batch_size: int) -> dict[int, dict[str, np.ndarray]]:
    encoder.configure(t=t, ensemble=ensemble, pool=1)
    parts: dict[int, list[dict[str, np.ndarray]]] = {b: [] for b in blocks}
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            out = encoder.encode_blocks(encoder.preprocess(images[i : i + batch_size]), blocks)
            for b in blocks:
                parts[b].append(pooled(out[b].as_map()))
    return {b: {k: np.concatenate([p[k] for p in parts[b]]) for k in ("mean", "4x4")} for b in blocks}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="robrep DIFT checkpoint (.pt)")
    parser.add_argument("--demos", required=True, help="demo HDF5 file with obs/state")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ts", type=int, nargs="+", default=[0, 50, 100, 200, 400, 700])
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op and BLAS threads (1 is fastest on a shared CPU)")
    parser.add_argument("--random-baseline", action="store_true", help="also probe the randomly initialised U-Net")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    out = output_path(args, NAME, COMMITTED)
    with thread_limit(args.threads):
        run(args, out, command(NAME, argv))


def run(args: argparse.Namespace, out: Path, command_line: str) -> None:
    """The sweep of the parsed ``args``: prints the table and writes the CSV ``out`` (``command_line`` first)."""
    images, y, episode, groups = load_frames(args.demos, args.frames)
    encoder = load_encoder(args.checkpoint)
    print(f"{len(images)} frames from {len(np.unique(episode))} episodes; targets "
          f"{', '.join(f'{n} ({len(c)})' for n, c in groups)}; checkpoint hash {encoder.weights_hash()}")
    sources = [("pretrained", encoder)]
    if args.random_baseline:
        torch.manual_seed(0)
        sources.append(("random_init", DIFTEncoder(**encoder.config).eval()))
    rows = []

    def add(source: str, block: int | str, t: int | str, grid: str, feats: dict[str, np.ndarray], sec: float) -> None:
        for pooling, x in feats.items():
            r2 = probe_r2(x, y, episode, args.folds)
            row = {"source": source, "up_block": block, "t": t, "pooling": pooling, "grid": grid, "dim": x.shape[1],
                   "r2_pos_mean": round(float(r2.mean()), 4),
                   **{f"r2_{n}": round(float(r2[c].mean()), 4) for n, c in groups},
                   "feature_seconds": round(sec, 1)}
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    pix = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    add("pixels", "-", "-", f"{images.shape[1]}x{images.shape[2]}", pooled(pix), 0.0)
    for source, enc in sources:
        for t in args.ts:
            start = time.perf_counter()
            feats = dift_features(enc, images, args.blocks, t, args.ensemble, args.batch_size)
            sec = time.perf_counter() - start
            for b in args.blocks:
                side = enc._block_resolution(b)
                add(source, b, t, f"{side}x{side}", feats[b], sec)

    meta = getattr(encoder, "checkpoint_meta", {}) or {}
    write_csv(rows, out, [
        f"command: {command_line}",
        f"checkpoint {args.checkpoint} hash {encoder.weights_hash()} steps {meta.get('steps', '?')}; demos "
        f"{args.demos} sha {file_hash(args.demos)[:16]}; {len(images)} frames, {len(np.unique(episode))} "
        f"episodes, {args.folds} held-out-episode folds, ensemble {args.ensemble}"])
    print("\nheld-out-episode R² (mean over position dims): mean-pooled | 4x4-pooled")
    for source, _ in sources:
        print(f"[{source}]  t: " + "".join(f"{t:>14}" for t in args.ts))
        for b in args.blocks:
            cells = []
            for t in args.ts:
                r = {row["pooling"]: row["r2_pos_mean"] for row in rows
                     if row["source"] == source and row["up_block"] == b and row["t"] == t}
                cells.append(f"{r['mean']:>6.3f}|{r['4x4']:<6.3f}")
            print(f"  up_block {b}  " + "".join(f"{c:>14}" for c in cells))
    px = {row["pooling"]: row["r2_pos_mean"] for row in rows if row["source"] == "pixels"}
    print(f"[pixels] {px['mean']:.3f}|{px['4x4']:.3f}\nwrote {out}")


if __name__ == "__main__":
    main()
