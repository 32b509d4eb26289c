"""Privileged-state probes: regress object/gripper positions from frozen features, score on held-out episodes.

Pieces (all numpy/torch, CPU):

* :func:`state_targets` picks the targets of a ``state_spec``: every ``*_pos`` entry and ``gripper_opening``.
* :class:`FrameFeatures` holds the subsampled tokens of one encoder and builds the fixed (non-learned)
  readouts ``cls``, ``mean``, ``flat`` and ``spatial_softmax`` (:data:`robrep.readouts.PROBE_READOUTS`, named
  in the one readout vocabulary :data:`robrep.readouts.READOUT_VOCABULARY`).
* :func:`ridge_probe` (closed-form, grouped CV, :mod:`robrep.probe.ridge`) and :func:`mlp_probe`
  (1 hidden layer, early stopping on held-out training episodes) map ``(N, F)`` features to ``(N, K)`` targets.
* :func:`variable_r2` scores a variable as ``1 - ΣSSE/ΣSST`` pooled over its dims (NaN = skipped).
* :func:`probe_rows` runs every readout × probe × fitting set; :func:`gate` is the pass/fail verdict.
* :func:`read_probe_csv` reads those rows back from a probe CSV (``robrep probe``'s output).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robrep.probe import ridge
from robrep.readouts import PROBE_READOUTS, SPATIAL_READOUTS, check_readout, check_readouts, pool_tokens
from robrep.results import read_csv

#: Fixed (parameter-free) readouts of a token map, in the shared vocabulary: ``cls`` = the global token;
#: ``mean``; ``flat``: the map average-pooled to at most ``flat_cells`` × ``flat_cells`` cells (adaptive
#: pooling, :func:`robrep.readouts.pool_tokens`), flattened cell-major ``(cells·D,)``; ``spatial_softmax``:
#: softmax over the grid of the projections on the top-K token PCs (fitted on the training frames),
#: expected (x, y) per PC. In :func:`probe_rows`, inputs wider than ``max_features`` (flat: 36·D) go
#: through :func:`reduce_dim` first.
READOUTS = PROBE_READOUTS
PROBES = ("ridge", "mlp")


def state_targets(state_spec: Sequence[Sequence], split_height: bool = False) -> dict[str, slice]:
    """Columns of ``obs/state`` to regress: ``{name: slice}`` for ``*_pos`` entries and ``gripper_opening``.

    ``split_height`` also adds ``<name>_xy`` (table plane) and ``<name>_z`` (height) for every 3-D ``*_pos``:
    diagnostic rows (not gated) that show which axis a single front view leaves ambiguous."""
    out, extra, start = {}, {}, 0
    for name, dim in state_spec:
        if name.endswith("_pos") or name == "gripper_opening":
            out[str(name)] = slice(start, start + int(dim))
            if split_height and name.endswith("_pos") and int(dim) == 3:
                extra[f"{name}_xy"], extra[f"{name}_z"] = slice(start, start + 2), slice(start + 2, start + 3)
        start += int(dim)
    return {**out, **extra}


def even_frames(num_frames: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` evenly spaced frame indices of ``range(num_frames)`` (first and last included)."""
    if max_frames <= 0 or num_frames <= max_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, max_frames)).astype(int))


def grid_coords(grid: tuple[int, int]) -> torch.Tensor:
    """``(h·w, 2)`` (x, y) of the cell centres in [-1, 1] (x right, y down, row-major)."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


class FrameFeatures:
    """Subsampled frozen features of one encoder, per episode: tokens ``(T_e, N, D)`` (float16 kept),
    global tokens ``(T_e, D)`` or None. :meth:`features` returns one readout's ``(T_e, F)`` per episode."""

    def __init__(self, tokens: Mapping[str, torch.Tensor], grid: tuple[int, int],
                 global_tokens: Mapping[str, torch.Tensor] | None = None, flat_cells: int = 6,
                 num_keypoints: int = 16, temperature: float = 0.5) -> None:
        self.tokens, self.grid, self.global_tokens = dict(tokens), tuple(grid), global_tokens
        self.flat_cells, self.num_keypoints, self.temperature = flat_cells, num_keypoints, temperature
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    @property
    def readouts(self) -> tuple[str, ...]:
        """The readouts these features offer: :data:`READOUTS`, without ``cls`` when there is no global token."""
        return tuple(r for r in READOUTS if r != "cls" or self.global_tokens is not None)

    def _fixed(self, readout: str, ep: str) -> np.ndarray:
        if (readout, ep) not in self._memo:
            tok = self.tokens[ep].float()
            if readout == "cls":
                x = self.global_tokens[ep].float()
            elif readout == "mean":
                x = tok.mean(1)
            else:
                x = pool_tokens(tok, self.grid, self.flat_cells).flatten(1)
            self._memo[(readout, ep)] = x.numpy()
        return self._memo[(readout, ep)]

    def keypoint_basis(self, fit_eps: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token mean ``(D,)`` and top-K PCs ``(D, K)`` of the tokens of ``fit_eps``, each scaled to unit
        variance and signed so its projections have positive skew (sparse bright spots = objects)."""
        d = next(iter(self.tokens.values())).shape[-1]
        s1, s2, n = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64), 0
        for ep in fit_eps:
            t = self.tokens[ep].reshape(-1, d).float()
            s1, s2, n = s1 + t.sum(0).double(), s2 + (t.T @ t).double(), n + len(t)
        mu = s1 / n
        evals, evecs = torch.linalg.eigh(s2 / n - torch.outer(mu, mu))
        k = min(self.num_keypoints, d)
        basis = (evecs.flip(1)[:, :k] / evals.flip(0)[:k].clamp_min(1e-12).sqrt()).float()
        mu = mu.float()
        skew = sum(((self.tokens[ep].reshape(-1, d).float() - mu) @ basis).pow(3).sum(0) for ep in fit_eps)
        return mu, basis * torch.where(skew < 0, -1.0, 1.0)

    def spatial_softmax(self, tokens: torch.Tensor, mu: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
        """``(B, N, D)`` → ``(B, 2K)``: softmax over the grid of the PC scores / temperature, expected (x, y)."""
        heat = (tokens.float() - mu) @ basis  # (B, N, K)
        attn = torch.softmax(heat / self.temperature, dim=1)
        return torch.einsum("bnk,nc->bkc", attn, grid_coords(self.grid)).flatten(1).numpy()

    def features(self, readout: str, fit_eps: Sequence[str], eps: Sequence[str]) -> list[np.ndarray]:
        """Readout ``(T_e, F)`` of each of ``eps``; ``spatial_softmax`` is fitted on the frames of ``fit_eps``.
        A name outside the vocabulary is an :class:`robrep.readouts.UnknownReadoutError`."""
        check_readout(readout, self.readouts, "these probe features")
        if readout != "spatial_softmax":
            return [self._fixed(readout, ep) for ep in eps]
        mu, basis = self.keypoint_basis(fit_eps)
        return [self.spatial_softmax(self.tokens[ep], mu, basis) for ep in eps]


def reduce_dim(x_tr: np.ndarray, x_te: np.ndarray, max_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(N, F)`` features with ``F > max_features`` on their top ``max_features`` PCs (randomised SVD
    of the centred training rows); below that (or when ``N <= max_features``: the whole row space,
    which leaves ridge unchanged) it is a no-op/rotation."""
    if x_tr.shape[1] <= max_features:
        return x_tr, x_te
    mu = x_tr.mean(0, keepdims=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        _, _, v = torch.svd_lowrank(torch.from_numpy(x_tr - mu), q=min(max_features, *x_tr.shape), niter=2)
    v = v.numpy()
    return (x_tr - mu) @ v, (x_te - mu) @ v


def ridge_probe(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, groups: np.ndarray, seed: int = 0,
                **_: object) -> np.ndarray:
    """Closed-form ridge ``(N, F) → (N, K)``, penalty per target by inner CV over episode ``groups``;
    returns ``(N_te, K)`` predictions."""
    return ridge.fit_predict(x_tr, y_tr, x_te, groups, seed=seed)


def mlp_probe(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, groups: np.ndarray, seed: int = 0,
              hidden: int = 256, weight_decay: float = 1e-2, lr: float = 2e-3, batch_size: int = 256,
              max_epochs: int = 150, patience: int = 10, holdout: float = 0.2) -> np.ndarray:
    """1-hidden-layer ReLU MLP ``(N, F) → (N, K)`` (AdamW with weight decay; inputs centred and globally
    scaled as for ridge, targets standardised). A seeded ``holdout`` fraction of the training episodes
    (``groups``) is held out for early stopping (best epoch kept). Returns ``(N_te, K)`` predictions."""
    xs_tr, xs_te = ridge.centre(x_tr.astype(np.float32), x_te.astype(np.float32))
    y_mu, y_sd = y_tr.mean(0), y_tr.std(0) + 1e-6
    eps = np.unique(groups)
    n_hold = min(len(eps) - 1, max(1, round(holdout * len(eps))))
    hold = np.isin(groups, np.random.default_rng(seed).permutation(eps)[:n_hold])
    x, y = torch.from_numpy(xs_tr), torch.from_numpy(((y_tr - y_mu) / y_sd).astype(np.float32))
    xa, ya, xb, yb = x[~hold], y[~hold], x[hold], y[hold]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, y.shape[1]))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_state, waited = math.inf, None, 0
        for _ in range(max_epochs):
            for idx in torch.randperm(len(xa)).split(batch_size):
                loss = F.mse_loss(model(xa[idx]), ya[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if not len(xb):
                continue
            with torch.no_grad():
                val = F.mse_loss(model(xb), yb).item()
            if val < best - 1e-4:
                best, best_state, waited = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
            elif (waited := waited + 1) >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    with torch.no_grad():
        return model(torch.from_numpy(xs_te)).numpy() * y_sd + y_mu


PROBE_FNS: dict[str, Callable[..., np.ndarray]] = {"ridge": ridge_probe, "mlp": mlp_probe}


def variable_r2(pred: np.ndarray, y_te: np.ndarray, y_tr: np.ndarray, targets: Mapping[str, slice],
                min_std: float = 1e-3) -> dict[str, float]:
    """R² per variable, ``1 - ΣSSE/ΣSST`` over its dims (dims weighted by their variance) on the test
    rows ``(N_te, S)``; NaN (= skipped) when the variable's total std in the training rows ``y_tr`` or
    in the test rows is below ``min_std`` (e.g. a gripper that never opens)."""
    out = {}
    for var, sl in targets.items():
        yt, p = y_te[:, sl], pred[:, sl]
        sst = ((yt - yt.mean(0)) ** 2).sum()
        if y_tr[:, sl].var(0).sum() < min_std**2 or sst / len(yt) < min_std**2:
            out[var] = float("nan")
        else:
            out[var] = float(1.0 - ((p - yt) ** 2).sum() / sst)
    return out


def probe_rows(feats: FrameFeatures, states: Mapping[str, np.ndarray], targets: Mapping[str, slice],
               subsets: Mapping[int, Sequence[str]], valid: Sequence[str], readouts: Sequence[str] = READOUTS,
               probes: Sequence[str] = PROBES, max_features: int = 512, min_std: float = 1e-3, seed: int = 0,
               mlp_kwargs: Mapping[str, object] | None = None,
               log: Callable[[str], None] | None = None) -> list[dict]:
    """Fit every probe on every readout for each fitting set ``subsets[N]`` (episode names) and score it on
    the ``valid`` episodes. ``states[ep]`` is ``(T_e, S)`` aligned with the frames of ``feats``. Every name in
    ``readouts`` must be a probe readout (:data:`READOUTS`; an unknown name is an error listing the readout
    vocabulary); those the features lack (``cls`` without a global token) are skipped. Returns tidy rows
    (readout, probe, n_demos, variable, r2, n_train_frames, n_test_frames, seconds = readout fitting + probe
    fit/predict time)."""
    readouts = check_readouts(readouts, READOUTS, "the state probe")
    cols = np.concatenate([np.arange(s.stop)[s] for s in targets.values()])
    y_te = np.concatenate([states[ep] for ep in valid])
    rows = []
    for n, eps in sorted(subsets.items()):
        y_tr = np.concatenate([states[ep] for ep in eps])
        groups = np.concatenate([np.full(len(states[ep]), i) for i, ep in enumerate(eps)])
        fit = cols[y_tr[:, cols].std(0) >= 0.1 * min_std]  # near-constant dims: predicted as the train mean
        for readout in [r for r in readouts if r in feats.readouts]:
            t0 = time.perf_counter()
            parts = feats.features(readout, eps, [*eps, *valid])
            x_tr, x_te = np.concatenate(parts[: len(eps)]), np.concatenate(parts[len(eps):])
            x_tr, x_te = reduce_dim(x_tr.astype(np.float32), x_te.astype(np.float32), max_features, seed)
            prep = time.perf_counter() - t0
            for probe in probes:
                t1 = time.perf_counter()
                pred = np.repeat(y_tr.mean(0, keepdims=True), len(y_te), 0)
                if len(fit):
                    kw = dict(mlp_kwargs or {}) if probe == "mlp" else {}
                    pred[:, fit] = PROBE_FNS[probe](x_tr, y_tr[:, fit], x_te, groups, seed=seed, **kw)
                secs = prep + time.perf_counter() - t1
                r2 = variable_r2(pred, y_te, y_tr, targets, min_std)
                rows += [dict(readout=readout, probe=probe, n_demos=n, variable=var, r2=val,
                              n_train_frames=len(x_tr), n_test_frames=len(x_te), seconds=secs)
                         for var, val in r2.items()]
                if log:
                    log(f"N={n:<4} {readout:<15} {probe:<5} {secs:5.1f} s  " +
                        " ".join(f"{k}={v:.2f}" for k, v in r2.items()))
    return rows


def read_probe_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a probe CSV (comment lines skipped) typed as :func:`probe_rows` made them where it matters:
    ``r2`` a float (NaN = skipped variable), ``n_demos`` an int."""
    return [{**r, "r2": float(r["r2"]), "n_demos": int(r["n_demos"])} for r in read_csv(path)]


def is_baseline(encoder: str) -> bool:
    """Baseline rows: raw ``pixels`` and ``<name>_random`` (random-init encoder)."""
    return encoder == "pixels" or encoder.endswith("_random")


def gate(rows: Sequence[Mapping], n: int = 50, threshold: float = 0.9) -> tuple[bool, dict]:
    """Pass when, for at least one spatial readout (``flat``/``spatial_softmax``) of the (single) non-baseline
    encoder, the ridge R² at ``n`` demos of every position variable (``*_pos``, not skipped) is
    ``>= threshold`` and strictly above the best spatial-readout R² of the baselines for that variable.
    Returns ``(passed, details)``: details has ``encoder``, ``variables``, ``baseline_best``, per-readout
    ``{variable: {"r2", "ok"}}`` under ``readouts``, ``passed_readouts`` and a one-line ``reason``."""
    def r2(row: Mapping) -> float:
        return float(row["r2"]) if row["r2"] not in ("", None) else float("nan")

    sel = [r for r in rows if r["probe"] == "ridge" and int(r["n_demos"]) == n and r["readout"] in SPATIAL_READOUTS]
    encoders = sorted({r["encoder"] for r in sel if not is_baseline(r["encoder"])})
    details: dict = {"n": n, "threshold": threshold, "encoder": None, "variables": [], "baseline_best": {},
                     "readouts": {}, "passed_readouts": []}
    if not sel:
        details["reason"] = f"no spatial ridge rows at N={n}"
        return False, details
    if len(encoders) != 1:
        details["reason"] = f"need exactly one non-baseline encoder with spatial ridge rows at N={n}, got {encoders}"
        return False, details
    enc = details["encoder"] = encoders[0]
    mine = [r for r in sel if r["encoder"] == enc]
    variables = sorted({r["variable"] for r in mine if r["variable"].endswith("_pos") and not math.isnan(r2(r))})
    details["variables"] = variables
    if not variables:
        details["reason"] = f"no position variable was scored at N={n}"
        return False, details
    for var in variables:
        vals = [r2(r) for r in sel if is_baseline(r["encoder"]) and r["variable"] == var and not math.isnan(r2(r))]
        details["baseline_best"][var] = max(vals, default=-math.inf)
    failures = []
    for readout in SPATIAL_READOUTS:
        got = {r["variable"]: r2(r) for r in mine if r["readout"] == readout}
        if not got:
            continue
        res = {v: {"r2": got.get(v, math.nan), "ok": got.get(v, -math.inf) >= threshold
                   and got.get(v, -math.inf) > details["baseline_best"][v]} for v in variables}
        details["readouts"][readout] = res
        if all(x["ok"] for x in res.values()):
            details["passed_readouts"].append(readout)
        else:
            bad = [f"{v} {x['r2']:.3f} (baseline {details['baseline_best'][v]:.3f})" for v, x in res.items() if not x["ok"]]
            failures.append(f"{readout}: " + ", ".join(bad))
    passed = bool(details["passed_readouts"])
    details["reason"] = (f"{'/'.join(details['passed_readouts'])}: every position variable >= {threshold} and above "
                         f"both baselines" if passed else "no spatial readout passes; " + "; ".join(failures or ["no rows"]))
    return passed, details
