"""The encoders' own diagnostics from the simulator's ground truth, and whether any of them ranks the encoders in the
order of closed-loop success.

    python -m benchmarks.encoder_diagnostics [--task push] [--frames 200] [--encoders mae dift voltron clip]
        [--budget full] [--dift-ts 0 50 100 200 400] [--dift-blocks 0 1 2] [--closed-loop results/sweeps/push_fair2]
        [--bootstrap 2000] [--commit | --out DIR]

Frames: ``--frames`` development layouts (``robrep.seeds.DEV_SEEDS``), each after a random number (0–40) of scripted
expert steps (:func:`robrep.probe.correspondence.keypoint_frames`); frame ``i`` is paired with frame ``i + F/2``
(two layouts). Per encoder (``weights/<name>_<budget>.pt`` and the same architecture at random init, the sweep's
``*_random`` control; float32; Voltron with the task's instruction) and per feature-time choice — every ViT block
(``feature_layer``), DIFT's timestep × up block — and raw RGB pixels as the floor:

- ``correspondence_<task>.csv``: PCK@{2, 4, 8} px (96 px frames) of nearest-feature keypoint matches, per keypoint group
  (block, goal, gripper) and all together, with a 95 % bootstrap interval of PCK@4 over pairs; and the effective rank
  of the tokens of all frames (``erank_tokens``, Roy & Vetterli) and of their mean over the grid (``erank_mean``);
  and held-out (5-fold) ridge probes on the tokens pooled to 4 × 4 of targets harder than positions: the block-to-goal
  vector (``block_to_goal_r2``), gripper–block contact (``contact_balanced_acc``; half the frames are drawn from
  contact steps) and, on push_color, the named block (``target_acc``, chance 1/3);
- ``rank_correlation_<task>.csv`` (when ``--closed-loop`` has an ``auc.csv``): over the sweep arms that read patch tokens (mae, dift, voltron,
  clip_spatial and the random inits of mae, dift, voltron; clip and clip_random read the class token), Spearman's ρ
  between each diagnostic at the arm's default features and the arm's primary metric (``auc.csv``: area under
  success vs log N), a 95 % bootstrap interval over arms, the exact permutation p-value and its Holm correction over
  the diagnostics (``resolved``: corrected p < 0.05);
- ``rank_correlation_across_tasks.csv`` (``--across push=results/sweeps/push_fair2 push_color=... ``, from committed
  files only): per diagnostic the within-task ρ per task and their mean, permutation p (within tasks), bootstrap
  interval (arms within tasks), Holm across diagnostics (:func:`rank_correlation_across`);
- ``choice_tests_<task>.csv``: per encoder, the feature-time choice with the best PCK@4 on half of the pairs against
  the default on the other half (:func:`choice_tests`): does another layer or DIFT (t, up block) correspond better?

Writes under ``runs/benchmarks/encoder_diagnostics/diagnostics/`` (``--commit``: ``results/diagnostics/``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy import stats

from benchmarks._output import add_output_args, command, output_path
from robrep.config import config_dir
from robrep.encoders.spec import EncoderSpec
from robrep.probe.correspondence import (KEYPOINT_GROUPS, PCK_THRESHOLDS, effective_rank, keypoint_frames,
                                         label_probes, pair_errors)
from robrep.eval.stats import holm
from robrep.results import read_csv, write_csv
from robrep.seeds import DEV_SEEDS
from robrep.threads import thread_limit

NAME = "encoder_diagnostics"
COMMITTED = "results/diagnostics"
#: Sweep arms whose policies read the patch tokens → (encoder family, pretrained?).
ARM_FEATURES = {"mae": ("mae", True), "dift": ("dift", True), "voltron": ("voltron", True),
                "clip_spatial": ("clip", True), "mae_random": ("mae", False), "dift_random": ("dift", False),
                "voltron_random": ("voltron", False)}
#: Diagnostics correlated with closed-loop success (columns of correspondence.csv, group ``all`` unless named).
RANKED = ("pck4", "pck4_block", "pck8", "erank_tokens", "block_to_goal_r2", "contact_balanced_acc")


def encoder_spec(name: str, weights: str | None) -> EncoderSpec:
    arch = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "encoder" / f"{name}.yaml").get("arch", {}))
    return EncoderSpec(name, weights, arch)


def feature_choices(encoder, name: str, dift_ts: list[int], dift_blocks: list[int]) -> list[dict]:
    """The feature-time choices to read: the default first, then every ViT block or DIFT (t, up block)."""
    if name == "dift":
        default = {"t": encoder.config["t"], "up_block": encoder.config["up_block"]}
        grid = [{"t": t, "up_block": b} for t in dift_ts for b in dift_blocks]
    elif hasattr(encoder, "feature_layer"):
        default = {"feature_layer": encoder.feature_layer}
        grid = [{"feature_layer": k} for k in range(1, len(encoder.vit.blocks) + 1)]
    else:
        return [{}]
    return [default] + [g for g in grid if g != default]


def bootstrap_pck(errors: np.ndarray, pair_of: np.ndarray, pairs: int, alpha: float, resamples: int,
                  rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile interval of PCK@``alpha`` resampling pairs (``pair_of``: each error's pair index)."""
    hits = np.bincount(pair_of, weights=(errors <= alpha).astype(float), minlength=pairs)
    counts = np.bincount(pair_of, minlength=pairs).astype(float)
    draws = rng.integers(0, pairs, (resamples, pairs))
    values = hits[draws].sum(1) / np.maximum(counts[draws].sum(1), 1)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def score(tokens: torch.Tensor, grid: tuple[int, int], frames, pairs, resamples: int, rng
          ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Rows per keypoint group (and ``all``) for tokens ``(F, N, D)`` of ``frames``, and per pair the matches within
    4 px and the keypoints matched ``(P,)`` each (all groups; for :func:`choice_tests`)."""
    per_pair = [pair_errors(tokens, grid, frames, [p]) for p in pairs]
    errors = np.concatenate([e for e, _ in per_pair])
    keypoint = np.concatenate([k for _, k in per_pair])
    pair_of = np.concatenate([np.full(len(e), i) for i, (e, _) in enumerate(per_pair)])
    group_of = np.array([next(g for g in KEYPOINT_GROUPS if frames.names[k].startswith(g)) for k in keypoint])
    flat = tokens.float().flatten(0, 1)
    step = max(1, len(flat) // 20000)  # the SVD of at most ~20k token rows
    ranks = {"erank_tokens": round(effective_rank(flat[::step]), 2),
             "erank_mean": round(effective_rank(tokens.float().mean(1)), 2),
             **{k: round(v, 4) for k, v in label_probes(tokens, grid, frames.labels).items()}}
    rows = []
    for group in ("all", *KEYPOINT_GROUPS):
        keep = np.ones(len(errors), bool) if group == "all" else group_of == group
        if not keep.any():
            continue
        e = errors[keep]
        lo, hi = bootstrap_pck(e, pair_of[keep], len(pairs), 4, resamples, rng)
        rows.append({"group": group, "keypoints": int(keep.sum()),
                     **{f"pck{a}": round(float(np.mean(e <= a)), 4) for a in PCK_THRESHOLDS},
                     "pck4_ci_low": round(lo, 4), "pck4_ci_high": round(hi, 4),
                     "median_error_px": round(float(np.median(e)), 2), **ranks})
    hits = np.bincount(pair_of, weights=(errors <= 4).astype(float), minlength=len(pairs))
    return rows, hits, np.bincount(pair_of, minlength=len(pairs)).astype(float)


def choice_tests(per_choice: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], resamples: int, rng) -> list[dict]:
    """Is another feature-time choice better than an encoder's default? Per encoder (``per_choice``: its choices as
    ``(label, hits, counts)`` per pair, the default first), the choice with the best PCK@4 on the first half of the
    pairs is compared with the default on the second half (selection and test on different pairs): the difference,
    a paired bootstrap interval and two-sided p over those pairs, Holm-corrected across encoders."""
    rows = []
    for name, entries in per_choice.items():
        half = len(entries[0][1]) // 2
        pick = lambda e, part: e[1][part].sum() / max(e[2][part].sum(), 1.0)  # noqa: E731
        best = max(entries, key=lambda e: pick(e, slice(0, half)))
        test = slice(half, None)
        (hd, cd), (hb, cb) = (entries[0][1][test], entries[0][2][test]), (best[1][test], best[2][test])
        draws = rng.integers(0, len(hd), (resamples, len(hd)))
        boot = hb[draws].sum(1) / np.maximum(cb[draws].sum(1), 1) - hd[draws].sum(1) / np.maximum(cd[draws].sum(1), 1)
        same = best is entries[0]
        rows.append({"encoder": name, "default": entries[0][0], "selected": best[0], "test_pairs": len(hd),
                     "pck4_default": round(pick(entries[0], test), 4), "pck4_selected": round(pick(best, test), 4),
                     "diff": round(pick(best, test) - pick(entries[0], test), 4),
                     "ci_low": round(float(np.percentile(boot, 2.5)), 4), "ci_high": round(float(np.percentile(boot, 97.5)), 4),
                     "p": 1.0 if same else round(min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))), 4)})
    for r, p in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"], r["resolved"] = round(float(p), 4), bool(p < 0.05)
    return rows


def encode(encoder, frames, batch: int = 50, language: bool = True) -> torch.Tensor:
    """Tokens ``(F, N, D)`` of the frames; a language-conditioned encoder gets each frame's instruction unless
    ``language`` is False."""
    texts = frames.instructions if language and hasattr(encoder, "encode_with_language") else None
    parts = [encoder.encode_frames(frames.images[i:i + batch], None if texts is None else texts[i:i + batch]).tokens
             for i in range(0, len(frames.images), batch)]
    return torch.cat(parts)


def _is_true(v) -> bool:
    return v is True or str(v).strip().lower() in ("true", "1", "yes")


def diagnostic_values(rows: list[dict], arms: list[str], diag: str) -> np.ndarray:
    """Each arm's value of ``diag`` at its default features (``rows``: correspondence rows, in-process or read
    back from ``correspondence_<task>.csv``)."""
    group = "block" if diag == "pck4_block" else "all"
    column = "pck4" if diag == "pck4_block" else diag
    pick = {(r["encoder"], r["weights"] != "random"): r for r in rows if _is_true(r["default"]) and r["group"] == group}
    return np.array([float(pick[ARM_FEATURES[a]][column]) for a in arms])


def rank_correlation(rows: list[dict], auc_csv: Path, resamples: int, rng) -> list[dict]:
    """Spearman's ρ between each diagnostic (at an arm's default features) and the arm's AUC, over ARM_FEATURES."""
    auc = {r["arm"]: r for r in read_csv(auc_csv)}
    have = {(r["encoder"], r["weights"] != "random") for r in rows if _is_true(r["default"]) and r["group"] == "all"}
    arms = [a for a in ARM_FEATURES if a in auc and ARM_FEATURES[a] in have]
    y = np.array([float(auc[a]["auc"]) for a in arms])
    out = []
    for diag in RANKED:
        try:
            x = diagnostic_values(rows, arms, diag)
        except KeyError:  # a diagnostic these rows lack
            continue
        rho = float(stats.spearmanr(x, y).statistic)
        perm = stats.permutation_test((x,), lambda v: stats.spearmanr(v, y).statistic, permutation_type="pairings",
                                      n_resamples=np.inf, alternative="two-sided")
        draws = rng.integers(0, len(arms), (resamples, len(arms)))
        boot = np.array([stats.spearmanr(x[d], y[d]).statistic for d in draws if len(set(d)) > 2])
        boot = boot[np.isfinite(boot)]
        out.append({"diagnostic": diag, "arms": " ".join(arms), "n_arms": len(arms), "spearman_rho": round(rho, 3),
                    "ci_low": round(float(np.percentile(boot, 2.5)), 3), "ci_high": round(float(np.percentile(boot, 97.5)), 3),
                    "p_permutation": round(float(perm.pvalue), 4), "auc_ns": auc[arms[0]]["ns"],
                    "values": " ".join(f"{a}={v:g}" for a, v in zip(arms, x))})
    for r, p in zip(out, holm([r["p_permutation"] for r in out])):
        r["p_holm"] = round(float(p), 4)
        r["resolved"] = bool(p < 0.05)
    return out


def rank_correlation_across(tasks: dict[str, tuple[list[dict], Path]], resamples: int, rng) -> list[dict]:
    """Does a diagnostic rank the encoders in the order of closed-loop success across tasks? Per diagnostic: the
    within-task Spearman ρ over the arms both files hold (``ARM_FEATURES``), per task and their mean over tasks (the
    statistic: each task ranks its own arms, so a task where every arm is at the floor adds noise, not a bias); a
    permutation p-value from ``resamples`` draws permuting the AUCs within every task independently; a 95 % interval
    from resampling arms within every task; Holm across the diagnostics. ``tasks``: task → (correspondence rows of
    that task, its sweep's ``auc.csv`` or rows ``{arm, auc, ns}`` of another closed-loop metric)."""
    data = {}
    for task, (rows, metric) in tasks.items():
        auc = {r["arm"]: r for r in (read_csv(metric) if isinstance(metric, Path) else metric)}
        have = {(r["encoder"], r["weights"] != "random") for r in rows if _is_true(r["default"])}
        arms = [a for a in ARM_FEATURES if a in auc and ARM_FEATURES[a] in have]
        if len(arms) >= 3:
            data[task] = (rows, arms, np.array([float(auc[a]["auc"]) for a in arms]), auc[arms[0]]["ns"])
    if len(data) < 2:
        raise ValueError(f"a rank correlation across tasks needs >= 2 tasks with >= 3 shared arms, got {sorted(data)}")
    rho = lambda x, y: float(stats.spearmanr(x, y).statistic)  # noqa: E731
    out = []
    for diag in RANKED:
        try:
            xs = {t: diagnostic_values(rows, arms, diag) for t, (rows, arms, _, _) in data.items()}
        except KeyError:
            continue
        per_task = {t: rho(xs[t], y) for t, (_, _, y, _) in data.items()}
        mean = float(np.mean(list(per_task.values())))
        null = np.array([np.mean([rho(xs[t], rng.permutation(y)) for t, (_, _, y, _) in data.items()])
                         for _ in range(resamples)])
        boot = []
        for _ in range(resamples):
            vals = []
            for t, (_, arms, y, _) in data.items():
                d = rng.integers(0, len(arms), len(arms))
                if len(set(d)) > 2:
                    vals.append(rho(xs[t][d], y[d]))
            vals = [v for v in vals if np.isfinite(v)]
            if vals:
                boot.append(np.mean(vals))
        p = (1 + int(np.sum(np.abs(null) >= abs(mean) - 1e-12))) / (resamples + 1)
        out.append({"diagnostic": diag, "tasks": " ".join(data), "n_tasks": len(data),
                    "arms": " | ".join(f"{t}: {' '.join(arms)}" for t, (_, arms, _, _) in data.items()),
                    "mean_spearman_rho": round(mean, 3), "ci_low": round(float(np.percentile(boot, 2.5)), 3),
                    "ci_high": round(float(np.percentile(boot, 97.5)), 3), "p_permutation": round(p, 4),
                    "per_task_rho": " ".join(f"{t}={v:+.3f}" for t, v in per_task.items()),
                    "auc_ns": " | ".join(f"{t}: {ns}" for t, (_, _, _, ns) in data.items())})
    for r, ph in zip(out, holm([r["p_permutation"] for r in out])):
        r["p_holm"] = round(float(ph), 4)
        r["resolved"] = bool(ph < 0.05)
    return out


def across_main(args, argv) -> None:
    """``--across``: the rank correlation across tasks from committed correspondence and auc files only."""
    out_dir = output_path(args, NAME, COMMITTED)
    tasks = {}
    for item in args.across:
        task, _, sweep = item.partition("=")
        corr = Path(args.diagnostics_dir or COMMITTED) / f"correspondence_{task.replace('/', '_')}.csv"
        metric = Path(sweep) / ("summary.csv" if args.n else "auc.csv")
        if not corr.exists() or not metric.exists():
            raise FileNotFoundError(f"--across {item}: needs {corr} (python -m benchmarks.encoder_diagnostics "
                                    f"--task {task} --closed-loop none --commit) and {metric}")
        if args.n:  # success at one N (seed mean) in place of the AUC: the few-demo question on its own
            metric = [{"arm": r["arm"], "auc": r["seed_mean"], "ns": str(args.n)} for r in read_csv(metric)
                      if int(r["n"]) == args.n]
        tasks[task] = (read_csv(corr), metric)
    corr = rank_correlation_across(tasks, args.bootstrap, np.random.default_rng(0))
    for r in corr:
        print(f"{r['diagnostic']:<21} mean within-task rho {r['mean_spearman_rho']:+.2f} [{r['ci_low']:+.2f}, "
              f"{r['ci_high']:+.2f}] ({r['per_task_rho']}), permutation p {r['p_permutation']}, Holm {r['p_holm']}")
    what = f"success at N = {args.n} (seed mean, summary.csv)" if args.n else "AUC (auc.csv)"
    path = write_csv(corr, out_dir / f"rank_correlation_across_tasks{f'_n{args.n}' if args.n else ''}.csv",
                     comments=[command(NAME, argv), f"per diagnostic: within-task Spearman rho against each task's "
                               f"{what}, mean over tasks; permutation within tasks; bootstrap over arms within "
                               "tasks; Holm across diagnostics"])
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="push")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--encoders", nargs="+", default=["mae", "dift", "voltron", "clip"])
    parser.add_argument("--budget", default="full", help="weights/<encoder>_<budget>.pt")
    parser.add_argument("--dift-ts", nargs="+", type=int, default=[0, 50, 100, 200, 400])
    parser.add_argument("--dift-blocks", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--closed-loop", default="results/sweeps/push_fair2",
                        help="a sweep directory of the same task with auc.csv ('none': no rank correlation)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--across", nargs="+", default=None, metavar="TASK=SWEEP_DIR",
                        help="only the rank correlation across tasks, from each task's committed "
                             "correspondence_<task>.csv and <SWEEP_DIR>/auc.csv (no features computed)")
    parser.add_argument("--n", type=int, default=None,
                        help="--across: rank against the success at this N (summary.csv) instead of the AUC")
    parser.add_argument("--diagnostics-dir", default=None, help=f"where --across reads correspondence_<task>.csv "
                        f"(default {COMMITTED})")
    parser.add_argument("--threads", type=int, default=1)
    add_output_args(parser, NAME, COMMITTED, what="output directory")
    args = parser.parse_args(argv)
    if args.across:
        return across_main(args, argv)
    out_dir = output_path(args, NAME, COMMITTED)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with thread_limit(args.threads):
        frames = keypoint_frames(args.task, list(DEV_SEEDS[:args.frames]))
        half = len(frames.images) // 2
        pairs = [(i, i + half) for i in range(half)]
        print(f"{len(frames.images)} frames of {args.task} (dev layouts), {len(pairs)} pairs; keypoints visible: "
              + ", ".join(f"{n} {v:.0%}" for n, v in zip(frames.names, frames.visible.mean(0))), flush=True)
        size = frames.images.shape[1]
        pixels = torch.from_numpy(frames.images).float().flatten(1, 2)  # (F, H·W, 3): RGB as the feature
        rows = [{"encoder": "pixels", "weights": "none", "choice": "rgb", "default": True, **r}
                for r in score(pixels, (size, size), frames, pairs, args.bootstrap, rng)[0]]
        per_choice: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
        for name in args.encoders:
            for weights in (f"weights/{name}_{args.budget}.pt", None):
                encoder = encoder_spec(name, weights).load()
                choices = [(c, True) for c in feature_choices(encoder, name, args.dift_ts, args.dift_blocks)]
                if hasattr(encoder, "encode_with_language"):  # the default features without the instruction too
                    choices.insert(1, (choices[0][0], False))
                for i, (choice, language) in enumerate(choices):
                    if weights is None and i > 0:
                        break  # random init: its default features only
                    if choice:
                        encoder.configure(**choice)
                    with torch.inference_mode():
                        tokens = encode(encoder, frames, language=language)
                    label = (" ".join(f"{k}={v}" for k, v in choice.items()) or "default") + ("" if language else
                                                                                             " no_instruction")
                    scored, hits, counts = score(tokens, tuple(encoder.grid_size), frames, pairs, args.bootstrap, rng)
                    if weights is not None and language:
                        per_choice.setdefault(name, []).append((label, hits, counts))
                    rows += [{"encoder": name, "weights": weights or "random", "choice": label, "default": i == 0,
                              **r} for r in scored]
                    top = scored[0]  # group "all"
                    probes = "  ".join(f"{k} {top[k]:.2f}" for k in ("block_to_goal_r2", "contact_balanced_acc",
                                                                      "target_acc") if k in top)
                    print(f"{name:<8} {'random' if weights is None else 'trained':<8} {label:<30} PCK@2/4/8 "
                          f"{top['pck2']:.2f}/{top['pck4']:.2f}/{top['pck8']:.2f}  erank {top['erank_tokens']}  "
                          f"{probes}", flush=True)
    cmd = command(NAME, argv)
    made = [write_csv(rows, out_dir / f"correspondence_{args.task.replace('/', '_')}.csv",
                      comments=[cmd, f"{args.task}, {len(frames.images)} dev-layout frames, {len(pairs)} pairs, "
                                     f"{size} px; PCK@a = share of keypoint matches within a px; "
                                     f"{time.perf_counter() - start:.0f} s on {args.threads} thread(s)"])]
    tests = choice_tests(per_choice, args.bootstrap, rng)
    for r in tests:
        print(f"{r['encoder']:<8} {r['selected']} vs default {r['default']}: PCK@4 {r['diff']:+.3f} "
              f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] on held-out pairs, Holm p {r['p_holm']}")
    made.append(write_csv(tests, out_dir / f"choice_tests_{args.task.replace('/', '_')}.csv",
                          comments=[cmd, "best PCK@4 choice selected on the first half of the pairs, tested against "
                                         "the default on the second half; paired bootstrap over pairs, Holm across "
                                         "encoders"]))
    auc_csv = Path(args.closed_loop) / "auc.csv"
    if auc_csv.exists():
        corr = rank_correlation(rows, auc_csv, args.bootstrap, rng)
        for r in corr:
            print(f"{r['diagnostic']:<13} vs AUC ({r['n_arms']} arms): rho {r['spearman_rho']:+.2f} "
                  f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], permutation p {r['p_permutation']}")
        made.append(write_csv(corr, out_dir / f"rank_correlation_{args.task.replace('/', '_')}.csv",
                              comments=[cmd, f"closed loop: {auc_csv} (primary metric auc over N = "
                                             f"{corr[0]['auc_ns']}); interval: bootstrap over arms"]))
    print("wrote " + ", ".join(str(p) for p in made))


if __name__ == "__main__":
    main()
