"""What each committed encoder checkpoint cost and was trained on, read from its own metadata (no model is built).

``python -m benchmarks.checkpoints [WEIGHTS ...] [--commit | --out PATH]`` (default: every ``weights/*.pt``)

One row per checkpoint: family, optimizer steps (and the cosine schedule's length, when the run was budgeted in
steps), FLOPs (measured by ``robrep pretrain`` on the run's first batch × steps; empty for checkpoints made before
it counted them), wall hours over every run that made it (resumed runs summed; each under its own load), the corpus
(the pretraining files' folders and frame count), precision, the final smoothed loss, the file's size and content
hash. The compute-matched checkpoints (``<family>_matched``, ``scripts/pretrain_matched.sh``) and the earlier chunk
kept beside them (``<family>_matched_<step>``) sit beside the wall-clock ones (``_quick``, ``_full``), so what the
extra compute bought can be read against what it cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._output import add_output_args, command, output_path
from robrep import results
from robrep.encoders.checkpoint import read_checkpoint

NAME = "checkpoints"
COMMITTED = "results/checkpoints.csv"


def checkpoint_row(path: Path) -> dict:
    """One row of the table (see the module doc) for the checkpoint at ``path``."""
    ckpt = read_checkpoint(path)
    meta = ckpt.get("meta") or {}
    flops = meta.get("flops")
    seconds = meta.get("seconds_total", meta.get("seconds"))
    data = meta.get("data") or {}  # pretraining file → its hash
    folders = sorted({str(Path(p).parent) for p in data})
    return {"weights": path.as_posix(), "family": ckpt["family"], "steps": meta.get("steps", ""),
            "schedule_steps": meta.get("schedule_steps") or "",
            "tflop": round(flops / 1e12, 1) if flops else "",
            "wall_h": round(seconds / 3600, 2) if seconds else "", "corpus": " ".join(folders),
            "files": len(data), "frames": meta.get("frames", ""),
            "precision": meta.get("precision", "float32"),
            "final_loss": round(float(meta["final_loss"]), 4) if meta.get("final_loss") is not None else "",
            "size_mb": round(path.stat().st_size / 2**20, 1), "hash": ckpt.get("hash", "")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", type=Path, help="checkpoints (default: every weights/*.pt)")
    add_output_args(parser, NAME, COMMITTED)
    args = parser.parse_args(argv)
    paths = args.weights or sorted(Path("weights").glob("*.pt"))
    rows = [checkpoint_row(p) for p in paths]
    for r in rows:
        print(f"{r['weights']:<44} {r['steps']:>6} steps {r['tflop'] or '–':>8} TFLOP {r['wall_h'] or '–':>6} h  "
              f"{r['corpus']} ({r['frames']} frames)  loss {r['final_loss']}  {r['size_mb']} MB")
    out = output_path(args, NAME, COMMITTED)
    results.write_csv(rows, out, comments=[command(NAME, argv)])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
