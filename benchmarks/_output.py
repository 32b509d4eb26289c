"""Where a benchmark writes (not a benchmark itself): under ``runs/benchmarks/<name>/`` by default, the
committed reference under ``results/`` only when asked (``--commit``), or an explicit ``--out``; and the
command line it records in its outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from robrep.results import command_line

#: Default root of every benchmark's outputs (one folder per benchmark; ``runs/`` is not committed).
RUNS = Path("runs/benchmarks")
#: Root of the committed reference outputs.
RESULTS = Path("results")


def rebase(path: str | Path, root: str | Path | None) -> Path:
    """``path`` with its leading ``results/`` replaced by ``root`` (``results/a/b.csv`` → ``<root>/a/b.csv``;
    a path elsewhere goes under ``root`` whole); ``root=None``: ``path`` unchanged."""
    path = Path(path)
    if root is None:
        return path
    rel = path.relative_to(RESULTS) if path.parts[:1] == RESULTS.parts else path
    return Path(root) / rel


def add_output_args(parser: argparse.ArgumentParser, name: str, committed: str, out_flag: str = "--out",
                    what: str = "output path") -> None:
    """``--commit`` (write ``committed``, the reference under results/) and ``out_flag`` (an explicit path),
    mutually exclusive; without either benchmark ``name`` writes under ``runs/benchmarks/<name>/``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--commit", action="store_true", help=f"write the committed reference {committed}")
    group.add_argument(out_flag, default=None, metavar="PATH",
                       help=f"{what} (default {rebase(committed, RUNS / name).as_posix()})")


def output_path(args: argparse.Namespace, name: str, committed: str | Path, out_attr: str = "out") -> Path:
    """The output of benchmark ``name``: ``args.<out_attr>`` if given, ``committed`` with ``--commit``, else
    ``committed`` rebased under ``runs/benchmarks/<name>/`` (same file name)."""
    out = getattr(args, out_attr, None)
    if out:
        return Path(out)
    return Path(committed) if args.commit else rebase(committed, RUNS / name)


def command(name: str, argv: Sequence[str] | None = None) -> str:
    """``python -m benchmarks.<name> <args>`` (``argv``: the arguments main() parsed; None = ``sys.argv``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return command_line(["", *args], program=f"python -m benchmarks.{name}")
