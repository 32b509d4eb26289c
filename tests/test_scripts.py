"""scripts/cross_task_sweeps.sh, the cross-task campaign's driver, with ``R=echo`` in place of ``robrep``: which
``robrep sweep`` commands it runs, in which order, in which lane (nothing is trained here)."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cross_task_sweeps.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, "R": "echo", **env}, capture_output=True,
                          text=True, timeout=60)


def sweeps(stdout: str) -> list[tuple[str, str]]:
    """(sweep_dir, demos) of every echoed `robrep sweep` command, in order."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("sweep "):
            words = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
            out.append((words["sweep_dir"].rsplit("/", 1)[-1], words["demos"]))
    return out


def test_stages_run_sweep_by_sweep_and_skip_the_n_a_protocol_lacks():
    proc = run(SWEEPS="pick_place_fair pick_place_varied_heldout_fair", STAGES="10 500")
    assert proc.returncode == 0, proc.stderr
    assert sweeps(proc.stdout) == [("pick_place_fair", "[10]"), ("pick_place_fair", "[500]"),
                                   ("pick_place_varied_heldout_fair", "[10]")]  # the heldout protocol has no N = 500
    assert "collect.demos=[10,50,100,500]" in proc.stdout and "collect.demos=[10,50]" in proc.stdout


def test_lanes_run_each_lane_in_its_own_order():
    proc = run("lanes", LANES="pick_place_fair push_color_fair | mw_push_fair", STAGES="10 500")
    assert proc.returncode == 0, proc.stderr
    got = sweeps(proc.stdout)
    assert sorted(got) == sorted([("pick_place_fair", "[10]"), ("pick_place_fair", "[500]"),
                                  ("push_color_fair", "[10]"), ("push_color_fair", "[500]"),
                                  ("mw_push_fair", "[10]"), ("mw_push_fair", "[500]")])
    lane = [s for s in got if s[0] != "mw_push_fair"]  # within a lane, sweeps and stages keep their order
    assert lane == [("pick_place_fair", "[10]"), ("pick_place_fair", "[500]"), ("push_color_fair", "[10]"),
                    ("push_color_fair", "[500]")]


def test_an_unknown_sweep_fails_and_a_failing_lane_fails_the_whole():
    assert run(SWEEPS="no_such_sweep").returncode != 0
    proc = run("lanes", LANES="pick_place_fair | no_such_sweep", STAGES="10")
    assert proc.returncode != 0 and "unknown sweep no_such_sweep" in proc.stderr
    assert sweeps(proc.stdout) == [("pick_place_fair", "[10]")]  # the other lane still ran


def test_status_counts_the_committed_cells():
    proc = run("status", SWEEPS="pick_place_fair", STAGES="10")
    assert proc.returncode == 0 and proc.stdout.startswith("pick_place_fair: N=10 ")
    assert int(proc.stdout.split()[-1]) == len(list((SCRIPT.parent.parent / "results/sweeps/pick_place_fair/cells")
                                                    .glob("*_n10_s*.json")))


def test_arms_runs_a_subset_first_and_is_left_out_when_empty():
    proc = run(SWEEPS="push_color_fair", STAGES="500", ARMS="voltron,voltron_nolang")
    assert proc.returncode == 0, proc.stderr
    assert "arms=[voltron,voltron_nolang]" in proc.stdout and sweeps(proc.stdout) == [("push_color_fair", "[500]")]
    assert "arms=" not in run(SWEEPS="push_color_fair", STAGES="500").stdout


def test_arms_replaces_a_sweeps_own_arm_list_instead_of_adding_a_second():
    own = run(SWEEPS="push_matched", STAGES="10")
    assert own.returncode == 0, own.stderr
    assert own.stdout.count("arms=") == 1 and "arms=[mae,dift,voltron,clip_spatial]" in own.stdout
    subset = run(SWEEPS="push_matched", STAGES="10", ARMS="dift")
    assert subset.stdout.count("arms=") == 1 and "arms=[dift]" in subset.stdout  # Hydra would reject two overrides


def test_matched_pretraining_runs_the_chosen_lanes_in_chunks_that_resume_the_furthest(tmp_path):
    """scripts/pretrain_matched.sh with ``R=echo``: one lane left empty runs nothing; the other goes chunk by chunk,
    each chunk resuming the one before, from the furthest checkpoint already in DIR."""
    script = SCRIPT.parent / "pretrain_matched.sh"
    (tmp_path / "clip_50.pt").write_bytes(b"")  # a finished chunk of an earlier session
    env = {**os.environ, "R": "echo", "STEPS": "150", "CHUNK": "50", "DIR": str(tmp_path), "LOGS": str(tmp_path),
           "LANE_A": "", "LANE_B": "clip"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "pretrain_matched_dift.log").exists()
    lines = (tmp_path / "pretrain_matched_clip.log").read_text().splitlines()
    assert [w for w in lines[0].split() if w.startswith(("resume=", "steps=", "out="))] == [
        f"resume={tmp_path}/clip_50.pt", "steps=+50", f"out={tmp_path}/clip_100.pt"]
    assert len(lines) == 2
    assert f"resume={tmp_path}/clip_100.pt" in lines[1] and f"out={tmp_path}/clip_150.pt" in lines[1]


def test_matched_pretraining_publishes_the_finished_run_and_its_earlier_chunk(tmp_path):
    """PUBLISH=1: a finished family's last chunk becomes <family>_matched.* and its chunk at step EARLY
    <family>_matched_<EARLY>.* (what the compute bought is read against it); nothing is re-trained."""
    script = SCRIPT.parent / "pretrain_matched.sh"
    runs, weights = tmp_path / "runs", tmp_path / "weights"
    runs.mkdir(), weights.mkdir()
    for step in (50, 150):
        for x in ("pt", "loss.csv", "loss.png"):
            (runs / f"clip_{step}.{x}").write_text(f"{step}")
    env = {**os.environ, "R": "echo", "STEPS": "150", "EARLY": "50", "DIR": str(runs), "LOGS": str(tmp_path),
           "WEIGHTS": str(weights), "PUBLISH": "1", "LANE_A": "", "LANE_B": "clip"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "pretrain_matched_clip.log").exists()  # finished: no chunk ran
    assert (weights / "clip_matched.pt").read_text() == "150"
    assert (weights / "clip_matched_50.loss.csv").read_text() == "50"
