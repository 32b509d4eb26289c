"""``robrep cell``: one sweep cell (arm, N, seed): train, evaluate, write ``<sweep_dir>/cells/<arm>_n<N>_s<seed>.json``.

Reads the config, builds a :class:`robrep.sweep.cell.CellSpec` and calls :func:`robrep.sweep.cell.run_cell`
(``features_only=true``: only the arm's feature cache, :func:`robrep.sweep.cell.cell_features`).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from robrep.sweep.cell import CellSpec, cell_features, run_cell

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    spec = CellSpec.from_cfg(cfg)
    if cfg.features_only:
        path = cell_features(spec)
        log.info(f"{spec.arm}: features {path}" if path else f"{spec.arm}: trains on images (no feature cache)")
        return
    run_cell(spec)
