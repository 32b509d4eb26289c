"""Equal tuning for every arm: per (arm, N), a learning-rate × weight-decay grid chosen on the ``valid`` demos only.

For each (arm, N) that still has cells to run, every grid point is trained on the training subset of seed
``tune.seed`` (a policy like any cell's, content-addressed under ``policy_dir``); the point with the lowest
valid-demo action MSE of its kept (best) weights wins — ties go to the first point in grid order — and every
seed's cell at that (arm, N) trains with it (the tuning seed's cell finds its policy already trained). Choices
are stored in ``<sweep_dir>/tuning/<arm>_n<N>.json`` (a resumed sweep reuses them) and tabulated in
``<sweep_dir>/tuning.csv``. No evaluation layout is read: the choice cannot see the test table.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from robrep import results
from robrep.sweep.cell import CellSpec, train_cell

log = logging.getLogger(__name__)

#: The columns of ``tuning.csv``: one row per (arm, N, grid point).
TUNING_COLUMNS = ("arm", "n", "seed", "lr", "weight_decay", "valid_mse", "best_step", "steps", "max_steps",
                  "cap_bound", "chosen")


def grid_points(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of ``grid``'s ``lr`` and ``weight_decay`` values (lr-major), at most 3 × 2 = 6."""
    unknown = sorted(set(grid) - {"lr", "weight_decay"})
    if unknown:
        raise ValueError(f"tune.grid may hold lr and weight_decay only, got {unknown}")
    lrs = [float(v) for v in grid.get("lr") or []]
    wds = [float(v) for v in grid.get("weight_decay") or []]
    if not lrs or not wds or len(lrs) > 3 or len(wds) > 2:
        raise ValueError(f"tune.grid needs 1-3 lr and 1-2 weight_decay values, got lr={lrs}, weight_decay={wds}")
    return [{"lr": lr, "weight_decay": wd} for lr, wd in itertools.product(lrs, wds)]


def with_train(spec: CellSpec, seed: int | None = None, **train: float) -> CellSpec:
    """``spec`` with ``policy.train`` updated by ``train`` (and another training ``seed``): a different policy key."""
    policy = {**spec.policy, "train": {**spec.policy["train"], **train}}
    seed = spec.seed if seed is None else int(seed)
    config = {**spec.config, "policy": policy, "seed": seed}
    return dataclasses.replace(spec, policy=policy, seed=seed, config=config)


def choice_path(sweep_dir: str | Path, arm: str, n: int) -> Path:
    return Path(sweep_dir) / "tuning" / f"{arm}_n{int(n)}.json"


def tune_cells(cells: Sequence[CellSpec], grid: Mapping[str, Sequence[float]], seed: int, launcher: Any,
               sweep_dir: str | Path) -> tuple[list[CellSpec], list[tuple[str, str]]]:
    """Choose the grid point of every (arm, N) among ``cells`` (the cells still to run) that has no stored choice,
    training the grid through ``launcher``; returns ``(cells with their group's choice applied, failures)``. A group
    whose grid training failed gets no choice and is reported."""
    points = grid_points(grid)
    groups: dict[tuple[str, int], list[CellSpec]] = defaultdict(list)
    for c in cells:
        groups[(c.arm, c.n)].append(c)
    todo = {key: group for key, group in groups.items() if not choice_path(sweep_dir, *key).exists()}
    tasks = [(key, with_train(group[0], seed=seed, **p)) for key, group in todo.items() for p in points]
    failures: list[tuple[str, str]] = []
    if tasks:
        log.info(f"tuning {len(todo)} (arm, N) groups on the valid demos of seed {seed}: {len(tasks)} trainings "
                 f"({len(points)} grid points each)")
        outcomes = launcher.map(train_cell, [t for _, t in tasks])
        by_group: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for (key, task), out in zip(tasks, outcomes):
            if out.error is not None:
                failures.append((f"tune {task.name} lr={task.policy['train']['lr']} "
                                 f"wd={task.policy['train']['weight_decay']}", out.error))
            else:
                by_group[key].append(out.value)
        for key, rows in by_group.items():
            if len(rows) != len(points):
                continue  # a grid point failed: no choice (reported above)
            best = min(range(len(rows)), key=lambda i: (float(rows[i]["valid_mse"]), i))
            table = [{"arm": key[0], "n": key[1], "seed": seed, **{c: r.get(c) for c in TUNING_COLUMNS[3:-1]},
                      "chosen": i == best} for i, r in enumerate(rows)]
            results.write_json({"lr": rows[best]["lr"], "weight_decay": rows[best]["weight_decay"], "rows": table},
                               choice_path(sweep_dir, *key))
    write_tuning_table(sweep_dir)
    return apply_choices(cells, sweep_dir), failures


def apply_choices(cells: Sequence[CellSpec], sweep_dir: str | Path) -> list[CellSpec]:
    """``cells`` with the stored choice of their (arm, N) applied (cells of groups without one: unchanged)."""
    chosen = []
    for c in cells:
        path = choice_path(sweep_dir, c.arm, c.n)
        if path.exists():
            choice = results.read_json(path)
            c = with_train(c, lr=float(choice["lr"]), weight_decay=float(choice["weight_decay"]))
        chosen.append(c)
    return chosen


def write_tuning_table(sweep_dir: str | Path) -> Path | None:
    """``<sweep_dir>/tuning.csv`` from every stored choice (``None`` when there is none)."""
    files = sorted((Path(sweep_dir) / "tuning").glob("[!.]*.json"))
    if not files:
        return None
    rows = [row for f in files for row in results.read_json(f)["rows"]]
    return results.write_csv(rows, Path(sweep_dir) / "tuning.csv",
                             comments=["per (arm, N): each lr × weight_decay grid point trained on the tuning seed's "
                                       "subset; chosen = lowest valid-demo action MSE (no evaluation layout read)"])
