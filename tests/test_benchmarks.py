"""benchmarks/ as a package: every module runs as ``python -m benchmarks.<name>`` (only --help here: the
benchmarks themselves take minutes to hours), imports no CLI module, and writes under runs/ unless committing."""

import argparse
import ast
import importlib
from pathlib import Path

import pytest
import torch

from benchmarks import _output

BENCHMARKS = ("camera_framing", "costs", "load_speed", "dift_sweep", "encoder_speed", "env_speed", "planner_speed", "precision_speed",
              "policy_latency", "pretrain_ablation", "probe_gate", "sweep_choices", "sweep_cost", "sweep_profile", "budget_pilot",
              "transfer_protocols", "goal_confound", "latent_localisation", "plan_exploitation", "bc_beside_planner",
              "train_step", "encoder_diagnostics", "prior_planner", "pretrain_budget", "compare_sweeps",
              "export_fidelity", "chance_floor", "checkpoints", "compute_bought")
#: Generators of committed docs from committed CSVs (not measurements): they rewrite their own file, with --check.
DOC_GENERATORS = ("report",)
FOLDER = Path(__file__).resolve().parent.parent / "benchmarks"


def test_every_benchmark_is_listed():
    assert sorted(p.stem for p in FOLDER.glob("*.py") if not p.stem.startswith("_")) == sorted(BENCHMARKS + DOC_GENERATORS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--commit" in out and f"runs/benchmarks/{name}/" in out.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_module_is_clean(name):
    """No sys.path edits, no CLI imports, no environment changes at import, a main(argv) and a __main__ guard."""
    source = (FOLDER / f"{name}.py").read_text()
    tree = ast.parse(source)
    assert "sys.path" not in source and "E402" not in source and "python benchmarks/" not in source
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    assert not [m for m in imported if m.startswith(("robrep.cli", "robrep.commands"))]
    for node in tree.body:  # module level: no os.environ access outside functions
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If)):
            assert "environ" not in ast.unparse(node), ast.unparse(node)
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert [a.arg for a in main.args.args] == ["argv"]
    assert "__name__ == '__main__'" in ast.unparse(tree.body[-1])


def parse(argv, committed="results/sub/table.csv", **kw):
    parser = argparse.ArgumentParser()
    _output.add_output_args(parser, "demo", committed, **kw)
    return parser.parse_args(argv)


def test_outputs_go_under_runs_unless_committed(capsys):
    committed = "results/sub/table.csv"
    assert _output.output_path(parse([]), "demo", committed) == Path("runs/benchmarks/demo/sub/table.csv")
    assert _output.output_path(parse(["--commit"]), "demo", committed) == Path(committed)
    assert _output.output_path(parse(["--out", "x/y.csv"]), "demo", committed) == Path("x/y.csv")
    with pytest.raises(SystemExit):
        parse(["--commit", "--out", "x.csv"])
    assert "not allowed with" in capsys.readouterr().err
    args = parse(["--out-dir", "d"], "results/probe_full", out_flag="--out-dir")
    assert _output.output_path(args, "demo", "results/probe_full", out_attr="out_dir") == Path("d")


def test_rebase_and_command():
    assert _output.rebase("results/ablation/mae", "runs/benchmarks/x") == Path("runs/benchmarks/x/ablation/mae")
    assert _output.rebase("other/file.csv", "r") == Path("r/other/file.csv")
    assert _output.rebase("results/a.csv", None) == Path("results/a.csv")
    assert _output.command("demo", ["--a", "1 2"]) == "python -m benchmarks.demo --a '1 2'"


def test_probe_gate_reproduces_the_committed_gate_table():
    """probe_gate reads probe CSVs through the library (robrep.probe.state_probe.read_probe_csv)."""
    from benchmarks.probe_gate import gate_row
    from robrep.probe.state_probe import read_probe_csv
    from robrep.results import read_csv

    folder = FOLDER.parent / "results" / "probe_full"
    for ref in read_csv(folder / "gate.csv"):
        row = gate_row(ref["encoder"], ref["task"], ref["budget"],
                       read_probe_csv(folder / f"{ref['task']}_{ref['encoder']}.csv"))
        assert {k: str(v) for k, v in row.items() if k in ref} == {k: v for k, v in ref.items() if k in row}


def test_localisation_probe_reads_a_position_a_latent_holds_and_not_one_it_lacks():
    from benchmarks.latent_localisation import probe

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(2000, 2, generator=gen) * 0.2                      # two positions, metres
    z = torch.cat([y[:, :1] * 10, torch.randn(2000, 7, generator=gen)], 1)  # holds the first, not the second
    rmse = ((probe(z[:1500], y[:1500], z[1500:], steps=400) - y[1500:]) ** 2).mean(0).sqrt()
    assert rmse[0] < 0.01 < 0.05 < rmse[1]  # ~the spread (0.2 / sqrt(12) = 0.058) where nothing is held


def test_bc_beside_planner_scores_only_the_planners_layouts(tmp_path):
    """Cells evaluated on 6 test layouts, the planner's first 4: only those count, per arm and seed."""
    import json

    from benchmarks.bc_beside_planner import bc_rows
    from robrep.seeds import eval_seeds

    seeds = eval_seeds(6, 0, "test")
    (tmp_path / "cells").mkdir()
    for arm, seed, success in [("mae", 0, [1, 1, 0, 0, 1, 1]), ("mae", 1, [1, 0, 0, 0, 0, 0]),
                               ("cnn", 0, [0, 0, 0, 1, 1, 1]), ("cnn", 1, [0, 0, 0, 0, 1, 1])]:
        cell = {"task": "push", "arm": arm, "n": 100, "seed": seed, "eval_split": "test", "episode_seeds": seeds,
                "episode_success": [bool(s) for s in success]}
        (tmp_path / "cells" / f"{arm}_n100_s{seed}.json").write_text(json.dumps(cell))
    rows = {r["arm"]: r for r in bc_rows(tmp_path, 100, 4)}
    assert rows["mae"]["successes"] == 3 and rows["mae"]["episodes"] == 8 and rows["mae"]["seed_mean"] == 0.375
    assert rows["cnn"]["successes"] == 1 and rows["cnn"]["train_seeds"] == 2
    with pytest.raises(ValueError, match="not evaluated"):
        bc_rows(tmp_path, 100, 7)


def test_pretrain_budget_reads_a_loss_curve_and_packs_lanes(tmp_path):
    """The smoothed loss at half and at the end of a curve, its second-half drop, and the longest lane of a greedy
    packing (longest job first, each to the least loaded lane)."""
    from benchmarks.pretrain_budget import curve_summary, lane_hours
    from robrep import results

    rows = [{"step": s, "loss": 2.0 if s <= 50 else 1.0, "seconds": 2.0 * s} for s in range(1, 101)]
    results.write_csv(rows, tmp_path / "x.loss.csv")
    s = curve_summary(tmp_path / "x.loss.csv")
    assert s["steps"] == 100 and s["s_per_step"] == 2.0 and s["loss_end"] == 1.0
    assert 1.0 < s["loss_half"] < 2.0 and 0 < s["second_half_drop"] < 0.5
    assert lane_hours([5.0, 3.0, 2.0, 1.0], 2) == 6.0 and lane_hours([4.0], 2) == 4.0


def test_compare_sweeps_pairs_cells_by_seed_and_layout(tmp_path):
    """a − b per (arm, N) from cells paired by training seed, the AUC row over the shared Ns, Holm across rows; other
    layouts in one directory are an error."""
    import json

    from benchmarks.compare_sweeps import compare, load_cells

    def cells(root, lift):
        for n, base in ((10, 0.2), (50, 0.5)):
            for seed in range(3):
                rate = base + lift + 0.02 * seed
                hits = [1] * int(round(rate * 50)) + [0] * (50 - int(round(rate * 50)))
                rec = {"arm": "mae", "n": n, "seed": seed, "episode_seeds": list(range(50)), "episode_success": hits,
                       "success_rate": sum(hits) / 50}
                (root / "cells").mkdir(parents=True, exist_ok=True)
                (root / "cells" / f"mae_n{n}_s{seed}.json").write_text(json.dumps(rec))
        return load_cells(root)

    a, b = cells(tmp_path / "a", 0.2), cells(tmp_path / "b", 0.0)
    rows = compare(a, b)
    assert [r["n"] for r in rows] == [10, 50, "auc 10 50"]
    assert rows[0]["diff"] == 0.2 and rows[0]["seeds"] == 3 and rows[0]["p_value"] == 0.0 and rows[0]["resolved"]
    assert rows[2]["diff"] == 0.2  # AUC of a constant lift is the lift
    assert rows[0]["discordant"] == 3 * 10 and rows[2]["discordant"] == ""  # 0.2 × 50 episodes more, per seed
    assert all(r["same_demo_bytes"] == "" for r in rows)  # records without a dataset hash: unknown
    for side, h in ((a, "h1"), (b, "h1")):
        for rec in side.values():
            rec["dataset_hash"] = h
    assert all(r["same_demo_bytes"] is True for r in compare(a, b))
    b[("mae", 50, 2)]["dataset_hash"] = "h2"  # one re-collected file: that N and the AUC row say so
    assert [r["same_demo_bytes"] for r in compare(a, b)] == [True, False, False]
    b[("mae", 10, 0)]["episode_seeds"] = list(range(1, 51))
    with pytest.raises(ValueError, match="different layouts"):
        compare(a, b)


def test_chance_floor_policies_are_blind_and_seeded():
    """The chance floor's policies never ask for an image, act zeros / reproducible uniform actions inside the
    box, and score on the sweep's layouts (one row per policy)."""
    import numpy as np

    from benchmarks.chance_floor import BlindPolicy, floor_rows

    low, high = -np.ones(4), np.array([1.0, 1.0, 1.0, 0.5])
    zero, rand, again = (BlindPolicy("push", {}, k, low, high, seed=3) for k in ("zero", "random", "random"))
    for p in (zero, rand, again):
        p.reset(5)
    assert not zero.observation_needed().any() and zero.observation_needed().shape == (5,)
    assert (zero.act({}) == 0).all() and zero.act({}).shape == (5, 4)
    a = rand.act({})
    assert a.dtype == np.float32 and (a >= low).all() and (a <= high).all() and np.array_equal(a, again.act({}))
    with pytest.raises(ValueError, match="kind"):
        BlindPolicy("push", {}, "noop", low, high)
    rows = floor_rows("push", episodes=3)
    assert [r["policy"] for r in rows] == ["zero", "random"]
    assert all(r["episodes"] == 3 and r["split"] == "test" and 0 <= r["successes"] <= 3 for r in rows)


def test_checkpoints_table_reads_cost_and_corpus_from_the_checkpoint(tmp_path):
    """One row per checkpoint from its own metadata: steps, FLOPs in TFLOP, wall hours over resumed runs, the corpus
    folders; a checkpoint made before FLOPs were counted leaves the column empty."""
    from omegaconf import OmegaConf

    from benchmarks.checkpoints import checkpoint_row
    from robrep.config import config_dir
    from robrep.encoders import load_encoder
    from robrep.encoders.checkpoint import save_checkpoint

    arch = OmegaConf.to_container(OmegaConf.load(f"{config_dir()}/encoder/mae.yaml").arch)
    encoder = load_encoder("mae", **arch)
    data = {"data/play/varied/push.hdf5": "a", "data/play/varied/reach.hdf5": "b"}
    save_checkpoint(encoder, tmp_path / "new.pt", {"steps": 8000, "schedule_steps": 8000, "flops": 2.5e15,
                                                   "seconds": 60.0, "seconds_total": 7200.0, "data": data,
                                                   "frames": 900, "final_loss": 0.123456})
    save_checkpoint(encoder, tmp_path / "old.pt", {"steps": 700, "seconds": 900.0, "data": data})
    new, old = checkpoint_row(tmp_path / "new.pt"), checkpoint_row(tmp_path / "old.pt")
    assert (new["family"], new["steps"], new["tflop"], new["wall_h"]) == ("mae", 8000, 2500.0, 2.0)
    assert (new["corpus"], new["files"], new["frames"], new["final_loss"]) == ("data/play/varied", 2, 900, 0.1235)
    assert (old["tflop"], old["schedule_steps"], old["wall_h"], old["corpus"]) == ("", "", 0.25, "data/play/varied")


def test_compute_bought_joins_cost_probe_and_closed_loop_per_stage(tmp_path):
    """One row per committed (family, stage) checkpoint: its cost from checkpoints.csv, the push probe from the
    stage's gate.csv, closed loop from the stage's sweep (CLIP read through clip_spatial) and the paired AUC
    difference against the wall-clock stage; a stage whose sweep is missing leaves its columns empty."""
    from benchmarks.compute_bought import table
    from robrep.results import write_csv

    res = tmp_path / "results"
    ckpt = dict(family="clip", schedule_steps="", wall_h=1.0, corpus="data/pretrain", final_loss=2.0)
    write_csv([{**ckpt, "weights": "weights/clip_full.pt", "steps": 1358, "tflop": ""},
               {**ckpt, "weights": "weights/clip_matched.pt", "steps": 8000, "tflop": 1699.2},
               {**ckpt, "weights": "weights/clip_matched_2000.pt", "steps": 2000, "tflop": 420.7}],
              res / "checkpoints.csv")
    gate = dict(encoder="clip", task="push", feature_layer="", block_pos=0.9, goal_pos=0.8, gripper_pos_baseline=0.85)
    write_csv([{**gate, "gripper_pos": 0.87}, {**gate, "task": "pick_place", "gripper_pos": 0.1}],
              res / "probe_full/gate.csv")
    write_csv([{**gate, "gripper_pos": 0.85}], res / "probe_matched/step_8000/gate.csv")
    for sweep, rate in (("push_fair2", 0.5), ("push_matched", 0.4)):
        write_csv([{"arm": a, "n": n, "seed_mean": rate} for a in ("clip", "clip_spatial") for n in (10, 500)],
                  res / "sweeps" / sweep / "summary.csv")
        write_csv([{"arm": "clip_spatial", "ns": "10 500", "auc": rate, "auc_ci_low": 0, "auc_ci_high": 1}],
                  res / "sweeps" / sweep / "auc.csv")
    write_csv([{"arm": "clip_spatial", "n": 10, "diff": -0.1, "ci_low": -0.2, "ci_high": 0.0, "p_holm": 0.5,
                "resolved": False},
               {"arm": "clip_spatial", "n": "auc 10 500", "diff": -0.1, "ci_low": -0.15, "ci_high": -0.05,
                "p_holm": 0.01, "resolved": True}], res / "compare_sweeps/push_matched_vs_full.csv")
    rows = {r["stage"]: r for r in table(res)}
    assert list(rows) == ["full", "matched_2000", "matched"]
    full, early, matched = rows["full"], rows["matched_2000"], rows["matched"]
    assert (full["arm"], full["steps"], full["push_gripper_pos_r2"], full["success_n10"], full["auc"]) == \
        ("clip_spatial", "1358", "0.87", "0.5", "0.5")
    assert full["auc_vs_full"] == "" and full["success_n50"] == ""
    assert (matched["tflop"], matched["push_gripper_pos_r2"], matched["auc"]) == ("1699.2", "0.85", "0.4")
    assert (matched["auc_vs_full"], matched["auc_vs_full_p_holm"], matched["auc_vs_full_resolved"]) == \
        ("-0.1", "0.01", "True")
    assert (early["steps"], early["push_gripper_pos_r2"], early["auc"], early["auc_vs_full"]) == ("2000", "", "", "")
    write_csv([{**gate, "gripper_pos": 0.85, "weights_hash": "other"}], res / "probe_matched/step_8000/gate.csv")
    write_csv([{**ckpt, "weights": "weights/clip_matched.pt", "steps": 8000, "tflop": 1.0, "hash": "mine"}],
              res / "checkpoints.csv")
    with pytest.raises(ValueError, match="not the committed"):  # a probe of other weights is not this stage's
        table(res)
