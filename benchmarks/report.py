"""The results report: results/REPORT.md and README.md's costs block, rendered from the committed CSVs under results/
(every table, figure and number-bearing sentence comes from a CSV; the prose here is number-free; sorted rows and fixed
rounding make the output byte-identical on re-runs).

    python -m benchmarks.report [--check]    # rewrite both; --check: exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from robrep.results import read_csv, read_csv_comments, write_text
from robrep.sweep.table import ORACLE_ARMS, SCRATCH_ARMS

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- costs:begin -->", "<!-- costs:end -->"
POS, SPATIAL = ("gripper_pos", "block_pos", "goal_pos"), ("flat", "spatial_softmax", "attention")
OLD_READOUT = {"global": "cls", "keypoints": "spatial_softmax"}  # probe CSVs written before the one readout vocabulary
CONTROLS = ("_random", "_finetune")  # arms asking what pretraining / freezing adds: controls, not contenders
GATE_N, GATES = 50, ("pass", "fail", "reported")  # the gate's demo count and verdicts


def num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fx(x, d: int = 3) -> str:
    return "–" if math.isnan(num(x)) else f"{num(x):.{d}f}"


def rate(r: dict, k: str = "success_rate", lo: str = "ci_low", hi: str = "ci_high", digits: int = 0) -> str:
    """``r[k] % [r[lo], r[hi]]`` in percent; a value that rounds to zero prints ``0``, never ``-0``."""
    pc = lambda x: f"{round(100 * num(x), digits) + 0.0:.{digits}f}"  # noqa: E731  (+ 0.0 turns -0.0 into 0.0)
    return f"{pc(r[k])} % [{pc(r[lo])}, {pc(r[hi])}]"


def diff(d, lo, hi, label: bool = True) -> str:
    """``+d [lo, hi]`` with the interval's reading; ``label=False`` where a corrected test gives the verdict."""
    verdict = "resolved above" if num(lo) > 0 else "resolved below" if num(hi) < 0 else "unresolved"
    return f"{num(d):+.2f} [{num(lo):+.2f}, {num(hi):+.2f}]" + (f" ({verdict})" if label else "")


def listing(items) -> str:
    return ", ".join(items) or "none"


def table(header: list, rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows])


def csv_table(rows: Path | list[dict], cols: list[str] | None = None) -> str:
    """CSV rows (or a CSV's path) as written; floats with a long tail cut to 4 decimals."""
    rows = read_csv(rows) if isinstance(rows, Path) else rows
    cut = lambda x: f"{float(x):.4f}" if re.fullmatch(r"-?\d+\.\d{6,}", x or "") else (x or "–")  # noqa: E731
    return table(cols or list(rows[0]), [[cut(r.get(c, "")) for c in cols or list(rows[0])] for r in rows])


def tail(res: Path, pngs: list[Path], csvs: list[Path]) -> list[str]:
    """Figures (relative to results/) and commands (comment lines, `command` column) of the CSVs a section used."""
    rel = [p.relative_to(res).as_posix() for p in sorted(pngs) if p.exists()]
    figs = "\n".join(f"![{r}]({r})" if len(rel) <= 2 else f'<img src="{r}" alt="{r}" width="320">' for r in rel)
    cmds = [x for p in csvs if p.exists() for x in [f"# --- {p.relative_to(res).as_posix()}", *read_csv_comments(p),
                                                     *sorted({r.get("command") or "" for r in read_csv(p)} - {""})]]
    return [figs, "Made by (each CSV's comment lines and `command` column):\n\n```\n" + "\n".join(cmds) + "\n```"]


SWEEPS = {  # sweep directory: (title, what it measures)
    "push_fair2": ("The benchmark: push under one training rule (`robrep sweep task=push`)",
                   "The default arms — four families, CLIP's patch tokens, each family at random initialisation, the "
                   "from-scratch CNN — under one training rule (the budget and early-stopping threshold chosen by the "
                   "budget pilot on valid demos), equal tuning on valid demos and equal shift augmentation, five "
                   "training seeds, evaluated on the 100 test layouts (README: the benchmark's rules). Run N by N, "
                   "smallest first (runs.csv: one row per stage)."),
    "push_color_fair": ("push_color, and language where it decides the task (`robrep sweep task=push_color "
                        "preset=language_fair`)",
                        "\"Push the {colour} block onto the yellow circle\": the instruction names one of three "
                        "blocks. The default arms under the benchmark's rules plus Voltron without its instruction "
                        "(`voltron_nolang`) and CLIP's class token with the instruction's sentence embedding "
                        "(`clip_text`); five seeds, 100 test layouts. Its first run was `preset=language` (N = 10 "
                        "and 50, the language arms, the visual-only families and the CNN; runs.csv), before the "
                        "directory was renamed from `push_color_language`; the paired rows \"with − without "
                        "language\" answer the language question."),
    "pick_place_fair": ("pick_place under the benchmark's rules "
                        "(`robrep sweep task=pick_place name=pick_place_fair`)",
                        "Grasp the block and place it on the goal: the default arms with their random-init controls, "
                        "the CNN and the state oracle, the same training rule, equal tuning on valid demos, five "
                        "seeds, 100 test layouts; run N by N (`scripts/cross_task_sweeps.sh`, runs.csv)."),
    "mw_push_fair": ("Meta-World push-v3 under the benchmark's rules (`robrep sweep task=mw_push name=mw_push_fair`)",
                     "Meta-World's push-v3 through robrep's adapter, its scripted policy as the expert: the default arms "
                     "with their controls, the CNN and the state oracle, the benchmark's rules; run N by N "
                     "(`scripts/cross_task_sweeps.sh`, runs.csv)."),
    "push": ("The earlier push sweep, before one training rule (superseded by the benchmark above)",
             "Every arm at several demo counts N and training seeds: frozen encoders (full-budget weights, default "
             "readout, MLP head) against end-to-end arms trained from scratch on the same demos, all evaluated on the "
             "same held-out layouts and compared episode by episode. `*_shift` heads train on seeded translated "
             "feature copies (the frozen counterpart of the CNN's random shift). From-scratch arms train a fixed "
             "number of steps whatever N is: at the largest N they are step-limited rather than data-limited, so its "
             "comparisons are not encoder effects (issue 20); kept as the record of what the benchmark replaced."),
    "push_fair": ("The benchmark's first run, stopped (the 20-epoch rule)",
                  "The default arms under the 20-epoch rule, stopped because that budget bound in most tuning runs."),
    "push_quick": ("Main job: the quick sweep (`robrep quickstart`)",
                   "The committed run of the main job: frozen encoder heads on committed quick weights against a "
                   "from-scratch baseline. Its size makes it a smoke test, not a ranking."),
    "push_confirm": ("Protocol: clean control (`robrep sweep preset=confirm`)",
                     "Quick-budget encoders against the augmented from-scratch CNN, clean demos and evaluation. "
                     "Controls: `mae_random` (random-init frozen MAE), `mae_finetune` (its last blocks trained)."),
    "push_varied_heldout": ("Protocol: demos varied, evaluation held out (`robrep sweep preset=visual_heldout`)",
                            "Demos with varied textures, colours, lights and distractors; evaluation in the "
                            "held-out visual pools; encoders from leave-one-task-out play-corpus weights."),
    "push_loto": ("Protocol: leave one task out (`robrep sweep preset=loto`)",
                  "The visual-heldout policies evaluated in the demos' own varied setting: the encoders never saw a "
                  "frame of the evaluation task in pretraining."),
}


def sweep_section(res: Path, d: Path, title: str, what: str) -> list[str]:
    summ, cells, pairs = (read_csv(d / f) if (d / f).exists() else []
                          for f in ("summary.csv", "table.csv", "paired.csv"))
    cell, paired = {(r["arm"], int(r["n"])): r for r in summ}, {(r["a"], r["b"], int(r["n"])): r for r in pairs}
    arms, ns = sorted({a for a, _ in cell}), sorted({n for _, n in cell})
    seeds = sorted({int(r["seeds"]) for r in summ})
    oracle = [a for a in ORACLE_ARMS if a in arms]
    scratch = (sorted({r["arm"] for r in cells if not r.get("encoder") and r["arm"] not in ORACLE_ARMS})
               or [a for a in SCRATCH_ARMS if a in arms])
    pd = lambda p: (f"{diff(p['seed_diff'], p['seed_ci_low'], p['seed_ci_high'], label=False)} seed-level, "  # noqa: E731
                    f"Holm p {p['p_holm']} ({p['verdict']})" if p.get("seed_diff") not in (None, "")
                    else diff(p["diff"], p["ci_low"], p["ci_high"]))
    span = lambda r: (f" ({100 * num(r['seed_min']):.0f}–{100 * num(r['seed_max']):.0f})"  # noqa: E731
                      if int(r["seeds"]) > 1 else "")
    episodes = listing(sorted({r["episodes"] for r in cells}, key=int))
    out = [f"## {title}", what,
           f"Success pooled over training seeds [Wilson 95 %] (range over seeds); {listing(map(str, seeds))} training "
           f"seed(s) per cell, {episodes} evaluation episodes per cell. From scratch: {listing(scratch)}."
           + (f" Privileged-state oracle (no vision: the simulator's object positions; a ceiling, not compared): "
              f"{listing(oracle)}." if oracle else ""),
           table(["arm", *(f"N = {n}" for n in ns)],
                 [[a, *(rate(cell[a, n]) + span(cell[a, n]) if (a, n) in cell else "" for n in ns)] for a in arms])]
    lines = []
    for n in ns:
        frozen = [a for a in arms
                  if a not in scratch and a not in oracle and not a.endswith(CONTROLS) and (a, n) in cell]
        base = [b for b in scratch if (b, n) in cell]
        if frozen and base:
            best, bb = (max(xs, key=lambda a: (num(cell[a, n]["success_rate"]), a)) for xs in (frozen, base))
            s = f"- N = {n}: best frozen arm {best} {rate(cell[best, n])}; best from scratch {bb} {rate(cell[bb, n])}"
            s += "".join(f"; {best} − {b} {pd(paired[best, b, n])}" for b in base if (best, b, n) in paired)
            for b in base:
                rs = [p for (a, b_, n_), p in sorted(paired.items()) if b_ == b and n_ == n and a not in scratch]
                above = [p["a"] for p in rs if (p["verdict"] == "resolved: a better" if p.get("verdict")
                                                  else num(p["ci_low"]) > 0)]
                below = [p["a"] for p in rs if (p["verdict"] == "resolved: a worse" if p.get("verdict")
                                                  else num(p["ci_high"]) < 0)]
                s += (f". Against {b}" + (" (Holm-corrected seed-level tests)" if any(p.get("verdict") for p in rs)
                                          else "") + f": resolved above {listing(above)}; resolved below {listing(below)}")
            lines.append(s + ".")
    out += ["Generated reading, per N:\n\n" + "\n".join(lines)] if lines else []
    if max(seeds) == 1:
        out.append("One training seed per cell: differences between arms here are not separated from training-seed "
                   "noise (the multi-seed sweeps' noise floor shows how far one cell moves between seeds).")
    if paired:
        holm = any(p.get("p_holm") for p in paired.values())  # sweeps since the seed-level statistics
        out += ["Paired differences a − b on the shared evaluation episodes (hierarchical bootstrap 95 %"
                + ("; seed-level: mean of per-seed differences, t 95 %, Holm-corrected p across this table" if holm
                   else "") + "):",
                table(["a − b", "N", "seeds × episodes", "a − b [95 %]",
                       *(["seed-level [t 95 %]", "p (Holm)", "verdict"] if holm else [])],
                      [[f"{a} − {b}", n, f"{p['seeds']} × {p['episodes']}",
                        diff(p["diff"], p["ci_low"], p["ci_high"], label=not holm),
                        *([diff(p["seed_diff"], p["seed_ci_low"], p["seed_ci_high"], label=False), p["p_holm"],
                           p["verdict"]] if holm else [])]
                       for (a, b, n), p in sorted(paired.items(), key=lambda kv: (kv[0][2], kv[0]))])]
    if (auc := d / "auc.csv").exists():
        out += ["Primary metric: area under success vs log N per arm (mean over seeds, t 95 %):", csv_table(auc)]
        if (ap := d / "auc_paired.csv").exists():
            out += ["AUC differences, paired by seed, Holm-corrected across the table:", csv_table(ap)]
    if (tuning := d / "tuning.csv").exists():
        out += ["Tuning (valid demos only): the chosen learning rate and weight decay per arm and N:",
                csv_table([r for r in read_csv(tuning) if r["chosen"] == "True"],
                          ["arm", "n", "lr", "weight_decay", "valid_mse", "best_step", "max_steps", "cap_bound"])]
    if (nf := d / "noise_floor.csv").exists():
        w = max(read_csv(nf), key=lambda r: (num(r["max_seed_range"]), r["n"]))
        out += ["Noise floor: how far one cell's success moves between training seeds, per N.", csv_table(nf),
                f"Widest seed range: {fx(w['max_seed_range'], 2)} ({w['widest_arm']}, N = {w['n']}); a single-seed "
                "difference smaller than that is within training-seed noise."]
    if cells:
        mins = {a: sum(num(r["train_seconds"]) + num(r["eval_seconds"]) for r in cells if r["arm"] == a) / 60
                for a in sorted({r["arm"] for r in cells})}
        out.append(f"Worker time, train + evaluation summed over the {len(cells)} cells (one thread each; each "
                   "worker's wall seconds, so contention for the cores and pauses count): "
                   f"{sum(mins.values()) / 60:.1f} worker-hours, the from-scratch arms "
                   f"{100 * sum(mins.get(b, 0) for b in scratch) / sum(mins.values()):.0f} % of it; per arm "
                   "(worker-minutes): " + ", ".join(f"{a} {m:.0f}" for a, m in mins.items()) + ".")
    if (d / "runs.csv").exists():
        out += ["Invocations on this directory (a resumed sweep's wall time is the sum):",
                csv_table(d / "runs.csv", ["started_utc", "wall_min", "cells", "finished_here", "jobs", "command"])]
    return out + tail(res, [d / "success_vs_n.png", d / "paired.png"], [d / "summary.csv", d / "runs.csv"])


def protocols_section(res: Path, path: Path) -> list[str]:
    rows, lines = read_csv(path), []
    pd = lambda r: f"{r['arm']} − {r['baseline']} {diff(r['diff'], r['diff_low'], r['diff_high'])}"  # noqa: E731
    for proto in dict.fromkeys(r["protocol"] for r in rows):
        for n in sorted({int(r["n"]) for r in rows if r["protocol"] == proto}):
            here = [r for r in rows if r["protocol"] == proto and int(r["n"]) == n]
            vs = sorted((r for r in here if r["baseline"] == "cnn"), key=lambda r: (-num(r["diff"]), r["arm"]))
            lines.append(f"- {proto}, N = {n}: " + "; ".join([*(["best frozen arm: " + pd(vs[0])] if vs else []),
                                                               *(pd(r) for r in here if r["baseline"] != "cnn")]))
    above = [f"{r['arm']} ({r['protocol']}, N = {r['n']})" for r in rows
             if r["baseline"] == "cnn" and num(r["diff_low"]) > 0]
    return ["## Transfer protocols side by side (`python -m benchmarks.transfer_protocols`)",
            "Per protocol, each frozen arm against the augmented from-scratch CNN, and CLIP's spatial readout against "
            "its class token (the same weights), on the shared evaluation episodes.",
            table(["protocol", "a − b", "N", "a", "b", "a − b [95 %]"],
                  [[r["protocol"], f"{r['arm']} − {r['baseline']}", r["n"], rate(r),
                    rate(r, "baseline_rate", "baseline_ci_low", "baseline_ci_high"),
                    diff(r["diff"], r["diff_low"], r["diff_high"])] for r in rows]),
            "Generated reading:\n\n" + "\n".join(lines),
            f"Frozen arms resolved above the CNN in any protocol: {listing(sorted(above))}.",
            *tail(res, [path.with_suffix(".png")], [path])]


def probe_r2(path: Path, n: int = GATE_N) -> dict:
    """{(features, readout): {variable: ridge R²}} at ``n`` demos, readouts named in the one vocabulary."""
    out: dict = {}
    for r in read_csv(path) if path.exists() else []:
        if r["probe"] == "ridge" and int(r["n_demos"]) == n:
            key = (r["encoder"], OLD_READOUT.get(r["readout"], r["readout"]))
            out.setdefault(key, {})[r["variable"]] = num(r["r2"])
    return out


def probe_quick_section(res: Path, files: list[Path]) -> list[str]:
    out = ["## State probes of the quick checkpoints (`robrep probe`)",
           "Ridge probes regress privileged state (gripper, block, goal positions) from frozen features on nested "
           "N-demo subsets, scored by R² on held-out episodes, next to pixels and the random-init architecture "
           f"(`*_random`). Shown: N = {GATE_N}; worst = the lowest of the three positions."]
    for task in sorted({re.match(r"probe_(.+)_demos_", f.name).group(1) for f in files}):
        rows = {k: v for f in reversed(files) if f.name.startswith(f"probe_{task}_demos_")  # first file wins
                for k, v in probe_r2(f).items()}
        worst = {k: min(v.get(p, math.nan) for p in POS) for k, v in rows.items()}
        is_base = lambda k: k[0] == "pixels" or k[0].endswith("_random")  # noqa: E731
        out.append(f"### {task}\n\n" + table(["features", "readout", *POS, "worst"], [
            [*k, *(fx(rows[k].get(p)) for p in POS), fx(worst[k])] for k in sorted(rows)]))
        enc, base = [k for k in worst if not is_base(k) and k[1] in SPATIAL], [k for k in worst if is_base(k)]
        if enc and base:
            e, b = (max(ks, key=lambda k: (worst[k], k)) for ks in (enc, base))
            out.append(f"Best spatial readout by worst position: {e[0]} `{e[1]}` {fx(worst[e])}; best baseline: "
                       f"{b[0]} `{b[1]}` {fx(worst[b])}.")
    return out + tail(res, [f.with_suffix(".png") for f in files], files)


def gate_table(path: Path) -> list[str]:
    rows = read_csv(path)
    layers = any(r.get("feature_layer") for r in rows)
    vars_ = [*POS, *(["block_pos_z"] if any(not math.isnan(num(r.get("block_pos_z"))) for r in rows) else [])]
    tag = {id(r): f"{r['encoder']} on {r['task']}" + (f" block {r['feature_layer']}" if layers else "")
           + (f" ({r['passing_readouts']})" if r["passing_readouts"] else "") for r in rows}
    text = "; ".join(f"{g}: {listing([tag[id(r)] for r in rows if r['gate'] == g])}" for g in GATES)
    if layers:
        text += ". Best block per position: " + "; ".join(
            f"{v} block {max(rows, key=lambda r: (num(r[v]), r['feature_layer']))['feature_layer']} "
            f"({fx(max(num(r[v]) for r in rows))})" for v in POS)
    return [f"Best spatial ridge R² at N = {GATE_N} (best baseline in brackets):",
            table(["encoder", "task", *(["block"] if layers else []), "gate", "passing", *vars_, "class token worst"],
                  [[r["encoder"], r["task"], *([r["feature_layer"]] if layers else []), r["gate"],
                    r["passing_readouts"] or "–", *(f"{fx(r[v])} ({fx(r[v + '_baseline'])})" for v in vars_),
                    fx(r["global_token_worst_pos"])] for r in rows]),
            f"Verdicts — {text}."]


def compare(title: str, tasks: tuple, cols: list[tuple[str, Path, str, str]]) -> list[str]:
    """Ridge R² per task and position at the gate's N; a column per (label, path with {task}, encoder, readout)."""
    data = {(t, i): probe_r2(Path(str(c[1]).format(task=t))) for t in tasks for i, c in enumerate(cols)}
    return [title, table(["task", "variable", *(c[0] for c in cols)],
                         [[t, v, *(fx(data[t, i].get((e, ro), {}).get(v)) for i, (_, _, e, ro) in enumerate(cols))]
                          for t in tasks for v in POS])]


def gate_section(res: Path, _) -> list[str]:
    out, full, long = [], res / "probe_full", res / "probe_long"
    steps = sorted((res / "probe_matched").glob("step_*"), key=lambda d: int(d.name.split("_")[1]))
    for d, title, what in [
            (full, "Gate at the full budget (`--budget full`)",
             "Every in-domain checkpoint of the full budget, on push and pick-place; CLIP is reported, not gated."),
            (res / "probe_layers", "Which ViT block to read (`--feature-layers`)",
             "The full MAE read after each block (`encoder.arch.feature_layer`); its random-init baseline is read at "
             "the same block."),
            (long, "More pretraining than the full budget (`--budget long`)",
             "An MAE pretrained beyond the full budget, probed like the full checkpoints; evidence, not a default."),
            *[(d, f"The compute-matched run at step {d.name.split('_')[1]} (`--weights-dir <the run's DIR>`)",
               "The chunk checkpoint at this step of each family's compute-matched pretraining run probed so far "
               "(`scripts/pretrain_matched.sh`: the same step budget and cosine schedule for every family, on the "
               "varied-visuals play corpus; the full checkpoints above saw the clean corpus): what the compute "
               "bought, step by step. The step-8,000 chunk is `weights/<family>_matched.pt` (same hash).")
              for d in steps]]:
        if not (d / "gate.csv").exists():
            continue
        out += [f"### {title}", what, *gate_table(d / "gate.csv")]
        if d == full and (d / "push_mae_flat12.csv").exists():
            f12 = d / "push_mae_flat12.csv"
            out += compare("All tokens of the full MAE unpooled (`flat_cells=12`) against the pooled `flat` readout:",
                           ("push",), [("unpooled", f12, "mae", "flat"), ("pooled", d / "push_mae.csv", "mae", "flat"),
                                       ("random init, unpooled", f12, "mae_random", "flat"),
                                       ("pixels", f12, "pixels", "flat")])
        if d == long:
            lf = long / "{task}_mae.csv"
            out += compare("`flat` readout, full → long budget, next to the baselines:", ("push", "pick_place"),
                           [("full", full / "{task}_mae.csv", "mae", "flat"), ("long", lf, "mae", "flat"),
                            ("random init flat", lf, "mae_random", "flat"), ("pixels", lf, "pixels", "flat"),
                            ("random init spatial_softmax", lf, "mae_random", "spatial_softmax")])
        out += tail(res, [p.with_suffix(".png") for p in d.glob("*.csv")], sorted(d.glob("*.csv")))
    return ["## The representation gate (`python -m benchmarks.probe_gate`)",
            f"The gate: at N = {GATE_N}, a spatial readout with ridge R² ≥ 0.9 on every position variable, above "
            "both baselines (raw pixels; the same architecture at random init, any readout)."] + out if out else []


def ablation_section(res: Path, path: Path) -> list[str]:
    rows = [r for r in read_csv(path) if r["readout"] == "flat"]
    worst = {(r["variant"], r["task"]): num(r["worst_pos"]) for r in rows}
    meta, tasks = {r["variant"]: r for r in rows}, sorted({r["task"] for r in rows})
    out = ["## Pretraining ablation (`python -m benchmarks.pretrain_ablation`)",
           "One MAE per variant of `configs/ablation/mae.yaml`, pretrained for a short equal wall-clock budget on the "
           "same frames, then probed (ridge) on held-out push and pick-place demos. Shown: worst position R² of the "
           "`flat` readout; `<variant>:random` and `<variant>:pixels` are that architecture's gate baselines.",
           table(["variant", "steps", "minutes", *tasks, "overrides"],
                 [[v, r["pretrain_steps"] or "–", r["pretrain_minutes"] or "–",
                   *(fx(worst.get((v, t))) for t in tasks), f"`{r['overrides']}`"] for v, r in meta.items()])]
    if "base" in meta:
        spread = max((abs(worst[v, t] - worst["base", t]) for v in ("base_rerun", "base_seed1") if v in meta
                      for t in tasks), default=math.nan)
        cands = [v for v in meta if ":" not in v and v != "base"]
        lines = [f"- Run-to-run spread of base (re-run with the same seed; another pretraining seed): up to "
                 f"{fx(spread)}; differences below it are noise."]
        for t in tasks:
            best = max(cands, key=lambda v: (worst.get((v, t), -1), v))
            lines.append(f"- {t}: base {fx(worst['base', t])}, its random init {fx(worst.get(('base:random', t)))}; "
                         f"best variant {best} {fx(worst[best, t])}; above base by more than the spread: "
                         f"{listing([v for v in cands if worst.get((v, t), -9) - worst['base', t] > spread])}; below: "
                         f"{listing([v for v in cands if worst['base', t] - worst.get((v, t), 9) > spread])}.")
        out.append("Generated reading:\n\n" + "\n".join(lines))
    return out + tail(res, list((res / "ablation" / "mae").glob("*.png")), [path])


def planner_section(res: Path, plan: Path) -> list[str]:
    rows = sorted(read_csv(plan), key=lambda r: (r["task"], r["encoder"], r["dynamics"]))
    errs = sorted((res / "plan").glob("*_horizon_errors.csv"))
    ratio = {(f.name.split("_horizon")[0], h["encoder"], h["dynamics"], int(h["h"])): h["model_over_copy"]
             for f in errs for h in read_csv(f)}
    out = ["## Latent planning (`robrep plan`)",
           "CEM/MPC in the latent space of each frozen encoder with a learned transition model; the goal is the "
           "encoded final frame of the scripted expert from the same seed; evaluated like the BC policies on shared "
           "layouts. Open-loop error as model / copy-baseline MSE at horizon h (below one: the model beats copying "
           "the current latent); ms per planned action as measured during the run.",
           table(["task", "encoder", "dynamics", "success", "expert at goal", "ms/action", "model/copy h = 1, 6, 15"],
                 [[r["task"], r["encoder"], r["dynamics"], rate(r), fx(r["goal_expert_success"], 2),
                   fx(r["ms_per_action"], 0), ", ".join(fx(ratio.get((r["task"], r["encoder"], r["dynamics"], h)), 2)
                                                        for h in (1, 6, 15))] for r in rows])]
    for t in sorted({r["task"] for r in rows}):
        b, *others = sorted((r for r in rows if r["task"] == t), key=lambda r: (-num(r["success_rate"]), r["encoder"]))
        sep = all(num(b["ci_low"]) > num(r["ci_high"]) for r in others)
        out.append(f"{t}: no encoder succeeded in any episode." if num(b["success_rate"]) == 0 else
                   f"{t}: best {b['encoder']} {rate(b)}; its interval "
                   f"{'is above every other' if sep else 'overlaps at least one other'}.")
    extra = ladder_tables(res / "plan")
    return out + extra[0] + tail(res, list((res / "plan").glob("*.png")), [plan, *errs, *extra[1]])


def ladder_tables(plan_dir: Path) -> tuple[list[str], list[Path]]:
    """The planning ladder (``ladder.csv``), the costs' rank correlation with steps-to-go and the open-loop error
    beside DESIGN.md's bound, as tables (markdown lines) and the CSVs they read."""
    out, used = [], []
    ladder = plan_dir / "ladder.csv"
    if ladder.exists():
        rows = sorted(read_csv(ladder), key=lambda r: (r["task"], r["eval_split"], r["rung"], r["encoder"]))
        out += ["### The planning ladder (`robrep plan ladder=true`)",
                "The same CEM/MPC on the same layouts with (a) the simulator as the model and the privileged state as "
                "the cost, (b) the simulator as the model and the latent of rendered frames as the cost, (c) the "
                "learned transition model and the latent cost. `dev` rows are development layouts (settings chosen "
                "there), `test` rows the reported layouts; success with its Wilson 95 % interval.",
                table(["task", "rung", "encoder", "split", "episodes", "success", "mean length", "H × repeat",
                       "samples / elites / iters", "cost", "world model (c)", "prior (c)", "ms/action", "ms/plan"],
                      [[r["task"], r["rung"], r["encoder"], r["eval_split"], r["episodes"], rate(r),
                        fx(r["mean_length"], 1), f"{r['horizon']} × {r['action_repeat']}",
                        f"{r['samples']} / {r['elites']} / {r['iterations']}", r["cost"], r.get("world_model", ""),
                        r.get("prior", ""), fx(r["ms_per_action"], 1), fx(r["ms_per_plan"], 1)] for r in rows])]
        used.append(ladder)
    for bc in sorted(plan_dir.glob("*_bc_beside_planner.csv")):
        task, rows = bc.name.split("_bc_beside_planner")[0], read_csv(bc)
        out += [f"### {task}: behaviour cloning on the planner's test layouts (`benchmarks/bc_beside_planner.py`)",
                f"BC policies of `{rows[0]['sweep']}` at N = {rows[0]['n']} demos, scored on the planner's "
                f"{rows[0]['episodes_per_seed']} test layouts ({rows[0]['layouts']}) only: pooled over training seeds "
                "(Wilson 95 %) and the mean over seeds (seed-level t interval).",
                table(["arm", "N", "training seeds", "success (pooled)", "seed mean"],
                      [[r["arm"], r["n"], r["train_seeds"], rate(r),
                        rate(r, "seed_mean", "seed_ci_low", "seed_ci_high")] for r in rows])]
        used.append(bc)
    for pv in sorted(plan_dir.glob("*_prior_dev.csv")) + sorted(plan_dir.glob("*_prior_vs_bc.csv")):
        task, rows = pv.name.split("_prior_")[0], read_csv(pv)
        dev = pv.name.endswith("_prior_dev.csv")
        block = lambda r: (r["settings"], r["arm"], r["n"])  # noqa: E731  one run of the benchmark
        seeds = {b: [r for r in rows if block(r) == b and r["seed"] != "mean"] for b in map(block, rows)}
        out += [f"### {task}: imagination on top of a BC policy, "
                f"{'development layouts (choosing the prior' + chr(39) + 's settings)' if dev else 'test layouts'} "
                "(`benchmarks/prior_planner.py`)",
                "Rung (c) with each training seed's BC policy as CEM's prior (`planners/prior.py`: the search starts "
                "from the policy's action chunk, its macro-actions residuals on it) against the same policy alone on "
                "the same layouts: success per seed, the mean over seeds, and the paired difference planner − policy "
                "(seed-level t 95 %, two-sided p). `no prior`: rung (c) with the same world model, cost and search "
                "but no policy.",
                table(["prior settings", "arm", "N", "seeds", "split", "layouts", "BC", "planner + prior", "no prior",
                       "planner − BC", "p"],
                      [[r["settings"], r["arm"], r["n"], len(seeds[block(r)]), r["split"], r["episodes"],
                        fx(r["bc_rate"], 2), fx(r["planner_rate"], 2), fx(r.get("no_prior_rate"), 2),
                        diff(r["diff"], r["ci_low"], r["ci_high"], label=False), fx(r["p_value"], 3)]
                       for r in rows if r["seed"] == "mean"])]
        if not dev:
            out.append(table(["seed", "policy", "BC", "planner + prior", "ms/action", "ms/plan"],
                             [[r["seed"], r["policy"], f"{r['bc_successes']}/{r['episodes']}",
                               f"{r['planner_successes']}/{r['episodes']}", fx(r["ms_per_action"], 1),
                               fx(r["ms_per_plan"], 1)] for r in rows if r["seed"] != "mean"]))
        used.append(pv)
    for mono in sorted(plan_dir.glob("*_cost_monotonicity.csv")):
        task = mono.name.split("_cost_monotonicity")[0]
        out += [f"### {task}: do the costs follow steps-to-go? (Spearman ρ on held-out expert episodes)",
                table(["world model", "cost", "episodes", "mean ρ", "s.e.", "share of episodes with ρ > 0"],
                      [[r["run"], r["cost"], r["episodes"], fx(r["spearman_mean"], 3), fx(r["spearman_se"], 3),
                        fx(r["share_positive"], 2)] for r in read_csv(mono)])]
        used.append(mono)
    for bound in sorted(plan_dir.glob("*_open_loop_vs_bound.csv")):
        task = bound.name.split("_open_loop_vs_bound")[0]
        rows = [r for r in read_csv(bound) if int(r["h"]) in (1, 5, 10, 15)]
        out += [f"### {task}: open-loop error norm against DESIGN.md's bound (δ = p95 one-step error, empirical L)",
                table(["world model", "h", "windows", "mean error", "p95 error", "bound"],
                      [[r["run"], r["h"], r["windows"], fx(r["error_mean"], 2), fx(r["error_p95"], 2),
                        fx(r["bound"], 1)] for r in rows])]
        used += [bound, *sorted(plan_dir.glob("*.bound.csv"))]
    for conf in sorted(plan_dir.glob("*_goal_confound.csv")):
        task, rows = conf.name.split("_goal_confound")[0], read_csv(conf)
        seeds = sorted({r["seed"] for r in rows})
        by = {(r["seed"], r["scene"]): r for r in rows}
        near = {k: sum(num(by[(s, "block_at_goal")][k]) < num(by[(s, "gripper_at_goal")][k]) for s in seeds)
                for k in ("planner_distance", "image_distance")}
        out += [f"### {task}: does the goal-image cost see the block? (`benchmarks/goal_confound.py`)",
                "Latent distance to the expert's goal frame of four rendered scenes per layout, mean over "
                f"{len(seeds)} layouts; the block moved to its goal pose is nearer the goal than the gripper moved "
                f"to its goal pose on {near['planner_distance']}/{len(seeds)} layouts (planner distance) and "
                f"{near['image_distance']}/{len(seeds)} (image part alone).",
                table(["scene", "planner distance", "image part"],
                      [[sc, fx(sum(num(by[(s, sc)]["planner_distance"]) for s in seeds) / len(seeds), 3),
                        fx(sum(num(by[(s, sc)]["image_distance"]) for s in seeds) / len(seeds), 3)]
                       for sc in dict.fromkeys(r["scene"] for r in rows)])]
        used.append(conf)
    for loc in sorted(plan_dir.glob("*_latent_localisation.csv")):
        task, rows = loc.name.split("_latent_localisation")[0], read_csv(loc)
        out += [f"### {task}: where things are, read from the latent (`benchmarks/latent_localisation.py`)",
                "An MLP probe from the image part of the latent to each object's xy, fitted on the world model's "
                "training frames (demos and play), error on its valid frames; a latent cost can place the block only "
                "as precisely as the latent holds it.",
                table(["encoder", "latent", "dim", "quantity", "RMSE (cm)", "x (cm)", "y, depth (cm)", "median (cm)",
                       "p90 (cm)", "spread (cm)", "success tolerance (cm)"],
                      [[r["encoder"], r["latent"], r["latent_dim"], r["quantity"],
                        *(fx(r.get(k), 2) for k in ("rmse_cm", "rmse_x_cm", "rmse_y_cm", "median_cm", "p90_cm",
                                                    "spread_cm")),
                        fx(r["tolerance_cm"], 1)] for r in rows])]
        used.append(loc)
    for exp in sorted(plan_dir.glob("*_exploitation.csv")):
        task, rows = exp.name.split("_exploitation")[0], read_csv(exp)
        out += [f"### {task}: does the planner exploit its world model? (`benchmarks/plan_exploitation.py`)",
                "Rung (c) with the learned task-cost reward on development layouts: at each replanning, the cost the "
                "planner imagines at the end of the plan it chose, against the reward read from the real latent and the "
                "privileged cost once those env steps were executed (cm; gains are the cost at planning minus the cost "
                "after). An imagined gain the real latents do not show is the transition model's; one they show but "
                "the true cost does not is the reward's. Risk: the ensemble's pessimism (mean + risk × spread).",
                table(["encoder", "world model", "risk", "episodes", "successes", "plans", "true cost at plan",
                       "imagined after", "true after", "imagined gain", "real-latent gain", "true gain",
                       "Spearman (imagined, true)"],
                      [[r["encoder"], r["world_model"], r["risk"], r["episodes"], r["successes"], r["compared_plans"],
                        fx(r["true_cost_at_plan_cm"], 1), fx(r["imagined_cost_cm"], 1), fx(r["true_cost_after_cm"], 1),
                        fx(r["imagined_gain_cm"], 1), fx(r["real_latent_gain_cm"], 1), fx(r["true_gain_cm"], 1),
                        fx(r["spearman_imagined_true"], 2)] for r in rows])]
        used.append(exp)
    return out, used


def _cost_reading(rows: list[dict]) -> str:
    parts = {k: sum(num(r[k]) for r in rows) / 3600 for k in ("train_core_s", "eval_core_s", "cache_core_s")}
    total = sum(parts.values())
    by_arm: dict[str, float] = {}
    for r in rows:
        by_arm[r["arm"]] = by_arm.get(r["arm"], 0.0) + (num(r["train_core_s"]) + num(r["eval_core_s"])) / 3600
    top = max(by_arm, key=by_arm.get)
    return (f"Predicted total {total:.2f} core-hours (training {parts['train_core_s']:.2f}, evaluation "
            f"{parts['eval_core_s']:.2f}, feature caching {parts['cache_core_s']:.2f}): at least {total / 2:.2f} h of "
            f"wall on 2 cores against the 2 h target; the most expensive arm is {top} ({by_arm[top]:.2f} core-hours).")


def _grid_reading(rows: list[dict]) -> str:
    from benchmarks.sweep_choices import grid_effects

    effects = grid_effects([{**r, "n": int(r["n"]), "lr": num(r["lr"]), "weight_decay": num(r["weight_decay"]),
                             "valid_mse": num(r["valid_mse"])} for r in rows])
    wd, lr = (sum(e[i] for e in effects) / len(effects) for i in (2, 3))
    return (f"Mean absolute change of valid MSE over {len(effects)} (arm, N) with a full grid: weight decay {wd:.4f}, "
            f"learning rate {lr:.4f} ({wd / lr:.2f}×).")


def _latency_reading(rows: list[dict]) -> str:
    """The fastest runtime per (family, threads) and each family's ``load_policy`` call."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["threads"]), []).append(r)
    fastest = [min(g, key=lambda r: num(r["p50_ms"])) for g in groups.values()]
    loads = {r["family"]: r["load_policy_call_s"] for r in rows}
    return ("Fastest runtime per family and thread count: " + "; ".join(
        f"{b['family']} ×{b['threads']}: {b['runtime']} {b['p50_ms']} ms (×{b['speedup_p50']} eager)" for b in fastest)
        + ". `load_policy` (the call alone): " + ", ".join(f"{f} {s} s" for f, s in loads.items()) + ".")


def _compare_reading(rows: list[dict]) -> str:
    """The rows Holm resolves (a − b with its interval, the side that is better) and how many it does not."""
    label = lambda r: f"{r['arm']} {'AUC' if str(r['n']).startswith('auc') else 'N = ' + str(r['n'])}"  # noqa: E731
    done = [r for r in rows if str(r["resolved"]).lower() == "true"]
    words = [f"{label(r)} {num(r['diff']):+.3f} [{num(r['ci_low']):+.3f}, {num(r['ci_high']):+.3f}] "
             f"({'a' if num(r['diff']) > 0 else 'b'} better)" for r in done]
    if not words:
        return f"No row resolved after Holm ({len(rows)} rows)."
    return f"Resolved after Holm: {'; '.join(words)}. Not resolved: {len(rows) - len(done)} of {len(rows)} rows."


def _budget_rows(rows: list[dict]) -> list[dict]:
    """budget_pilot.csv aggregated per (min_delta, budget): cap-bound (arm, N), steps run, gaps to the run's best."""
    out = []
    for key in sorted({(num(r.get("min_delta", 0)), num(r["epochs"])) for r in rows}):
        sel = [r for r in rows if (num(r.get("min_delta", 0)), num(r["epochs"])) == key]
        gaps = [num(r["gap"]) for r in sel]
        out.append({"min_delta": f"{key[0]:g}", "epochs": f"{key[1]:g}", "runs": str(len(sel)),
                    "cap_bound": str(sum(r["cap_bound"] == "True" for r in sel)),
                    "steps_run": str(sum(int(num(r.get("steps_run", r["budget_steps"]))) for r in sel)),
                    "mean_gap": f"{sum(gaps) / len(gaps):.3f}", "max_gap": f"{max(gaps):.3f}",
                    "bound": listing(f"{r['arm']}@{r['n']}" for r in sel if r["cap_bound"] == "True")})
    return out


def budget_section(res: Path, path: Path) -> list[str]:
    rows, noise = read_csv(path), path.with_name(path.stem + "_noise.csv")
    agg = _budget_rows(rows)
    ns = listing(sorted({r["n"] for r in rows}, key=int))
    out = ["## Training budget pilot (`python -m benchmarks.budget_pilot`)",
           f"Every default arm trained once per N ({ns}) on the tuning seed's subset at the grid's middle learning "
           "rate for a long run without early stopping, its valid-demo MSE recorded throughout; the training rule "
           "is then replayed on each curve at candidate budgets (epochs) and early-stopping thresholds (`min_delta`). "
           "`cap_bound`: (arm, N) whose budget ended while the valid MSE still made progress; gap: the rule's best "
           "valid MSE over the best of the whole recorded run, minus one. Valid demos only.",
           csv_table(agg)]
    if noise.exists():
        levels = sorted(num(r["max_rel_change"]) for r in read_csv(noise))
        mid = (levels[(len(levels) - 1) // 2] + levels[len(levels) // 2]) / 2
        out += [f"Evaluation noise of the plateaued runs (largest change of the valid MSE between consecutive "
                f"recorded points in the second half of the run, per arm): median {mid:.3f}, range "
                f"{levels[0]:.3f}–{levels[-1]:.3f}.", csv_table(noise)]
    return out + tail(res, [], [path, noise])


#: Each task's benchmark sweep (``results/sweeps/<dir>``, run under the benchmark's rules), in table order.
TASK_SWEEPS = {"push": "push_fair2", "push_color": "push_color_fair", "pick_place": "pick_place_fair",
               "metaworld/push-v3": "mw_push_fair"}


#: The demo counts whose success the cross-task section tabulates per task (the two ends the benchmark reports).
CROSS_TASK_NS = (10, 500)


def _per_n_tables(summaries: dict[str, list[dict]]) -> list[str]:
    """Per N in :data:`CROSS_TASK_NS` that some task has: success per arm and task (seed mean [seed-level 95 %
    interval], from each task's summary.csv rows); a task's column appears once its summary has that N."""
    out = []
    pct = lambda r: rate(r, "seed_mean", "seed_ci_low", "seed_ci_high", digits=1)  # noqa: E731
    for n in CROSS_TASK_NS:
        rows = {t: {r["arm"]: r for r in summary if int(r["n"]) == n} for t, summary in summaries.items()}
        rows = {t: r for t, r in rows.items() if r}
        if not rows:
            continue
        arms = sorted({a for r in rows.values() for a in r})
        out += [f"Success at N = {n} per arm and task (seed mean [seed-level 95 % interval], summary.csv):",
                table(["arm", *rows], [[a, *(pct(r[a]) if a in r else "–" for r in rows.values())] for a in arms])]
    return out


def cross_task_section(res: Path, found: list[Path]) -> list[str]:
    """The primary metric (AUC over log N, with its seed-level interval) of every arm on every task whose benchmark
    sweep is committed, and per task its N, wall time and the best vision arm (seed mean) at its smallest and largest
    N, with the privileged-state oracle's beside it where the sweep has one and the arms whose seed-level interval
    reaches the best one's (a description, not a test: the paired tables test the planned pairs); between them the
    success per arm and task at N = 10 and 500 and the chance floor (results/chance_floor.csv) where committed."""
    sweeps = {t: res / "sweeps" / d for t, d in TASK_SWEEPS.items() if (res / "sweeps" / d / "summary.csv").exists()}
    auc = {t: {r["arm"]: r for r in read_csv(d / "auc.csv")} for t, d in sweeps.items() if (d / "auc.csv").exists()}
    arms = sorted({a for rows in auc.values() for a in rows})
    fmt = lambda r: f"{num(r['auc']):.3f} [{num(r['auc_ci_low']):.3f}, {num(r['auc_ci_high']):.3f}]"  # noqa: E731
    table = [{"arm": a, **{t: fmt(auc[t][a]) if a in auc[t] else "" for t in auc}} for a in arms]
    lines, summaries = [], {t: read_csv(d / "summary.csv") for t, d in sweeps.items()}
    for t, d in sweeps.items():
        summary = summaries[t]
        ns = sorted({int(r["n"]) for r in summary})
        wall = sum(num(r["wall_min"]) for r in read_csv(d / "runs.csv")) if (d / "runs.csv").exists() else math.nan
        best = []
        pct = lambda r: rate(r, "seed_mean", "seed_ci_low", "seed_ci_high")  # noqa: E731
        vision_arms = {r["arm"] for r in summary if r["arm"] not in ORACLE_ARMS}
        for n in dict.fromkeys((ns[0], ns[-1])):
            here = [r for r in summary if int(r["n"]) == n]
            vision = [r for r in here if r["arm"] not in ORACLE_ARMS]
            oracle = "".join(f" ({o['arm']} oracle {pct(o)})" for o in here if o["arm"] in ORACLE_ARMS)
            if not vision:  # a stage whose oracle cells landed first
                best.append(f"N = {n}: no vision arm recorded yet{oracle}")
                continue
            r = max(vision, key=lambda r: num(r["seed_mean"]))
            tied = [o["arm"] for o in vision if o is not r and num(o["seed_ci_high"]) >= num(r["seed_ci_low"])]
            partial = (f" (only {len(vision)} of the sweep's {len(vision_arms)} vision arms recorded at this N)"
                       if len(vision) < len(vision_arms) else "")
            best.append(f"N = {n}: {r['arm']} {pct(r)}{oracle}{partial}, its interval overlapped by {listing(tied)}")
        lines.append(f"- {t} (`{d.name}`): N = {', '.join(map(str, ns))}; {wall:.0f} min of wall over its runs "
                     "(runs.csv: interrupted and killed invocations included, except those SIGKILLed before its rows "
                     "had a heartbeat, which left none); best "
                     f"vision arm (seed mean) at {'; at '.join(best)}.")
    return ["## The question across tasks: the primary metric per task",
            "Area under success vs log N (the primary metric) per arm and task, mean over training seeds with its "
            "seed-level 95 % interval, from each task's benchmark sweep (`auc.csv`: a sweep with two or more N); a "
            "task's line below appears from its first committed stage (" + ", ".join(
                f"{t}: `{d}`" for t, d in TASK_SWEEPS.items()) + ").",
            csv_table(table) if table else "", *_per_n_tables(summaries), *_chance_floor(res), "\n".join(lines),
            *tail(res, [], [d / f for d in sweeps.values() for f in ("auc.csv", "summary.csv") if (d / f).exists()]
                  + [p for p in [res / CHANCE_FLOOR] if p.exists()])]


#: Blind policies' success on the sweeps' evaluation layouts (benchmarks/chance_floor.py).
CHANCE_FLOOR = "chance_floor.csv"


def _chance_floor(res: Path) -> list[str]:
    """The chance floor beside the per-N tables: each task's zero-action and random-action success on the sweeps'
    layouts (Wilson 95 %), if committed."""
    if not (res / CHANCE_FLOOR).exists():
        return []
    rows = read_csv(res / CHANCE_FLOOR)
    cell = lambda r: f"{r['successes']}/{r['episodes']} = {rate(r)}"  # noqa: E731
    return ["Chance floor (`python -m benchmarks.chance_floor`): policies that never look — the zero action every "
            "step, and uniform random actions — on the same evaluation layouts (Wilson 95 %):",
            table(["task", "split", "zero", "random"],
                  [[t, next(r["split"] for r in rows if r["task"] == t),
                    *(cell(r) for k in ("zero", "random") for r in rows if r["task"] == t and r["policy"] == k)]
                   for t in dict.fromkeys(r["task"] for r in rows)])]


DIAGNOSTIC_COLS = ["encoder", "weights", "choice", "pck2", "pck4", "pck4_ci_low", "pck4_ci_high", "pck8",
                   "median_error_px", "erank_tokens", "erank_mean", "block_to_goal_r2", "contact_balanced_acc",
                   "target_acc"]


def diagnostics_section(res: Path, csvs: list[Path]) -> list[str]:
    """The encoders' ground-truth diagnostics (benchmarks/encoder_diagnostics.py), one block per task."""
    out = ["## Encoder diagnostics from the simulator's ground truth (`python -m benchmarks.encoder_diagnostics`)",
           "Development-layout frames after a random number of scripted-expert steps (half of them drawn from steps "
           "where the gripper touches a block), paired across layouts. Correspondence: the centres of the block(s), "
           "the goal and the gripper's wrist and palm projected into both frames; each visible keypoint of frame A "
           "matched to the most similar (cosine) pixel of frame B's bilinearly upsampled features; PCK@a = share "
           "within a px of the true projection (96 px frames; a token covers 8 px), interval: bootstrap over pairs. "
           "Effective rank (Roy & Vetterli) of all tokens and of the grid means. Ridge probes (5-fold, 4 × 4 pooled "
           "tokens) of the block-to-goal vector (R²), contact (balanced accuracy, chance 0.5) and the named block "
           "(push_color, accuracy, chance 1/3). Pixels (RGB as the feature) are the floor."]
    for path in csvs:
        task = path.stem.removeprefix("correspondence_")
        rows = read_csv(path)
        cols = [c for c in DIAGNOSTIC_COLS if c in rows[0]]
        default = [r for r in rows if r["group"] == "all" and (r["default"] == "True" or "no_instruction" in r["choice"])]
        choices = [r for r in rows if r["group"] == "all" and r["weights"] not in ("random", "none")]
        best = {}
        for r in choices:
            if r["encoder"] not in best or num(r["pck4"]) > num(best[r["encoder"]]["pck4"]):
                best[r["encoder"]] = r
        out += [f"### {task}: each encoder's default features (group: all keypoints)", csv_table(default, cols),
                f"### {task}: every feature-time choice (trained weights, all keypoints)",
                csv_table(choices, ["encoder", "choice", "pck2", "pck4", "pck8", "erank_tokens", "block_to_goal_r2",
                                    "contact_balanced_acc"]),
                "Best PCK@4 per encoder: " + "; ".join(f"{e} {r['pck4']} at {r['choice']}" for e, r in best.items()) + "."]
        tests = path.with_name(f"choice_tests_{task}.csv")
        if tests.exists():
            trows = read_csv(tests)
            out += [f"### {task}: is another layer or timestep better than the default? (selected on half the pairs, "
                    "tested on the other half)", csv_table(trows),
                    "Resolved after Holm (p < 0.05): " + listing([f"{r['encoder']} {r['selected']} "
                                                                 f"({num(r['diff']):+.3f})" for r in trows
                                                                 if r["resolved"] == "True"]) + "."]
        corr = path.with_name(f"rank_correlation_{task}.csv")
        if corr.exists():
            crow = read_csv(corr)
            out += [f"### {task}: does a diagnostic rank the encoders as closed-loop success does?",
                    csv_table(crow, ["diagnostic", "n_arms", "spearman_rho", "ci_low", "ci_high", "p_permutation",
                                     "p_holm", "resolved", "auc_ns"]),
                    "Resolved after Holm (p < 0.05): " + listing([r["diagnostic"] for r in crow
                                                                 if r["resolved"] == "True"]) + "."]
        out += tail(res, [], [path] + [p for p in (tests, corr) if p.exists()])
    for across in sorted((res / "diagnostics").glob("rank_correlation_across_tasks*.csv")):
        rows = read_csv(across)
        metric = f"success at N = {rows[0]['auc_ns'].split(': ')[-1]}" if "_n" in across.stem else "the AUC"
        out += [f"### Across tasks: does a diagnostic rank the encoders as {metric} does? ({rows[0]['tasks']})",
                "Within each task the Spearman ρ between the diagnostic (trained and random-init encoders) and the "
                f"closed-loop {metric}, averaged over tasks; permutation p within tasks, bootstrap interval over arms "
                "within tasks, Holm across the diagnostics.",
                csv_table(rows, ["diagnostic", "n_tasks", "mean_spearman_rho", "ci_low", "ci_high", "per_task_rho",
                                 "p_permutation", "p_holm", "resolved"]),
                "Resolved after Holm (p < 0.05): " + listing([r["diagnostic"] for r in rows
                                                             if r["resolved"] == "True"]) + ".",
                *tail(res, [], [across])]
    return out


SIMPLE = [  # one table per CSV: title, what it measures; optional columns, row filter and generated reading
    dict(csv="compare_sweeps/push_matched_vs_full.csv",
         title="What the matched compute bought in closed loop (`python -m benchmarks.compare_sweeps`)",
         what="Push, the frozen families with the compute-matched checkpoints (`results/sweeps/push_matched`, "
              "`weights_budget=matched`) against the same arms with the wall-clock ones (`push_fair2`), cell by cell: "
              "the same demonstration subsets and test layouts; per (arm, N) and per arm's AUC over the shared Ns, "
              "seed-level t intervals, Holm across the rows (`resolved`: corrected p < 0.05); `same_demo_bytes`: "
              "whether both sides' demo files have one hash (a file re-collected on another machine may not). The "
              "read-out (DIFT's timestep and up block, the ViTs' block) stays the one chosen on the wall-clock "
              "checkpoints.",
         reading=_compare_reading),
    dict(csv="compare_sweeps/push_matched_vs_2000.csv",
         title="Compute alone: the matched run's last chunk against its step-2,000 chunk (`compare_sweeps`)",
         what="The same pretraining run (corpus, schedule, seed) read at 8,000 steps (`results/sweeps/push_matched`) "
              "and at 2,000 (`results/sweeps/push_matched_2000`, `weights_budget=matched_2000`), on push under the "
              "benchmark rule, cell by cell on the same demo file and test layouts: what the last three quarters of "
              "the compute bought. Holm across this table's rows.",
         reading=_compare_reading),
    dict(csv="compare_sweeps/push_matched_2000_vs_full.csv",
         title="The matched run's step-2,000 chunk against the wall-clock checkpoint (`compare_sweeps`)",
         what="The step-2,000 chunk (varied-visuals play corpus, mid-schedule) against the 60-minute checkpoint "
              "(clean corpus, its own finished schedule) in `push_fair2`: with the table above, it splits the matched "
              "checkpoint's difference from the wall-clock one into its compute and its corpus/schedule parts. Holm "
              "across this table's rows.",
         reading=_compare_reading),
    dict(csv="compute_bought.csv",
         title="What the pretraining compute bought, per family (`python -m benchmarks.compute_bought`)",
         what="Each family's wall-clock checkpoint (`full`, clean corpus), the compute-matched run's step-2,000 chunk "
              "and that run at its 8,000-step budget (varied-visuals play corpus), side by side: cost "
              "(`checkpoints.csv`), the push position probes' best spatial ridge R² at N = 50 (`probe_full`, "
              "`probe_matched`), closed-loop success on push per N (seed means) and the AUC with its seed-level 95 % "
              "interval (`push_fair2`, `push_matched_2000`, `push_matched`), and the paired AUC difference against "
              "`full` with its Holm p (the two comparison tables above). Every column is copied from those CSVs; "
              "a family without a stage's checkpoint has no row for it.",
         cols=["family", "stage", "steps", "tflop", "corpus", "final_loss", "push_gripper_pos_r2", "push_block_pos_r2",
               "push_goal_pos_r2", "success_n10", "success_n50", "success_n100", "success_n500", "auc", "auc_ci_low",
               "auc_ci_high", "auc_vs_full", "auc_vs_full_ci_low", "auc_vs_full_ci_high", "auc_vs_full_p_holm",
               "auc_vs_full_resolved"]),
    dict(csv="checkpoints.csv", title="The encoder checkpoints: compute and corpus (`python -m benchmarks.checkpoints`)",
         what="Every committed checkpoint from its own metadata: optimizer steps (and the cosine schedule's length "
              "when budgeted in steps), FLOPs (counted on the run's first batch × steps; empty where the checkpoint "
              "predates the count), wall hours over every run that made it (each under its own CPU load), the "
              "pretraining corpus, the final loss, size and hash. `_matched`: the compute-matched budget "
              "(`scripts/pretrain_matched.sh`); `_matched_<step>`: that run's earlier chunk, kept for comparison; "
              "`_quick` / `_full`: the wall-clock budgets (15 / 60 min) on the clean corpus."),
    dict(csv="compare_sweeps/push_fair2_repro.csv",
         title="A committed cell reproduced on a re-collected demo file (`python -m benchmarks.compare_sweeps`)",
         what="The `push_fair2` cell named in the row, re-run from its command on another machine's re-collection "
              "of the push demo file (`results/sweeps/push_fair2_repro`) and paired with the committed cell: the "
              "files differ in bytes (`same_demo_bytes`), so the same outcome on every episode (`discordant` 0) says the "
              "demonstrations, tuning, training and roll-outs are the same and a comparison against `push_fair2` "
              "from the new file (the matched checkpoints above) is not confounded by the file. The cells' "
              "validation MSE and per-episode lengths are in their records.",
         reading=_compare_reading),
    dict(csv="pretrain_budget.csv", title="The matched pretraining budget (`python -m benchmarks.pretrain_budget`)",
         what="Per committed loss curve (kind = run): steps reached, seconds per step as recorded, the smoothed loss "
              "at half the run and at its end, and its relative drop over the second half. Per candidate budget in "
              "optimizer steps, the same for every family (kind = budget): how many times each family's wall-clock "
              "checkpoint it is, and its predicted cost from the recorded speeds (core-hours; hours of wall with "
              "`lanes` families side by side). `scripts/pretrain_matched.sh` runs the chosen budget.",
         reading=lambda rows: "Second-half loss drop per run: " + ", ".join(
             f"{r['run']} {100 * num(r['second_half_drop']):.0f} %" for r in rows if r["kind"] == "run") + "."),
    dict(csv="policy_latency.csv", title="A policy's latency per frame (`python -m benchmarks.policy_latency`)",
         what="One 96 × 96 frame (batch 1) through a policy — preprocessing, encoder, readout, head — per family and "
              "runtime on one and two threads: eager PyTorch at the training precision and in float32, the exported "
              "TorchScript and ONNX files, the opt-in int8 ONNX file and the float32 ONNX file in OpenVINO (at the "
              "precision it picks for this CPU); speed-ups over eager at the same threads; the actions' largest "
              "difference from float32 PyTorch on 8 frames of a barely trained head (closed loop: the next table); "
              "`load_policy` in a fresh interpreter (call alone) and the ONNX file's load in onnxruntime alone.",
         cols=["family", "runtime", "threads", "precision", "p50_ms", "p99_ms", "speedup_p50",
               "speedup_p50_vs_float32", "max_abs_diff", "load_policy_call_s", "onnx_load_s"],
         reading=lambda rows: _latency_reading(rows)),
    dict(csv="export_fidelity.csv", title="Exported files closed-loop (`python -m benchmarks.export_fidelity`)",
         what="Each trained policy (push, N = 100, seed 0, the benchmark's training rule) rolled out in PyTorch and as "
              "its exported files on the same 100 test layouts: successes with Wilson 95 % intervals, the episodes "
              "only one of the pair solved and the exact McNemar p, the largest action difference from float32 "
              "PyTorch on the layouts' first frames, and the time inside the policy per env step (open-loop chunks)."),
    dict(csv="sweep_cost.csv", title="Cost of the default sweep (`python -m benchmarks.sweep_cost`)",
         what="A prediction from parts measured on one thread: training steps under the training rule's budget "
              "(no early stopping: an upper bound) times the tuning grid, evaluation episodes times episode length "
              "times simulator + policy milliseconds per env step, feature caching with its shifted copies.",
         cols=["arm", "n", "budget_steps", "trainings", "train_step_s", "train_step_s_float32", "train_core_s",
               "episode_length", "length_source", "chunk_execution", "policy_ms_per_step",
               "policy_ms_per_step_every_step", "policy_ms_per_step_float32", "sim_ms_per_step", "eval_core_s",
               "cache_core_s"],
         reading=_cost_reading),
    dict(csv="acting_pilot.csv", title="Acting rule pilot (`python -m benchmarks.sweep_choices acting`)",
         what="The same arm, N and seed trained and rolled out on development layouts with 1-action chunks acted "
              "every step and with 4-action chunks executed open-loop: successes and evaluation time per way."),
    dict(csv="tuning_grid_pilot.csv", title="Tuning grid pilot (`python -m benchmarks.sweep_choices grid`)",
         what="Best valid-demo MSE per grid point of the first 64 tuning trainings (learning rate × weight decay, "
              "seed 0): how far weight decay moved it next to the learning rate.",
         reading=lambda rows: _grid_reading(rows)),
    dict(csv="dift_sweep.csv", title="DIFT read-out: up block × timestep (`python -m benchmarks.dift_sweep`)",
         what="Held-out-episode ridge R² of the positions (mean and per variable) from 4×4-pooled features of the "
              "quick DIFT checkpoint per up block and diffusion timestep t, next to a random-init U-Net and pixels.",
         cols=["source", "up_block", "t", "r2_pos_mean", "r2_gripper_pos", "r2_block_pos", "r2_goal_pos"],
         keep=lambda r: r["pooling"] == "4x4",
         reading=lambda rows: "Best mean R² per source: " + "; ".join(
             f"{r['source']} {r['r2_pos_mean']} (up block {r['up_block']}, t = {r['t']})"
             for r in (max((x for x in rows if x["source"] == s), key=lambda x: (num(x["r2_pos_mean"]), x["t"]))
                       for s in sorted({x["source"] for x in rows}))) + "."),
    dict(csv="planner_speed.csv", title="Planner speed (`python -m benchmarks.planner_speed`)",
         what="Milliseconds per planned action (encode + CEM) per encoder and dynamics model, one env or several.",
         cols=["encoder", "dynamics", "batch", "horizon", "action_repeat", "frameskip", "samples", "iterations",
               "encode_ms_per_plan", "cem_ms_per_plan", "ms_per_plan", "ms_per_action"]),
    dict(csv="camera_framing.csv", title="Camera framing (`python -m benchmarks.camera_framing`)",
         what="How many pixels and patches the block spans per candidate camera and image size, and how often it is "
              "cut or hidden."),
    dict(csv="encoder_speed.csv", title="Encoder throughput (`python -m benchmarks.encoder_speed`)",
         what="Images per second, GFLOP per image and share of the measured matmul peak per in-domain encoder."),
    dict(csv="precision_speed.csv", title="float32 vs bfloat16 autocast (`python -m benchmarks.precision_speed`)",
         what="Encoder images/s and how far bf16 moves the features (minimum token cosine, relative error), and "
              "conv-trunk training-step time, in both precisions.",
         reading=lambda rows: f"bfloat16 faster: {listing([r['name'] for r in rows if num(r['speedup']) > 1])}; "
                              f"slower: {listing([r['name'] for r in rows if num(r['speedup']) < 1])}."),
    dict(csv="train_step.csv", title="Training-step levers (`python -m benchmarks.train_step`)",
         what="One BC training step (gather, forward, backward, clipping, AdamW) of the CNN and of a frozen-feature "
              "head on one thread, before and after each lever, measured in one run.",
         reading=lambda rows: "; ".join(f"{r['arm']} {r['lever']}: x{r['ratio']}" for r in rows) + "."),
    dict(csv="env_speed.csv", title="Environment speed (`python -m benchmarks.env_speed`)",
         what="Steps per second with random and expert actions, and expert success, per task and visual setting."),
]


def render_report(root: Path) -> str:
    res, parts = root / "results", [
        "# robrep results",
        "Generated by `python -m benchmarks.report` from the committed CSVs under `results/`; do not edit by hand "
        "(`python -m benchmarks.report --check` fails when this file is stale). Every table and number-bearing "
        "sentence is rendered from a CSV; each section ends with the commands in its CSVs' comment lines."]
    found = [p.parent.name for p in sorted((res / "sweeps").glob("*/summary.csv"))]
    for n in [n for n in SWEEPS if n in found] + [n for n in found if n not in SWEEPS]:
        parts += sweep_section(res, res / "sweeps" / n, *SWEEPS.get(n, (f"Sweep `{n}`", "A `robrep sweep` run.")))
    for section, found in [(protocols_section, res / "transfer" / "push_protocols.csv"),
                           (probe_quick_section, sorted(res.glob("probe_*_demos_*.csv"))),
                           (budget_section, res / "budget_pilot.csv"),
                           (gate_section, res), (ablation_section, res / "ablation_mae.csv"),
                           (planner_section, res / "plan" / "plan.csv"),
                           (diagnostics_section, sorted((res / "diagnostics").glob("correspondence_*.csv"))),
                           (cross_task_section, [res / "sweeps" / d / "summary.csv" for d in TASK_SWEEPS.values()
                                                 if (res / "sweeps" / d / "summary.csv").exists()])]:
        if found and (isinstance(found, list) or found.exists()):
            parts += section(res, found)
    for t in SIMPLE:
        if (res / t["csv"]).exists():
            rows = [r for r in read_csv(res / t["csv"]) if t.get("keep", bool)(r)]
            parts += [f"## {t['title']}", t["what"], csv_table(rows, t.get("cols")),
                      t["reading"](rows) if "reading" in t else "", *tail(res, [], [res / t["csv"]])]
    return "\n\n".join(p for p in parts if p) + "\n"


def render_costs(root: Path) -> str:
    path = root / "results" / "costs.csv"
    if not path.exists():
        return "Costs: not measured yet (filled from `results/costs.csv` by `python -m benchmarks.report`)."
    latest = {(r["cpu"], r["native_bf16"].strip().lower() in ("1", "true", "yes"), r["what"]): r
              for r in sorted(read_csv(path), key=lambda r: (r["date"], r["cpu"], r["what"]))}  # the newest wins
    cell = lambda r: "–" if r is None else f"{num(r['minutes']):.1f} min" + (  # noqa: E731
        "" if math.isnan(num(r["size_gb"])) else f", {num(r['size_gb']):.1f} GB")
    tab = table(["CPU", "native bf16", "install", "test suite", "main job"],
                [[c, "yes" if b else "no", *(cell(latest.get((c, b, w))) for w in ("install", "tests", "quickstart"))]
                 for c, b in sorted({(c, b) for c, b, _ in latest})])
    cmds = sorted({(r["cpu"], r["what"], r["date"], r["command"]) for r in latest.values()})
    return (f"Measured (`results/costs.csv`):\n\n{tab}\n\n"
            + "\n".join(f"- {c}, {w} ({d}): `{x}`" for c, w, d, x in cmds))


def fill_costs(readme: str, block: str) -> str:
    i, j = readme.find(BEGIN), readme.find(END)
    if i < 0 or j < i:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return readme[: i + len(BEGIN)] + "\n" + block + "\n" + readme[j:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if results/REPORT.md or README's block is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    targets = {args.root / "results" / "REPORT.md": render_report(args.root)}
    if (args.root / "README.md").exists():
        targets[args.root / "README.md"] = fill_costs((args.root / "README.md").read_text(), render_costs(args.root))
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    for p in stale:
        print(f"stale: {p} (run `python -m benchmarks.report`)" if args.check else f"wrote {write_text(targets[p], p)}")
    if args.check and stale:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
