"""Result tables under ``results/``: CSV with the command that made it in comment lines, written atomically."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence


def command_line(argv: Sequence[str] | None = None, program: str | None = None) -> str:
    """The command that is running, quoted for a shell: ``robrep sweep task=push`` under the CLI (which sets
    ``sys.argv[0]`` to ``robrep <command>``), ``python -m benchmarks.x --a 1`` or ``python x.py`` otherwise.
    The one run-record helper: every command, cell and benchmark records its command with it."""
    argv = list(sys.argv if argv is None else argv)
    if program is None and argv and argv[0].startswith("robrep "):
        program = argv[0]
    head = program or f"python {Path(argv[0]).as_posix()}"
    return " ".join([head, *(shlex.quote(a) for a in argv[1:])])


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format from it
    work); when the block succeeds it is renamed onto ``path`` (``os.replace``), otherwise removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: The writer's pid in a temp file's name: ``.<stem>.tmp-<pid><suffix>`` (:func:`atomic_path`), ``<name>.tmp-<pid>-<hex>``
#: (demo files; feature caches use :func:`atomic_path`).
TEMP_NAME = re.compile(r"\.tmp-(\d+)(?:\D|$)")


def remove_stale_temps(directory: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Delete the temp files in ``directory`` (names starting with ``prefix``, if given) whose writer no longer runs
    on this machine — left by a killed process (SIGKILL runs no cleanup). Returns what was deleted."""
    from robrep.process import alive

    directory, removed = Path(directory), []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = TEMP_NAME.search(path.name)
        if match and path.is_file() and path.name.lstrip(".").startswith(prefix.lstrip(".")) \
                and not alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """``obj`` as indented JSON at ``path``, atomically."""
    return write_text(json.dumps(obj, indent=1, default=str) + "\n", path)


def read_json(path: str | os.PathLike) -> object:
    """The JSON value in ``path`` (as written by :func:`write_json`)."""
    with open(path) as f:
        return json.load(f)


def write_jsonl(rows: Iterable[Mapping[str, object]], path: str | os.PathLike) -> Path:
    """One JSON object per line at ``path``, atomically."""
    return write_text("".join(json.dumps(dict(r), default=str) + "\n" for r in rows), path)


def write_csv(rows: Iterable[Mapping[str, object]], path: str | os.PathLike, comments: Sequence[str] = ()) -> Path:
    """Write ``rows`` (dicts sharing keys) to ``path`` with ``# comment`` lines first; atomic."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    buf = io.StringIO(newline="")
    for line in comments:
        buf.write(f"# {line}\n")
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return write_text(buf.getvalue(), path)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_csv` (comment lines skipped)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def read_csv_comments(path: str | os.PathLike) -> list[str]:
    """The ``# comment`` lines :func:`write_csv` put before the header, without the ``# `` prefix."""
    with open(path, newline="") as f:
        return [line[1:].strip() for line in f if line.startswith("#")]


def save_figure(fig: Any, path: str | os.PathLike, suffixes: Sequence[str] = (".png", ".svg"),
                dpi: int = 130) -> list[Path]:
    """Write a matplotlib figure atomically as ``path`` with each suffix (default .png and .svg), close it;
    returns the paths. The same figure gives the same bytes (an SVG carries no date, its ids a fixed salt), so a
    regenerated plot of unchanged results leaves ``git status`` clean."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = [Path(path).with_suffix(suffix) for suffix in suffixes]
    try:
        for p in out:
            svg = p.suffix == ".svg"
            with atomic_path(p) as tmp, plt.rc_context({"svg.hashsalt": "robrep"} if svg else {}):
                fig.savefig(tmp, dpi=dpi, **({"metadata": {"Date": None}} if svg else {}))
    finally:
        plt.close(fig)
    return out
