"""The data-efficiency sweep: table/summary/paired formats, resume, subsets that do not exist, launcher configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robrep import results
from robrep.cli import main
from robrep.config import config_dir
from robrep.data.collect import collect_demos
from robrep.data.demo_file import DemoFileError
from robrep.sweep.table import (CELL_COLUMNS, SUMMARY_COLUMNS, cell_path, cell_rows, format_summary, load_cells,
                                paired_rows, plot_paired, plot_success, summarise)
from robrep.sweep.protocols import PROTOCOL_COLUMNS, plot_protocols, protocol_rows, verdict


def record(arm: str, n: int, seed: int, success: list[int]) -> dict:
    return {"arm": arm, "task": "push", "n": n, "seed": seed, "episodes": len(success), "successes": sum(success),
            "success_rate": sum(success) / len(success), "episode_seeds": list(range(1_000_000, 1_000_000 + len(success))),
            "episode_success": success}


def test_summary_pools_seeds_with_a_wilson_interval(tmp_path):
    recs = [record("mae", 10, 0, [1, 0, 0, 0]), record("mae", 10, 1, [1, 1, 0, 0]), record("cnn", 10, 0, [0, 0, 0, 0])]
    summary = summarise(recs)
    assert [tuple(r) for r in summary] == [SUMMARY_COLUMNS] * 2
    mae = next(r for r in summary if r["arm"] == "mae")
    assert (mae["seeds"], mae["episodes"], mae["successes"], mae["success_rate"]) == (2, 8, 3, 0.375)
    assert 0.0 < mae["ci_low"] < 0.375 < mae["ci_high"] < 1.0
    assert mae["seed_min"] == 0.25 and mae["seed_max"] == 0.5 and mae["seed_std"] > 0
    assert list(cell_rows(recs)[0]) == list(CELL_COLUMNS)
    assert "mae" in format_summary(summary) and "N=10" in format_summary(summary)
    png, svg = plot_success(summary, recs, tmp_path / "plot")
    assert png.stat().st_size > 1000 and svg.read_text().startswith("<?xml")


def test_paired_rows_need_shared_episodes():
    a = [record("mae", 10, s, [1] * 6) for s in range(2)]
    b = [record("cnn", 10, s, [0] * 6) for s in range(2)]
    (row,) = paired_rows(a + b, [("mae", "cnn")], num_resamples=200)
    assert row["diff"] == 1.0 and row["ci_low"] == row["ci_high"] == 1.0 and row["seeds"] == 2
    shifted = [{**r, "episode_seeds": [s + 100 for s in r["episode_seeds"]]} for r in b]
    assert paired_rows(a + shifted, [("mae", "cnn")], num_resamples=200) == []  # not the same layouts: no pairing


def _write_protocol(sweep_dir, records):
    results.write_csv(summarise(records), sweep_dir / "summary.csv")
    results.write_csv(paired_rows(records, [("mae", "cnn")], num_resamples=200), sweep_dir / "paired.csv")


def test_protocol_rows_join_each_sweep_and_call_the_verdict(tmp_path):
    better = [record("mae", 10, s, [1, 1, 1, 0]) for s in range(3)] + [record("cnn", 10, s, [0] * 4) for s in range(3)]
    mixed = [record("mae", 10, s, [s % 2, 0, 1, 0]) for s in range(3)] + [record("cnn", 10, s, [0, 1, 0, s % 2]) for s in range(3)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _write_protocol(tmp_path / "a", better)
    _write_protocol(tmp_path / "b", mixed)
    rows = protocol_rows({"A": tmp_path / "a", "B": tmp_path / "b"}, [("mae", "cnn")])
    assert [tuple(r) for r in rows] == [PROTOCOL_COLUMNS] * 2
    a, b = rows
    assert (a["protocol"], a["arm"], a["baseline"], a["n"], a["seeds"]) == ("A", "mae", "cnn", 10, 3)
    assert a["success_rate"] == 0.75 and a["baseline_rate"] == 0.0 and a["diff"] == 0.75 and a["verdict"] == "better"
    assert b["verdict"] == "unresolved" and b["diff_low"] <= 0 <= b["diff_high"]
    assert verdict(-0.2, -0.01) == "worse"
    png, svg = plot_protocols(rows, tmp_path / "protocols")
    assert png.stat().st_size > 1000 and svg.read_text().startswith("<?xml")
    png, _ = plot_paired(paired_rows(better, [("mae", "cnn")], num_resamples=100), tmp_path / "paired")
    assert png.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="not_run"):
        protocol_rows({"C": tmp_path / "not_run"}, [("mae", "cnn")])


@pytest.fixture(scope="module")
def reach_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "reach.hdf5"
    collect_demos("reach", 6, path, image_size=32, subset_sizes=(4,), subset_seeds=(0,), progress=False)
    return path


SMALL = ["task=reach", "task.image_size=32", "arms=[cnn]", "demos=[4]", "seeds=[0]", "episodes=2", "num_envs=2", "eval_split=dev", "tune.grid=null",
         "launcher=inprocess", "progress=false", "bootstrap_resamples=100",
         'arm_overrides=["policy.train.steps=4","policy.train.eval_every=2","policy.cnn.channels=8"]']


def test_sweep_runs_resumes_and_keeps_finished_cells(reach_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", *SMALL, f"dataset={reach_file}", "sweep_dir=out"]
    assert main(args) == 0
    rec_path = cell_path("out", "cnn", 4, 0)
    rec = json.loads(rec_path.read_text())
    assert rec["episode_seeds"] == [1_000_000, 1_000_001] and len(rec["episode_success"]) == 2
    # the record carries what trained it: the resolved policy config and the training curve up to its last step
    assert rec["policy_config"]["train"]["steps"] == 4 and rec["policy_config"]["cnn"]["channels"] == 8
    assert [h["step"] for h in rec["train_curve"]][-1] == rec["steps"] and rec["best_step"] <= rec["steps"]
    table = results.read_csv("out/table.csv")
    assert len(table) == 1 and table[0]["arm"] == "cnn" and table[0]["n"] == "4"
    assert (tmp_path / "out/success_vs_n.png").exists() and (tmp_path / "out/summary.csv").exists()
    first = rec_path.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # resume: nothing left to do, the record is untouched
    assert "1 already done" in capsys.readouterr().out and rec_path.stat().st_mtime_ns == first
    runs = results.read_csv("out/runs.csv")  # one row per invocation: the resumed sweep's wall time adds up
    assert [r["finished_here"] for r in runs] == ["1", "0"] and [r["done_before"] for r in runs] == ["0", "1"]
    # an interrupted evaluation (record missing, policy kept) re-evaluates without training again
    (policy,) = (tmp_path / "runs/sweeps/out/policies").glob("cnn_n4_s0_*.pt")  # content-addressed name
    assert policy.stem.endswith(rec["policy_key"]) and rec["dataset_hash"]
    trained = policy.stat().st_mtime_ns
    rec_path.unlink()
    assert main(args) == 0
    assert rec_path.exists() and policy.stat().st_mtime_ns == trained
    assert len(load_cells("out")) == 1


def test_a_cell_never_reuses_a_policy_trained_on_other_data_or_settings(reach_file, tmp_path, monkeypatch):
    """Policies are content-addressed: a second sweep whose sweep_dir has the same basename (so the same policy
    folder) but another dataset, or other training settings, trains its own policy and records which one."""
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other.hdf5"
    collect_demos("reach", 6, other, image_size=32, seed_start=100, subset_sizes=(4,), subset_seeds=(0,), progress=False)
    assert main(["sweep", *SMALL, f"dataset={reach_file}", "sweep_dir=a/out"]) == 0
    assert main(["sweep", *SMALL, f"dataset={other}", "sweep_dir=b/out"]) == 0
    steps = [a if not a.startswith("arm_overrides=") else a.replace("steps=4", "steps=6") for a in SMALL]
    assert main(["sweep", *steps, f"dataset={other}", "sweep_dir=c/out"]) == 0
    recs = [json.loads((tmp_path / d / "out/cells/cnn_n4_s0.json").read_text()) for d in "abc"]
    assert len({r["policy"] for r in recs}) == 3 and len({r["policy_key"] for r in recs}) == 3
    assert recs[0]["dataset_hash"] != recs[1]["dataset_hash"] == recs[2]["dataset_hash"]
    assert len(list((tmp_path / "runs/sweeps/out/policies").glob("cnn_n4_s0_*.pt"))) == 3


def test_default_chunk_execution_keeps_policy_keys_open_loop_changes_them(tmp_path):
    """``chunk_execution: ensemble`` (the default, added after sweeps had run) leaves a cell's policy key as it was
    without the key; ``open_loop`` acts differently, so its records and policies are its own."""
    import dataclasses

    from robrep.sweep.cell import CellSpec

    data = tmp_path / "demos.hdf5"
    data.write_bytes(b"demo bytes")
    policy = {"name": "cnn", "trunk": "cnn", "chunk": 4, "train": {"lr": 1e-3}}
    old = CellSpec("cnn", 10, 0, str(data), str(tmp_path / "s"), str(tmp_path / "p"), policy)
    same = dataclasses.replace(old, policy={**policy, "chunk_execution": "ensemble"})
    loop = dataclasses.replace(old, policy={**policy, "chunk_execution": "open_loop"})
    assert same.policy_key == old.policy_key != loop.policy_key


@pytest.mark.parametrize("bad, message", [("episodes=0", "episodes=0"), ("num_envs=-1", "num_envs=-1"),
                                          ("demos=[0]", "n=0")])
def test_degenerate_settings_are_refused_before_anything_runs(tmp_path, monkeypatch, bad, message):
    from robrep.sweep.run import run_sweep

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("sweep", overrides=[*SMALL, "dataset=never.hdf5", "sweep_dir=out", bad])
    with pytest.raises(ValueError, match=message):
        run_sweep(cfg)
    assert not (tmp_path / "never.hdf5").exists() and not (tmp_path / "out").exists()


def test_sweep_refuses_subsets_the_file_lacks(reach_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from omegaconf import OmegaConf

    from robrep.sweep.run import ensure_dataset

    cfg = OmegaConf.create({"dataset": str(reach_file), "demos": [4, 50], "seeds": [0, 1],
                            "collect": {"valid_fraction": 0.1}, "task": {"name": "reach", "image_size": 32}})
    with pytest.raises(DemoFileError, match=r"train_n50_seed0.*train_n4_seed1|train_n4_seed1.*train_n50"):
        ensure_dataset(cfg)


@pytest.mark.parametrize("launcher, target", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_configs_load(launcher, target):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("cell", overrides=[f"hydra/launcher={launcher}", "arm=mae"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.parametrize("arm, readout, trunk", [("mae", "spatial_softmax", "features"), ("mae_cls", "cls", "features"),
                                                 ("clip", "cls", "features"), ("clip_spatial", "spatial_softmax", "features"),
                                                 ("cnn", "spatial_softmax", "cnn"), ("resnet18", "spatial_softmax", "cnn")])
def test_arms_compose(arm, readout, trunk):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("cell", overrides=[f"arm={arm}"])
    assert cfg.arm == arm and cfg.policy.readout == readout and cfg.policy.trunk == trunk
    if trunk == "features":
        assert cfg.weights == f"weights/{cfg.encoder.name}_full.pt"
    assert np.isfinite(cfg.episodes)


def test_sweep_passes_its_settings_to_every_cell_as_a_typed_spec():
    """Cells are specs built from the sweep config (no override strings): every shared key reaches every cell."""
    import pickle

    from robrep.sweep.run import sweep_cells

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        sweep = compose("sweep", overrides=["demos=[10,50]", "seeds=[0,1]", "episodes=7", "num_envs=3", "videos=1",
                                            "eval_visuals=heldout", "arm_overrides=[\"policy.train.steps=5\"]"])
    specs = sweep_cells(sweep, ["mae", "cnn"], precision="bfloat16")
    assert [(s.arm, s.n, s.seed) for s in specs] == [(a, n, s) for n in (10, 50) for a in ("mae", "cnn") for s in (0, 1)]
    assert {(s.episodes, s.num_envs, s.videos, s.eval_visuals, s.dataset, s.sweep_dir) for s in specs} == {
        (7, 3, 1, "heldout", sweep.dataset, sweep.sweep_dir)}
    assert {s.policy["train"]["steps"] for s in specs} == {5}
    mae = specs[0]
    assert mae.encoder.precision == "bfloat16" and mae.encoder.weights == "weights/mae_full.pt"
    assert specs[2].encoder is None and specs[2].policy["trunk"] == "cnn"
    assert pickle.loads(pickle.dumps(mae)) == mae  # launchers ship specs to other processes


def test_sweep_arms_are_baselines_encoders_controls_and_oracles_unless_listed():
    from robrep.sweep.run import sweep_arms

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        default = compose("sweep")
        issue = compose("sweep", overrides=["encoders=[mae,dift,voltron,clip]", "controls=[]", "oracles=[]"])
        listed = compose("sweep", overrides=["arms=[mae,cnn]"])
        unknown = compose("sweep", overrides=["encoders=[mae,dino]"])
    # the default: every family, clip's patch tokens, each family's random init (the control), the from-scratch CNN,
    # the privileged-state oracle; five seeds on the 100 test layouts
    assert sweep_arms(default) == ["cnn", "mae", "dift", "voltron", "clip", "clip_spatial", "mae_random", "dift_random",
                                   "voltron_random", "clip_random", "state"]
    assert (list(default.seeds), default.episodes, default.eval_split) == ([0, 1, 2, 3, 4], 100, "test")
    assert sweep_arms(issue) == ["cnn", "mae", "dift", "voltron", "clip"]
    assert sweep_arms(listed) == ["mae", "cnn"]
    with pytest.raises(ValueError, match="unknown sweep arms \\['dino'\\]"):
        sweep_arms(unknown)


def test_noise_floor_is_the_spread_over_training_seeds():
    from robrep.sweep.table import noise_floor_by_n

    recs = [record("mae", 10, 0, [1, 0, 0, 0]), record("mae", 10, 1, [1, 1, 1, 0]), record("cnn", 10, 0, [0] * 4),
            record("cnn", 10, 1, [0] * 4), record("cnn", 50, 0, [1] * 4)]
    (row,) = noise_floor_by_n(summarise(recs))  # N=50 has one seed: no spread to measure
    assert row["n"] == 10 and row["arms"] == 2 and row["max_seed_range"] == 0.5 and row["widest_arm"] == "mae"
    assert row["median_seed_range"] == 0.25 and row["max_seed_std"] > row["median_seed_std"] > 0


def test_seeds_by_n_gives_more_seeds_where_asked():
    from omegaconf import OmegaConf

    from robrep.sweep.run import seeds_for

    cfg = OmegaConf.create({"demos": [10, 50, 100], "seeds": [0, 1, 2], "seeds_by_n": {10: [0, 1, 2, 3, 4]}})
    assert seeds_for(cfg, 10) == [0, 1, 2, 3, 4] and seeds_for(cfg, 50) == [0, 1, 2]
    cfg.seeds_by_n = {20: [0]}
    with pytest.raises(ValueError, match="N=\\[20\\]"):
        seeds_for(cfg, 10)


def test_protocol_demos_varied_evaluation_heldout(tmp_path, monkeypatch):
    """Visual-generalisation protocol: demos rendered in ``varied``, cells evaluated in ``heldout``, per-N seeds."""
    monkeypatch.chdir(tmp_path)
    args = ["sweep", *[a for a in SMALL if not a.startswith(("seeds=", "demos="))], "demos=[2,4]", "seeds=[0]",
            "seeds_by_n={2: [0, 1]}", "task.visuals=varied", "eval_visuals=heldout", "dataset=varied.hdf5",
            "sweep_dir=out"]
    assert main(args) == 0
    recs = load_cells("out")
    assert sorted((r["n"], r["seed"]) for r in recs) == [(2, 0), (2, 1), (4, 0)]
    assert {(r["demo_visuals"], r["eval_visuals"]) for r in recs} == {("varied", "heldout")}
    table = results.read_csv("out/table.csv")
    assert {row["eval_visuals"] for row in table} == {"heldout"}
    floor = results.read_csv("out/noise_floor.csv")
    assert [int(f["n"]) for f in floor] == [2]


#: Columns of table.csv that depend on the machine's load or on where the sweep ran, not on what it computed.
TIMING = ("train_seconds", "eval_seconds", "ms_per_step", "policy")


@pytest.mark.parametrize("launcher", ["submitit_local", "ray"])
def test_two_cell_sweep_gives_the_joblib_table_on_cluster_launchers(reach_file, tmp_path, monkeypatch, launcher):
    """The same two cells through joblib and through a cluster launcher (Ray: a private loopback instance; submitit:
    its local executor) give the same table: success per episode, valid MSE, lengths — only timings differ."""
    pytest.importorskip({"ray": "ray", "submitit_local": "submitit"}[launcher])
    monkeypatch.chdir(tmp_path)
    base = [*[a for a in SMALL if not a.startswith(("seeds=", "launcher="))], "seeds=[0,1]", "dataset=two.hdf5"]
    assert main(["sweep", *base, "launcher=joblib", "jobs=2", "sweep_dir=joblib"]) == 0
    assert main(["sweep", *base, f"launcher={launcher}", f"sweep_dir={launcher}"]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    joblib_rows, other_rows = results.read_csv("joblib/table.csv"), results.read_csv(f"{launcher}/table.csv")
    assert len(joblib_rows) == 2 and strip(other_rows) == strip(joblib_rows)
    cells = {r["seed"]: json.loads((tmp_path / launcher / "cells" / f"cnn_n4_s{r['seed']}.json").read_text())
             for r in joblib_rows}
    reference = {s: json.loads((tmp_path / "joblib" / "cells" / f"cnn_n4_s{s}.json").read_text()) for s in cells}
    for s, rec in cells.items():
        assert (rec["episode_success"], rec["episode_length"], rec["valid_mse"]) == (
            reference[s]["episode_success"], reference[s]["episode_length"], reference[s]["valid_mse"])


def test_tuning_chooses_lr_and_weight_decay_on_valid_demos_for_every_seed(tmp_path, monkeypatch):
    """Per (arm, N) each grid point trains on the tuning seed's subset; the lowest valid MSE wins and every seed's
    cell trains with it; the tuning seed's cell reuses the policy tuning trained (no evaluation layout is read)."""
    monkeypatch.chdir(tmp_path)
    args = [a for a in SMALL if a not in ("tune.grid=null", "seeds=[0]")]
    collect_demos("reach", 6, tmp_path / "two.hdf5", image_size=32, subset_sizes=(4,), subset_seeds=(0, 1),
                  progress=False)
    assert main(["sweep", *args, "seeds=[0,1]", "tune.grid.lr=[1e-3,3e-2]", "tune.grid.weight_decay=[1e-4]",
                 "dataset=two.hdf5", "sweep_dir=out"]) == 0
    rows = results.read_csv("out/tuning.csv")
    assert [(r["arm"], r["n"], r["lr"]) for r in rows] == [("cnn", "4", "0.001"), ("cnn", "4", "0.03")]
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert len(chosen) == 1
    assert chosen[0]["lr"] == min(rows, key=lambda r: float(r["valid_mse"]))["lr"]
    recs = [json.loads((tmp_path / f"out/cells/cnn_n4_s{s}.json").read_text()) for s in (0, 1)]
    assert {r["policy_config"]["train"]["lr"] for r in recs} == {float(chosen[0]["lr"])}
    assert len(list((tmp_path / "runs/sweeps/out/policies").glob("*.pt"))) == 3  # 2 grid points + seed 1


def test_a_record_made_with_other_settings_is_stale_and_runs_again(reach_file, tmp_path, monkeypatch, capsys):
    """A record counts as done only for the settings that made it (its policy key): after a change of the training
    settings the same sweep_dir re-runs the cell and replaces the record."""
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *SMALL, f"dataset={reach_file}", "sweep_dir=out"]) == 0
    first = json.loads((tmp_path / "out/cells/cnn_n4_s0.json").read_text())
    changed = [a.replace("steps=4", "steps=6") if a.startswith("arm_overrides=") else a for a in SMALL]
    capsys.readouterr()
    assert main(["sweep", *changed, f"dataset={reach_file}", "sweep_dir=out"]) == 0
    assert "1 records were made with other settings (policy key differs) and run again: cnn_n4_s0" in capsys.readouterr().out
    second = json.loads((tmp_path / "out/cells/cnn_n4_s0.json").read_text())
    assert second["policy_key"] != first["policy_key"] and second["steps"] == 6


def test_full_sweep_pointer_names_the_n_done_and_the_wall_time(tmp_path):
    from robrep import results
    from robrep.sweep.quickstart import full_sweep_pointer

    assert "not found" in full_sweep_pointer(tmp_path / "none")
    results.write_csv([{"wall_min": 30.0}, {"wall_min": 60.0}], tmp_path / "runs.csv")
    assert "no finished cell yet" in full_sweep_pointer(tmp_path)
    results.write_csv([{"arm": "mae", "n": 50}, {"arm": "cnn", "n": 10}], tmp_path / "summary.csv")
    line = full_sweep_pointer(tmp_path)
    assert "N = 10, 50 so far" in line and "1.5 h of wall time over 2 invocation(s)" in line


def test_the_language_preset_pairs_each_language_arm_with_its_language_free_twin():
    """preset=language on push_color: voltron_nolang withholds the instruction from the encoder (and so from the
    feature cache key), clip_text adds the instruction's embedding to the policy; the pairs compare each twin."""
    from robrep.sweep.run import sweep_arms, sweep_cells

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        sweep = compose("sweep", overrides=["task=push_color", "preset=language", "seeds=[0]"])
    assert sweep.name == "push_color_language" and list(sweep.demos) == [10, 50]
    arms = sweep_arms(sweep)
    specs = {s.arm: s for s in sweep_cells(sweep, arms, precision="float32") if s.n == 10}
    assert specs["voltron"].use_language and not specs["voltron_nolang"].use_language
    assert specs["clip_text"].policy["instruction_input"] and not specs["clip"].policy["instruction_input"]
    assert ["voltron", "voltron_nolang"] in [list(p) for p in sweep.pairs]
    assert ["clip_text", "clip"] in [list(p) for p in sweep.pairs]


def test_the_heldout_protocol_under_the_benchmark_rules():
    """preset=visual_heldout_fair: demos varied, evaluation held out, the task's leave-one-task-out weights — and the
    benchmark's rules otherwise (default arms with their random-init controls, tuning, chunks, test layouts)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        sweep = compose("sweep", overrides=["task=pick_place", "preset=visual_heldout_fair"])
        default = compose("sweep", overrides=["task=pick_place"])
    assert (sweep.task.visuals, sweep.eval_visuals) == ("varied", "heldout")
    assert sweep.weights_budget == "loto_pick_place_quick" and sweep.dataset == "data/pick_place_varied.hdf5"
    for key in ("encoders", "controls", "baselines", "seeds", "eval_split", "tune", "arm_overrides", "episodes"):
        assert sweep[key] == default[key], key


def test_the_state_oracle_arm_reads_the_state_and_stays_out_of_the_comparisons():
    """arm=state: no encoder, obs_keys.proprio=[state] (the arm overrides the obs_keys group); the default AUC
    comparisons and the report's frozen / from-scratch groups leave it out."""
    from robrep.sweep.run import sweep_cells
    from robrep.sweep.table import default_auc_pairs

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        sweep = compose("sweep", overrides=["arms=[state,cnn,mae,mae_random]", "seeds=[0]", "demos=[10]"])
    specs = {s.arm: s for s in sweep_cells(sweep, list(sweep.arms), precision="float32")}
    assert specs["state"].encoder is None and specs["state"].policy["trunk"] == "none"
    assert specs["state"].obs_keys.proprio == ("state",) and specs["cnn"].obs_keys.proprio == ("proprio",)
    assert default_auc_pairs(["state", "cnn", "mae", "mae_random"]) == [("mae", "cnn"), ("mae", "mae_random")]


def test_a_staged_sweep_collects_one_file_for_all_its_stages(tmp_path, monkeypatch):
    """The first stage of a sweep run N by N (demos=[2]) collects the file for every N of ``collect.demos`` too, so
    the next stage (demos=[4]) reads the same bytes — the valid demos are a fraction of the whole file and each cell's
    policy key hashes it — instead of failing on missing subsets or re-collecting a file that makes stage 1 stale."""
    monkeypatch.chdir(tmp_path)
    from omegaconf import OmegaConf

    from robrep.data.demo_file import DemoFile
    from robrep.digest import file_hash
    from robrep.sweep.run import ensure_dataset

    base = {"dataset": "reach.hdf5", "seeds": [0, 1], "progress": False,
            "collect": {"demos": [2, 4], "valid_fraction": 0.25, "seed_start": 0, "noise_std": 0.0},
            "task": {"name": "reach", "image_size": 32}}
    first = ensure_dataset(OmegaConf.create({**base, "demos": [2]}))
    digest = file_hash(str(first))
    with DemoFile(first) as f:
        assert {"train_n2_seed0", "train_n4_seed1"} <= set(f.filter_keys) and len(f.demo_names("valid")) >= 1
    assert ensure_dataset(OmegaConf.create({**base, "demos": [4]})) == first and file_hash(str(first)) == digest


def test_the_run_log_keeps_a_killed_invocations_wall_time(tmp_path):
    """runs.csv gets this invocation's row when it starts; a heartbeat keeps its wall time and finished cells
    current, so a SIGKILLed invocation (no handler runs) still counts; the next invocation marks its row killed."""
    import time as _time
    from types import SimpleNamespace

    from robrep import results
    from robrep.sweep.run_log import RunLog

    first = RunLog(tmp_path, cells=3, jobs=2)
    (row,) = results.read_csv(tmp_path / "runs.csv")
    assert (row["status"], row["cells"], row["finished_here"]) == ("running", "3", "0")
    cells = [SimpleNamespace(done=False), SimpleNamespace(done=False)]
    first.set_cells(3, cells)
    with first.heartbeat(every_s=0.05):
        cells[0].done = True
        _time.sleep(0.8)  # > 0.005 min: wall_min has two decimals
    (row,) = results.read_csv(tmp_path / "runs.csv")
    assert (row["status"], row["done_before"], row["finished_here"]) == ("running", "1", "1")
    assert float(row["wall_min"]) > 0  # then "killed": no final update
    second = RunLog(tmp_path, cells=3, jobs=2)
    second.set_cells(3, [])
    assert second.update("finished") == pytest.approx(float(row["wall_min"]))
    rows = results.read_csv(tmp_path / "runs.csv")
    assert [r["status"] for r in rows] == ["killed", "finished"] and rows[1]["done_before"] == "3"


def test_aggregation_removes_an_auc_table_the_cells_no_longer_give(tmp_path):
    """An arm reaching a new N first shrinks the grid every arm has finished below 2 N: the AUC tables of the earlier
    aggregation would describe older cells, so they go (and come back when the cells do)."""
    from robrep.sweep.run import aggregate

    def write(recs):
        for r in recs:
            results.write_json(r, cell_path(tmp_path, r["arm"], r["n"], r["seed"]))

    write([record(a, n, s, [int(a == "mae" and s <= n % 7)] * 4 + [0]) for a in ("mae", "cnn") for n in (10, 50)
           for s in (0, 1)])
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("sweep", overrides=[f"sweep_dir={tmp_path}", "pairs=[]"])
    assert {"auc", "auc_paired"} <= set(aggregate(cfg)) and (tmp_path / "auc.csv").exists()
    write([record("dift", n, s, [1, 0, 0, 0, 0]) for n in (10, 500) for s in (0, 1)])  # grid is now N = 10 only
    paths = aggregate(cfg)
    assert "auc" not in paths and not (tmp_path / "auc.csv").exists() and not (tmp_path / "auc_paired.csv").exists()
    assert (tmp_path / "summary.csv").exists()
