"""Ground-truth encoder diagnostics: keypoints project onto their parts, nearest-feature matching finds unique
features, PCK and the effective rank match hand-computed values, and the rank correlation reads a sweep's AUC."""

import numpy as np
import pytest
import torch

from benchmarks.encoder_diagnostics import rank_correlation
from envs import make_env
from robrep.probe.correspondence import (effective_rank, keypoint_frames, keypoint_geoms, match_keypoints, pck,
                                         project)
from robrep.results import write_csv
from robrep.seeds import DEV_SEEDS


def test_the_camera_target_projects_to_the_image_centre():
    env = make_env("push", image_size=64)
    try:
        env.reset(seed=DEV_SEEDS[0])
        base = env.unwrapped
        cam = base.data.cam("front")
        ahead = cam.xpos - cam.xmat.reshape(3, 3)[:, 2] * 0.7  # a point on the view axis (cameras look along -z)
        xy, depth = project(base.model, base.data, "front", ahead[None], 64, 64)
        np.testing.assert_allclose(xy[0], [32.0, 32.0], atol=1e-6)
        assert depth[0] == pytest.approx(0.7)
    finally:
        env.close()


def test_visible_keypoints_lie_on_their_parts():
    frames = keypoint_frames("push", list(DEV_SEEDS[:6]), max_steps=20, image_size=96)
    assert frames.names == ["block", "goal", "gripper_wrist", "gripper_palm"]
    assert frames.images.shape == (6, 96, 96, 3) and frames.points.shape == (6, 4, 2)
    block, goal = frames.names.index("block"), frames.names.index("goal")
    for i in range(6):
        for k, colour in ((block, "red"), (goal, "yellow")):
            if not frames.visible[i, k]:
                continue
            x, y = frames.points[i, k].astype(int)
            r, g, b = frames.images[i, y, x].astype(int)
            assert (r > 120 and g < 90) if colour == "red" else (r > 150 and g > 150 and b < 90), (i, k, r, g, b)
    assert frames.visible[:, block].mean() > 0.5


def test_keypoint_geoms_names_every_block_of_push_color():
    env = make_env("push_color")
    try:
        names = list(keypoint_geoms(env.unwrapped.model))
    finally:
        env.close()
    assert names[:3] == ["block_red", "block_green", "block_blue"] and "goal" in names


def test_unique_features_match_exactly():
    size = 16
    tokens = torch.randn(size * size, 8)  # one distinct feature per pixel: the grid is the image
    points = np.array([[0.5, 0.5], [7.5, 3.5], [15.5, 12.5]])
    found = match_keypoints(tokens, tokens, (size, size), points, size)
    np.testing.assert_allclose(found, points)
    shifted = torch.roll(tokens.reshape(size, size, 8), shifts=(2, 1), dims=(0, 1)).reshape(-1, 8)
    found = match_keypoints(tokens, shifted, (size, size), points[:2], size)  # frame B = A moved 1 px right, 2 down
    np.testing.assert_allclose(found, points[:2] + [1, 2])


def test_pck_and_effective_rank_by_hand():
    assert pck(np.array([1.0, 3.0, 5.0, 9.0]), (2, 4, 8)) == {2: 0.25, 4: 0.5, 8: 0.75}
    x = np.concatenate([np.eye(3), -np.eye(3)])  # centred, three equal singular values
    assert effective_rank(x) == pytest.approx(3.0)
    assert effective_rank(np.outer(np.arange(5.0), np.ones(4))) == pytest.approx(1.0)


def test_rank_correlation_reads_the_primary_metric(tmp_path):
    arms = ["mae", "dift", "voltron", "clip_spatial", "mae_random"]
    auc = [0.45, 0.48, 0.47, 0.40, 0.38]
    write_csv([{"arm": a, "ns": "10 50", "auc": v} for a, v in zip(arms, auc)], tmp_path / "auc.csv")
    families = {"mae": ("mae", "w"), "dift": ("dift", "w"), "voltron": ("voltron", "w"), "clip_spatial": ("clip", "w"),
                "mae_random": ("mae", "random")}
    rows = [{"encoder": enc, "weights": w, "default": True, "group": g, "pck4": v, "pck8": v, "erank_tokens": -v}
            for a, v in zip(arms, auc) for enc, w in [families[a]] for g in ("all", "block")]
    out = {r["diagnostic"]: r for r in rank_correlation(rows, tmp_path / "auc.csv", 200, np.random.default_rng(0))}
    assert out["pck4"]["spearman_rho"] == 1.0 and out["erank_tokens"]["spearman_rho"] == -1.0
    assert out["pck4"]["n_arms"] == 5 and out["pck4"]["p_permutation"] == pytest.approx(2 / 120, abs=1e-4)  # exact: 2 of the 5! pairings are as extreme


def test_choice_tests_select_on_one_half_and_test_on_the_other():
    from benchmarks.encoder_diagnostics import choice_tests

    pairs = 60
    counts = np.full(pairs, 4.0)
    default = ("layer=6", np.full(pairs, 2.0), counts)  # PCK 0.5 everywhere
    better = ("layer=3", np.full(pairs, 4.0), counts)   # PCK 1.0 everywhere
    lucky = ("layer=1", np.r_[np.full(30, 4.0), np.full(30, 2.0)], counts)  # best only on the selection half
    rows = choice_tests({"a": [default, better], "b": [default, lucky]}, 500, np.random.default_rng(0))
    a, b = rows
    assert (a["selected"], a["diff"], a["resolved"]) == ("layer=3", 0.5, True)
    assert b["selected"] == "layer=1" and b["diff"] == 0.0 and not b["resolved"]  # no gain where it was not chosen


def test_rank_correlation_across_tasks_averages_within_task_ranks(tmp_path):
    """Two tasks, rows read back from CSV (strings): a diagnostic in each task's AUC order has mean ρ +1 and a small
    permutation p; one reversed in one task and in order in the other averages to 0; a task with < 3 shared arms is
    left out, and fewer than two tasks is an error."""
    from benchmarks.encoder_diagnostics import rank_correlation_across
    from robrep.results import read_csv

    families = {"mae": ("mae", "w"), "dift": ("dift", "w"), "voltron": ("voltron", "w"), "clip_spatial": ("clip", "w"),
                "mae_random": ("mae", "random")}
    arms = list(families)
    tasks = {}
    for task, auc, sign in (("a", [0.45, 0.48, 0.47, 0.40, 0.38], 1), ("b", [0.1, 0.3, 0.2, 0.5, 0.4], -1)):
        write_csv([{"arm": a, "ns": "10 50", "auc": v} for a, v in zip(arms, auc)], tmp_path / f"auc_{task}.csv")
        rows = [{"encoder": enc, "weights": w, "default": True, "group": "all", "pck4": v, "pck8": sign * v}
                for a, v in zip(arms, auc) for enc, w in [families[a]]]
        write_csv(rows, tmp_path / f"corr_{task}.csv")
        tasks[task] = (read_csv(tmp_path / f"corr_{task}.csv"), tmp_path / f"auc_{task}.csv")
    out = {r["diagnostic"]: r for r in rank_correlation_across(tasks, 500, np.random.default_rng(0))}
    assert out["pck4"]["mean_spearman_rho"] == 1.0 and out["pck4"]["per_task_rho"] == "a=+1.000 b=+1.000"
    assert out["pck4"]["p_permutation"] < 0.01 and out["pck4"]["n_tasks"] == 2
    assert out["pck8"]["mean_spearman_rho"] == 0.0 and out["pck8"]["p_permutation"] > 0.5
    assert "pck4_block" not in out  # no block rows: skipped
    with pytest.raises(ValueError, match=">= 2 tasks"):
        rank_correlation_across({"a": tasks["a"]}, 100, np.random.default_rng(0))
    # another closed-loop metric as rows (the success at one N, `--n`): the same result from the same values
    as_rows = {t: (corr, read_csv(auc)) for t, (corr, auc) in tasks.items()}
    again = {r["diagnostic"]: r for r in rank_correlation_across(as_rows, 500, np.random.default_rng(0))}
    assert again["pck4"] == out["pck4"] and again["pck8"]["mean_spearman_rho"] == 0.0
