"""robrep.eval: interval statistics, batched rollouts on evaluation seeds, and the ``robrep eval`` command."""

import json
import math
import sys
import types

import imageio.v2 as imageio
import numpy as np
import pytest
from scipy.stats import norm

from envs.experts import make_expert
from envs.registration import make_env
from robrep import results
from robrep.eval import noise_floor, paired_bootstrap_diff, wilson_interval
from robrep.seeds import DEMO_SEEDS, eval_seeds

IMAGE = 24  # px: small renders keep the rollouts at a fraction of a second


# ----------------------------------------------------------------------------- stub policies (the interface)
class ExpertPolicy:
    """The scripted expert behind the policy interface: one expert per env, reading obs["state"]."""

    def __init__(self, task: str = "reach", demo_seeds=None) -> None:
        self.task, self.env_kwargs = task, {"image_size": IMAGE}
        if demo_seeds is not None:
            self.demo_seeds = list(demo_seeds)
        self._env = make_env(task, **self.env_kwargs)  # the experts read its state_spec / max_delta
        self.batches: list[int] = []
        self.reset()

    def reset(self, num_envs: int = 1) -> None:
        self.experts = [make_expert(self._env) for _ in range(num_envs)]

    def reset_env(self, i: int) -> None:
        self.experts[i].reset()

    def act(self, obs):
        assert obs["image"].dtype == np.uint8 and obs["image"].shape[1:] == (IMAGE, IMAGE, 3)
        assert len(obs["image"]) == len(obs["proprio"]) == len(self.experts)
        self.batches.append(len(obs["image"]))
        return np.stack([e.act({"state": s}) for e, s in zip(self.experts, obs["state"])])

    def close(self) -> None:
        self._env.close()


class RandomPolicy:
    """Uniform random actions, reseeded on reset (so two evaluations draw the same actions)."""

    task, env_kwargs = "reach", {"image_size": IMAGE}

    def reset(self, num_envs: int = 1) -> None:
        self.rng = np.random.default_rng(0)

    def reset_env(self, i: int) -> None:
        pass

    def act(self, obs):
        return self.rng.uniform(-1, 1, (len(obs["image"]), 4)).astype(np.float32)


@pytest.fixture(scope="module")
def expert():
    policy = ExpertPolicy()
    yield policy
    policy.close()


# ----------------------------------------------------------------------------- stats
def wilson_reference(k: int, n: int, z: float = norm.ppf(0.975)) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@pytest.mark.parametrize("k, n, expected", [(0, 10, (0.0, 0.2775)), (5, 10, (0.2366, 0.7634)),
                                            (10, 10, (0.7225, 1.0)), (50, 100, (0.4038, 0.5962))])
def test_wilson_interval_known_values(k, n, expected):
    low, high = wilson_interval(k, n)
    assert (low, high) == pytest.approx(expected, abs=1e-4)  # published 4-digit values
    assert (low, high) == pytest.approx(wilson_reference(k, n), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_interval_edges_and_errors():
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0
    assert wilson_interval(5, 10, confidence=0.99)[0] < wilson_interval(5, 10)[0]
    for k, n in [(0, 0), (3, 2), (-1, 5)]:
        with pytest.raises(ValueError):
            wilson_interval(k, n)


def test_paired_bootstrap_identical_and_opposite_arms():
    rng = np.random.default_rng(1)
    a = rng.random(40) < 0.5
    same = paired_bootstrap_diff(a, a, num_resamples=2000)
    assert same["diff"] == 0.0 and same["ci_low"] <= 0.0 <= same["ci_high"]
    best = paired_bootstrap_diff(np.ones(40), np.zeros(40), num_resamples=2000)
    assert best["diff"] == 1.0 and best["ci_low"] == best["ci_high"] == 1.0


def test_paired_bootstrap_hierarchical_pairs_by_episode():
    rng = np.random.default_rng(2)
    layout_hard = rng.random(30) < 0.5                    # (episodes,): layouts both arms fail on
    b = np.tile(~layout_hard, (3, 1)).astype(float)       # (train_seeds=3, episodes=30)
    a = b.copy()
    a[:, np.flatnonzero(layout_hard)[:6]] = 1.0           # a also solves 6 of the hard layouts, every seed
    out = paired_bootstrap_diff(a, b, num_resamples=4000, seed=3)
    assert out["diff"] == pytest.approx(6 / 30) and out["a_mean"] - out["b_mean"] == pytest.approx(6 / 30)
    # Paired: only the 6 discordant layouts vary between resamples, so a 0.2 gain on 30 episodes is resolved
    # (unpaired, each arm's own layout variance, ~±0.18 at 95 %, would swamp it).
    assert 0.0 < out["ci_low"] < out["diff"] < out["ci_high"] < 0.4
    assert out == paired_bootstrap_diff(a, b, num_resamples=4000, seed=3)  # seeded
    with pytest.raises(ValueError):
        paired_bootstrap_diff(a, b[:, :-1])


def test_noise_floor():
    out = noise_floor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    assert out["seeds"] == 3 and out["mean"] == pytest.approx(0.5)
    assert out["std"] == pytest.approx(0.5) and out["range"] == 1.0 and (out["min"], out["max"]) == (0.0, 1.0)
    assert out["binomial_std"] == pytest.approx(0.25)
    assert noise_floor([0.4])["std"] == 0.0


# ----------------------------------------------------------------------------- rollouts
def test_evaluate_expert_succeeds_on_eval_seeds(expert, tmp_path):
    from robrep.eval import evaluate

    expert.batches.clear()
    result = evaluate(expert, episodes=5, seed_start=3, num_envs=2, video_episodes=2, progress=False)
    assert result.seeds == eval_seeds(5, 3) and [r.index for r in result.records] == list(range(5))
    assert result.success_rate == 1.0 and result.successes == 5 and result.ci[1] == 1.0
    assert all(1 <= r.length < 60 for r in result.records)
    assert result.mean_length == pytest.approx(np.mean([r.length for r in result.records]))
    assert set(expert.batches) == {2}  # one batched act per step, padded to num_envs at the tail
    assert result.steps >= len(expert.batches)  # several env steps per act call
    assert len(result.frames) == 2
    for clip, rec in zip(result.frames, result.records):
        assert clip.shape == (rec.length + 1, IMAGE, IMAGE, 3) and clip.dtype == np.uint8
    paths = result.write_videos(tmp_path / "reach.gif")
    assert [p.name for p in paths] == [f"reach.ep{i}_seed{s}.gif" for i, s in enumerate(eval_seeds(2, 3))]
    assert len(imageio.mimread(paths[0])) == result.records[0].length + 1
    row = result.to_dict()
    assert json.loads(json.dumps(row))["records"][0]["seed"] == 1_000_003


def test_evaluate_random_is_worse_and_deterministic():
    from robrep.eval import evaluate

    first = evaluate(RandomPolicy(), episodes=4, num_envs=3, max_steps=15, progress=False)
    assert first.success_rate < 1.0 and all(r.length <= 15 for r in first.records)
    again = evaluate(RandomPolicy(), episodes=4, num_envs=3, max_steps=15, progress=False)
    assert again.records == first.records


def test_evaluate_is_deterministic_and_checks_demo_seeds(expert):
    from robrep.eval import evaluate

    a = evaluate(expert, episodes=3, num_envs=3, progress=False)
    b = evaluate(expert, episodes=3, num_envs=2, progress=False)  # another batching, same layouts
    assert a.records == b.records
    assert set(eval_seeds(3)).isdisjoint(DEMO_SEEDS)
    assert evaluate(expert, episodes=1, demo_seeds=range(10), progress=False).demo_seeds_checked == 10
    with pytest.raises(ValueError, match="both demonstrations and evaluation"):
        evaluate(expert, episodes=2, demo_seeds=[5, eval_seeds(2)[1]], progress=False)
    recorded = ExpertPolicy(demo_seeds=[eval_seeds(1)[0]])  # the policy's own record is checked too
    try:
        with pytest.raises(ValueError, match="both demonstrations and evaluation"):
            evaluate(recorded, episodes=1, progress=False)
    finally:
        recorded.close()


# ----------------------------------------------------------------------------- robrep eval
def test_eval_command(tmp_path, monkeypatch, capsys):
    from robrep.cli import main

    loaded = []

    def load_policy(path, device="cpu"):
        loaded.append((str(path), device))
        policy = ExpertPolicy()
        policy.meta = {"hash": "abc123"}
        return policy

    monkeypatch.setitem(sys.modules, "policies", types.SimpleNamespace(load_policy=load_policy))
    monkeypatch.chdir(tmp_path)
    args = ["eval", "checkpoint=ckpt/reach_stub.pt", "episodes=3", "num_envs=2", "videos=1", "progress=false",
            "video_format=gif"]
    assert main(args) == 0
    assert loaded == [("ckpt/reach_stub.pt", "cpu")]
    lines = capsys.readouterr().out.splitlines()
    assert "reach: success 3/3 = 100.0%" in lines[0] and "ms/step" in lines[0]
    csv = tmp_path / "runs/eval/reach_stub.csv"
    rows = results.read_csv(csv)
    assert len(rows) == 1
    row = rows[0]
    assert (row["policy"], row["policy_hash"], row["task"], row["episodes"], row["successes"]) == \
        ("ckpt/reach_stub.pt", "abc123", "reach", "3", "3")
    assert float(row["ci_low"]) == pytest.approx(wilson_interval(3, 3)[0], abs=1e-4)
    record = json.loads((tmp_path / row["episodes_json"]).read_text())
    assert [r["seed"] for r in record["records"]] == eval_seeds(3)
    assert record["videos"] == ["runs/eval/reach_stub.ep0_seed1000000.gif"]
    assert (tmp_path / record["videos"][0]).stat().st_size > 0

    # Same protocol again: the row is replaced; another protocol: appended.
    assert main(args) == 0
    assert len(results.read_csv(csv)) == 1
    assert main(args[:2] + ["episodes=2", "num_envs=2", "progress=false", f"out={tmp_path}/all.csv"]) == 0
    assert main(args[:2] + ["episodes=1", "seed_start=5", "progress=false", f"out={tmp_path}/all.csv"]) == 0
    assert [r["seed_start"] for r in results.read_csv(tmp_path / "all.csv")] == ["0", "5"]


def test_csv_comments_round_trip(tmp_path):
    path = results.write_csv([{"a": 1}], tmp_path / "t.csv", comments=["python make.py --x", "second # line"])
    assert results.read_csv_comments(path) == ["python make.py --x", "second # line"]
    assert results.read_csv(path) == [{"a": "1"}]
