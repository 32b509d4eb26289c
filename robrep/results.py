"""Result tables under ``results/``: CSV with the command that made it in comment lines, written atomically."""

from __future__ import annotations

import csv
import os
import shlex
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence


def command_line(argv: Sequence[str] | None = None, program: str | None = None) -> str:
    """The command that is running, quoted for a shell (``python benchmarks/x.py --a 1``)."""
    argv = list(sys.argv if argv is None else argv)
    head = program or f"python {Path(argv[0]).as_posix()}"
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


def write_csv(rows: Iterable[Mapping[str, object]], path: str | os.PathLike, comments: Sequence[str] = ()) -> Path:
    """Write ``rows`` (dicts sharing keys) to ``path`` with ``# comment`` lines first; atomic."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="") as f:
            for line in comments:
                f.write(f"# {line}\n")
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_csv` (comment lines skipped)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))
