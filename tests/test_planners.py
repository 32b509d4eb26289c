"""Latent world model and CEM planner: CEM on analytic problems (known optimum, bounds, warm start), batched
rollout shapes, latent maps, multi-step training on a known linear system, checkpoints, and `robrep plan`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from planners.cem import CEM, CEMConfig
from planners.world_model import load_world_model, save_world_model
from planners.data import EpisodeCells, Transitions
from planners.dynamics import LatentDynamics, PooledMLP, TokenPredictor, build_dynamics
from planners.latent import LatentMap
from planners.mpc import LatentPlanner
from planners.fit import DynamicsTrainConfig, fit_dynamics, horizon_errors
from robrep.results import read_csv, write_csv


def quadratic(target: torch.Tensor):
    """cost(actions (B, K, H, A)) = squared distance of every step's action to ``target (H, A)``."""
    return lambda actions: ((actions - target) ** 2).flatten(2).sum(-1)


def test_cem_finds_the_known_optimum_and_respects_bounds():
    target = torch.tensor([[0.3, -0.6], [0.1, 0.8], [-0.4, 0.2]])  # (H=3, A=2), inside [-1, 1]
    cem = CEM(CEMConfig(horizon=3, samples=200, elites=20, iterations=8, init_std=0.8), 2, batch=2,
              generator=torch.Generator().manual_seed(0))
    seen = []

    def cost(actions):
        seen.append(actions)
        return quadratic(target)(actions)

    plan = cem.plan(cost)
    assert plan.shape == (2, 3, 2)
    torch.testing.assert_close(plan, target.expand(2, 3, 2), atol=0.05, rtol=0)
    assert all(a.shape == (2, 200, 3, 2) for a in seen) and len(seen) == 8  # one batched call per iteration
    assert all(float(a.min()) >= -1.0 and float(a.max()) <= 1.0 for a in seen)
    # an optimum outside the bounds ends on the bound
    far = torch.tensor([[2.0, -3.0]] * 3)
    low = CEM(CEMConfig(horizon=3, samples=100, elites=10, iterations=10, low=-0.5, high=0.5), 2,
              generator=torch.Generator().manual_seed(1)).plan(quadratic(far))
    assert float(low.abs().max()) <= 0.5
    torch.testing.assert_close(low, torch.tensor([[[0.5, -0.5]] * 3]), atol=0.05, rtol=0)


def test_cem_warm_start_shifts_the_previous_plan():
    target = torch.tensor([[0.5], [-0.5], [0.25], [0.75]])
    cem = CEM(CEMConfig(horizon=4, samples=64, elites=8, iterations=5), 1, generator=torch.Generator().manual_seed(0))
    plan = cem.plan(quadratic(target))
    cem.shift(1)
    torch.testing.assert_close(cem.mean[0, :3], plan[0, 1:])
    torch.testing.assert_close(cem.mean[0, 3], plan[0, 3])  # the tail repeats the last action
    # the shifted mean is the first candidate of the next call: a warm planner starts where it left off
    calls = []
    cem.plan(lambda a: calls.append(a[:, 0].clone()) or quadratic(target)(a))
    torch.testing.assert_close(calls[0][0, :3], plan[0, 1:])
    cem.reset_env(0)
    assert float(cem.mean.abs().sum()) == 0.0
    with pytest.raises(ValueError, match="elites"):
        CEMConfig(samples=8, elites=9)
    with pytest.raises(ValueError, match="low < high"):
        CEMConfig(low=1.0, high=-1.0)


class PointMass(LatentDynamics):
    """Analytic z' = z + 0.1 a (2-D): the optimal plan to a goal is known in closed form."""

    def forward(self, z, a):
        return z + 0.1 * a[..., :2]


def test_cem_mpc_drives_a_point_mass_to_its_goal():
    model, goal = PointMass(), torch.tensor([[0.25, -0.15]])
    cem = CEM(CEMConfig(horizon=5, samples=128, elites=16, iterations=4), 4, generator=torch.Generator().manual_seed(0))
    z = torch.zeros(1, 2)

    def cost(actions):
        b, k, h, a = actions.shape
        pred = model.rollout(z[:, None].expand(b, k, 2).reshape(b * k, 2), actions.reshape(b * k, h, a))
        return ((pred[:, -1] - goal) ** 2).sum(-1).reshape(b, k)

    for _ in range(8):
        action = cem.plan(cost)[:, 0]
        cem.shift(1)
        z = model(z, action)
    assert float((z - goal).norm()) < 0.03  # 0.29 away at the start, at most 0.1·√2 per step


@pytest.mark.parametrize("name, shape", [("pooled_mlp", (20,)), ("token_transformer", (5, 8))])
def test_batched_rollout_shapes_and_identity_start(name, shape):
    torch.manual_seed(0)
    model = build_dynamics(name, shape, 4)
    z0, actions = torch.randn(7, *shape), torch.rand(7, 6, 4) * 2 - 1
    out = model.rollout(z0, actions)
    assert out.shape == (7, 6, *shape)
    torch.testing.assert_close(out[:, 0], z0)  # zero-initialised residual: starts as z' = z
    with pytest.raises(ValueError, match="actions must be"):
        model.rollout(z0, actions[:3])
    with pytest.raises(ValueError, match="flat latents|token latents"):
        build_dynamics(name, (4, 4, 4), 4)


def test_latent_map_shapes_and_standardisation():
    torch.manual_seed(0)
    tokens, proprio = torch.randn(50, 36, 12), torch.randn(50, 4) * 3 + 1
    for kind, want in (("pooled", (3 * 3 * 5 + 4,)), ("tokens", (10, 5))):
        latent = LatentMap(kind, 12, (6, 6), 4, grid=3, dim=5, use_proprio=True)
        with pytest.raises(RuntimeError, match="fit"):
            latent(tokens, proprio)
        latent.fit(latent.cells(tokens), proprio)
        z = latent(tokens, proprio)
        assert latent.shape == want and z.shape == (50, *want)
        if kind == "pooled":
            pcs, prop = z[:, :45].reshape(50 * 9, 5), z[:, 45:]
        else:
            pcs, prop = z[:, :9].reshape(50 * 9, 5), z[:, 9, :4]
        torch.testing.assert_close(pcs.std(0), torch.ones(5), atol=0.01, rtol=0)  # each PC: unit variance over cells
        torch.testing.assert_close(prop.std(0), torch.ones(4), atol=0.01, rtol=0)  # proprio standardised
    assert LatentMap("pooled", 12, (6, 6), 4, grid=2, dim=5, use_proprio=False).shape == (20,)
    with pytest.raises(ValueError, match="latent kind"):
        LatentMap("flat", 12, (6, 6), 4)


def linear_episodes(n_eps: int = 40, length: int = 12, seed: int = 0) -> EpisodeCells:
    """Cells whose first channel follows x' = x + 0.5 a₀ (second: + 0.5 a₁): a known linear system."""
    g = torch.Generator().manual_seed(seed)
    cells, actions = [], []
    for _ in range(n_eps):
        x = torch.randn(2, generator=g)
        a = torch.rand(length, 4, generator=g) * 2 - 1
        xs = [x]
        for t in range(length - 1):
            xs.append(xs[-1] + 0.5 * a[t, :2])
        x = torch.stack(xs)  # (T, 2)
        cells.append(torch.cat([x, torch.zeros(length, 1)], dim=1)[:, None])  # (T, 1 cell, D=3)
        actions.append(a)
    return EpisodeCells(torch.cat(cells), torch.zeros(n_eps * length, 4), torch.cat(actions), [length] * n_eps)


def test_multistep_training_learns_a_linear_system_and_beats_the_copy_baseline():
    latent = LatentMap("pooled", 3, (1, 1), 4, grid=1, dim=2, use_proprio=False)
    train_cells, valid_cells = linear_episodes(60), linear_episodes(10, seed=1)
    latent.fit(train_cells.cells, train_cells.proprio)
    train, valid = Transitions.from_cells(train_cells, latent), Transitions.from_cells(valid_cells, latent)
    z0, acts, target, mask = train.window(torch.tensor([0, 10, 11]), 3)
    assert acts.shape == (3, 3, 4) and target.shape == (3, 3, 2)
    assert mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]  # episode ends
    torch.manual_seed(0)
    model = PooledMLP(latent.shape, 4, hidden=64)
    fit = fit_dynamics(model, train, valid, DynamicsTrainConfig(steps=600, batch_size=128, lr=3e-3, horizon=4,
                                                                eval_every=100), torch.Generator().manual_seed(0))
    assert fit["history"][-1]["valid_loss"] < 0.2 * fit["history"][0]["valid_loss"] or fit["best_valid_loss"] < 0.02
    errors = horizon_errors(model, valid, 8)
    assert [e["h"] for e in errors] == list(range(1, 9)) and errors[0]["windows"] > errors[7]["windows"] > 0
    assert all(e["mse"] < 0.2 * e["copy_mse"] for e in errors)  # it learnt what actions do
    assert errors[7]["mse"] > errors[0]["mse"]  # and errors grow with the horizon


def test_world_model_checkpoint_round_trip_and_refusal(tmp_path):
    latent = LatentMap("tokens", 8, (4, 4), 4, grid=2, dim=4)
    latent.fit(torch.randn(30, 4, 8), torch.randn(30, 4))
    model = TokenPredictor(latent.shape, 4, width=16, depth=1, heads=2)
    enc = {"name": "mae", "identity": {"family": "mae", "config": {}, "weights_hash": "abc"}}
    path = save_world_model(latent, model, enc, {"note": 1}, tmp_path / "wm.pt")
    lat2, dyn2, payload = load_world_model(path, "abc")
    z, a = latent(torch.randn(3, 16, 8), torch.randn(3, 4)), torch.rand(3, 4)
    torch.testing.assert_close(dyn2(lat2(torch.ones(3, 16, 8), torch.ones(3, 4)), a),
                               model(latent(torch.ones(3, 16, 8), torch.ones(3, 4)), a))
    assert payload["record"] == {"note": 1} and z.shape == (3, 5, 4)
    with pytest.raises(ValueError, match="encoder weights abc, not xyz"):
        load_world_model(path, "xyz")


def test_planner_cost_is_one_batched_rollout():
    class Counting(PointMass):
        calls = 0

        def rollout(self, z0, actions):
            Counting.calls += 1
            return super().rollout(z0, actions)

    planner = LatentPlanner.__new__(LatentPlanner)  # the cost alone: no encoder or env needed
    planner.dynamics, planner.running_weight, planner.action_repeat = Counting(), 0.0, 1
    z, goal = torch.zeros(3, 2), torch.tensor([[0.1, 0.0], [0.0, 0.1], [0.0, 0.0]])
    actions = torch.zeros(3, 5, 2, 4)
    actions[0, 1, :, 0] = 1.0  # env 0, candidate 1 moves +x by 0.1 per step
    costs = planner.latent_cost(z, goal, actions)
    assert costs.shape == (3, 5) and Counting.calls == 1
    assert float(costs[0, 1]) == pytest.approx(((0.2 - 0.1) ** 2) / 2)
    assert float(costs[2].abs().max()) == 0.0


#: `robrep plan` on a tiny reach setup: 32 px, a 1-block random-init MAE, 4 demos, 3 play episodes, 2 episodes.
TINY_PLAN = ["plan", "task=reach", "task.image_size=32", "weights=null", "encoder.arch.input_size=32",
             "encoder.arch.depth=1", "num_demos=4", "play_episodes=3", "train.steps=20", "train.eval_every=10",
             "episodes=2", "num_envs=2", "planner.samples=16", "planner.elites=4", "planner.iterations=2",
             "dynamics.latent.grid=2", "dynamics.latent.dim=8", "progress=false", "out_dir=out"]


def test_robrep_plan_cli_end_to_end(tmp_path, monkeypatch):
    from robrep.cli import main

    monkeypatch.chdir(tmp_path)
    args = [*TINY_PLAN, "diagnostics_horizon=4"]
    assert main(args) == 0
    (row,) = read_csv("out/plan.csv")
    assert row["task"] == "reach" and row["dynamics"] == "pooled_mlp" and int(row["episodes"]) == 2
    assert float(row["ms_per_action"]) > 0 and 0 <= float(row["success_rate"]) <= 1
    assert float(row["goal_expert_success"]) == 1.0
    record = json.loads((tmp_path / "out/reach_mae_random_pooled_mlp.json").read_text())
    assert len(record["record"]["horizon_errors"]) == 4 and record["result"]["episodes"] == 2
    assert (tmp_path / "out/reach_mae_random_pooled_mlp_horizon.png").stat().st_size > 1000
    assert row["command"].startswith("robrep plan task=reach")
    assert main(args) == 0  # the world model is reused, the row replaced
    assert len(read_csv("out/plan.csv")) == 1
    assert main(args + ["encoder=clip"]) == 0  # a second encoder: its own row, both in the horizon table
    rows = read_csv("out/reach_horizon_errors.csv")
    assert {r["encoder"] for r in rows} == {"mae_random", "clip_random"} and len(rows) == 2 * 4
    assert all(float(r["model_over_copy"]) > 0 for r in rows)
    assert (tmp_path / "out/reach_horizon_errors.png").stat().st_size > 1000


def test_planner_reads_each_envs_instruction_for_language_encoders():
    from robrep.encoders import load_encoder

    torch.manual_seed(0)
    enc = load_encoder("voltron", input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    n, d = enc.output_shape()
    latent = LatentMap("pooled", d, enc.grid_size, 4, grid=2, dim=3, use_proprio=False)
    latent.fit(latent.cells(torch.randn(20, n, d)), torch.zeros(20, 4))
    planner = LatentPlanner.__new__(LatentPlanner)
    planner.encoder, planner.latent, planner.device, planner.use_language = enc, latent, enc.device, True
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    images[1] = images[0]
    proprio = np.zeros((2, 4), np.float32)
    z = planner.encode(images, proprio, np.array(["press the red button", "push the red block onto the yellow circle"]))
    assert not torch.allclose(z[0], z[1])  # same image, different instruction -> different latent
    same = planner.encode(images, proprio, ["press the red button"] * 2)
    torch.testing.assert_close(same[0], same[1])
    with pytest.raises(ValueError, match="instruction"):
        planner.encode(images, proprio)
    planner.use_language = False
    torch.testing.assert_close(*planner.encode(images, proprio))  # vision only: the instruction is ignored


def test_frameskip_holds_each_macro_action_and_replans_once_per_macro_action():
    from planners.mpc import MPCPlanner, repeat_actions

    macro = np.array([[[0.1, 0, 0, 0], [0.2, 0, 0, 0]]], np.float32)  # (K=1, H=2, A)
    steps = repeat_actions(macro, 3)
    assert steps.shape == (1, 6, 4) and steps[0, :, 0].tolist() == pytest.approx([0.1] * 3 + [0.2] * 3)

    class Scripted(MPCPlanner):  # the cost prefers macro-action (k/10, 0, 0, 0) at replanning call k
        calls = 0

        def prepare(self, obs, envs):
            Scripted.calls += 1
            self.envs = envs

        def cost(self, envs, actions):
            return (actions[:, :, 0, 0] - 0.1 * Scripted.calls).abs()

    planner = Scripted(CEMConfig(horizon=2, samples=64, elites=4, iterations=3, init_std=0.3), "reach",
                       action_repeat=3)
    planner.reset(2)
    obs = {"proprio": np.zeros((2, 4), np.float32)}
    acts = np.stack([planner.act(obs) for _ in range(7)])  # (7 steps, 2 envs, 4)
    assert Scripted.calls == 3  # steps 0, 3 and 6
    assert np.allclose(acts[0:3, :, 0], acts[0, :, 0]) and np.allclose(acts[3:6, :, 0], acts[3, :, 0])
    assert np.allclose(acts[0, :, 0], 0.1, atol=0.03) and np.allclose(acts[3, :, 0], 0.2, atol=0.03)
    planner.reset_env(1)  # env 1 was reset: replanned at the next step, env 0 keeps its macro-action
    planner.act(obs)
    assert Scripted.calls == 4 and planner.envs == [1]


def test_simulator_model_rollouts_replay_env_step_exactly():
    from envs.registration import make_env
    from planners.sim_model import SimulatorModel

    env = make_env("push", image_size=32, observe_sim_state=True)
    obs, _ = env.reset(seed=1_000_001)
    model = SimulatorModel("push", {"image_size": 32}, action_repeat=2)
    model.start(0, 1_000_001)
    macro = np.random.default_rng(0).uniform(-1, 1, (3, 4, 4)).astype(np.float32)  # (K, H, A)
    states, frames = model.rollout(0, obs["sim_state"], macro, render=True)
    assert states.shape == (3, 4, 10) and frames.shape == (3, 4, 32, 32, 3)
    for k in (0, 2):  # each candidate, stepped in the real env from the same state, gives the same states
        env.unwrapped.set_sim_state(obs["sim_state"])
        for h, a in enumerate(macro[k]):
            for _ in range(2):
                o, *_ = env.step(a)
            np.testing.assert_array_equal(o["state"], states[k, h])
            np.testing.assert_array_equal(o["image"], frames[k, h])
    last_states, last = model.rollout(0, obs["sim_state"], macro, render=True, last_only=True)  # rung (b), no running cost
    np.testing.assert_array_equal(last_states, states)
    assert last.shape == (3, 1, 32, 32, 3)
    np.testing.assert_array_equal(last[:, 0], frames[:, -1])
    env.close()
    model.close()


def test_the_simulator_as_model_rung_reaches_the_goal():
    """Rung (a) of the planning ladder: CEM through the simulator with the privileged cost reaches reach goals."""
    from planners.sim_model import SimStatePlanner
    from robrep.eval.rollouts import evaluate

    planner = SimStatePlanner(CEMConfig(horizon=3, samples=24, elites=4, iterations=2, init_std=0.7), "reach",
                              {"image_size": 32}, action_repeat=3, seed=0)
    try:
        result = evaluate(planner, 2, num_envs=2, progress=False, demo_seeds=[])
    finally:
        planner.close()
    assert result.successes == 2 and result.mean_length < 40  # the expert needs ~6 steps; the time limit is 60
    assert planner.plan_calls < sum(r.length for r in result.records)  # replanned once per macro-action, not per step


def test_robrep_plan_ladder_runs_every_rung_on_the_same_layouts(tmp_path, monkeypatch):
    from robrep.cli import main

    monkeypatch.chdir(tmp_path)
    args = [*TINY_PLAN, "diagnostics_horizon=3", "planner.horizon=3", "planner.action_repeat=3", "ladder=true",
            "eval_split=test"]
    assert main(args) == 0
    rows = read_csv("out/ladder.csv")
    assert [(r["rung"], r["encoder"]) for r in rows] == [("a", "-"), ("b", "mae_random"), ("c", "mae_random")]
    assert {r["eval_split"] for r in rows} == {"test"} and all(int(r["episodes"]) == 2 for r in rows)
    assert all(float(r["ms_per_plan"]) >= float(r["ms_per_action"]) > 0 for r in rows)
    assert int(rows[0]["successes"]) == 2  # the search alone, with the simulator and the privileged cost
    assert (tmp_path / "out/ladder_reach.png").stat().st_size > 1000  # the ladder's plot, drawn with its table
    (plan,) = read_csv("out/plan.csv")
    assert plan["action_repeat"] == "3" and plan["eval_split"] == "test"
    assert main(args + ["rungs=[a]"]) == 0  # a re-run replaces its rows only
    assert [r["rung"] for r in read_csv("out/ladder.csv")] == ["b", "c", "a"]
    bound = read_csv("out/reach_open_loop_vs_bound.csv")  # measured open-loop error beside DESIGN.md's bound, per h
    assert len(bound) == 3 and all(float(r["bound"]) > 0 and float(r["error_mean"]) >= 0 for r in bound)
    assert (tmp_path / "out/reach_open_loop_vs_bound.png").stat().st_size > 1000
    assert main(args + ["rungs=[c]", "planner.cost=progress"]) == 0  # the learned steps-to-go as the cost
    assert read_csv("out/plan.csv")[0]["cost"] == "progress"
    # a reward model that reads rung (a)'s privileged cost from the latent, on rungs (b) and (c)
    assert main(args + ["rungs=[b,c]", "planner.cost=progress", "progress_model.target=task_cost",
                        "progress_model.scale=0.1", "planner.running_weight=0"]) == 0
    learned = [r for r in read_csv("out/ladder.csv") if r["cost"] == "progress[task_cost]"]
    assert [r["rung"] for r in learned] == ["b", "c"] and all(r["running_weight"] == "0.0" for r in learned)
    # a DINO-WM-style model: one step per held macro-action (frameskip 3) reading the last two latents
    assert main(args + ["rungs=[c]", "dynamics.frameskip=3", "dynamics.history=2", "model=runs/plan/hist.pt"]) == 0
    assert read_csv("out/plan.csv")[0]["action_repeat"] == "3"


class ScaledLinear(LatentDynamics):
    """z' = L z + a[:2] + d: a model whose open-loop error against the true z' = L z + a[:2] is known exactly."""

    def __init__(self, L, d):
        super().__init__()
        self.L, self.d = L, torch.as_tensor(d, dtype=torch.float32)

    def forward(self, z, a):
        return self.L * z + a[..., :2] + self.d


@pytest.mark.parametrize("L", [0.8, 1.0, 1.2])
def test_error_bound_is_met_with_equality_by_a_biased_linear_model(L):
    """True system z' = L z + a; model adds a constant bias of norm δ: errors add up collinearly, so the measured
    h-step error equals DESIGN.md's bound δ (L^h − 1)/(L − 1) (h δ at L = 1), and the estimators recover L and δ."""
    from planners.diagnostics import bound_table, error_bound

    g = torch.Generator().manual_seed(0)
    truth, model = ScaledLinear(L, [0.0, 0.0]), ScaledLinear(L, [0.03, 0.04])  # δ = 0.05
    lengths, z, a = [12] * 6, [], torch.rand(72, 4, generator=g) * 2 - 1
    for e in range(6):
        x = torch.randn(2, generator=g)
        for t in range(12):
            z.append(x)
            x = truth(x, a[e * 12 + t])
    ends = np.cumsum(lengths) - 1
    data = Transitions(torch.stack(z), a, torch.from_numpy(np.repeat(ends, lengths)).long())
    rows, est = bound_table(model, data, max_horizon=8)
    assert est["delta"] == pytest.approx(0.05, rel=1e-4) and est["L_max"] == pytest.approx(L, rel=1e-4)
    for r in rows:
        expected = 0.05 * r["h"] if L == 1.0 else 0.05 * (L ** r["h"] - 1) / (L - 1)
        assert r["error_mean"] == pytest.approx(expected, rel=1e-3) and r["bound"] == pytest.approx(expected, rel=1e-3)
    assert error_bound(0.1, 2.0, 3, eps0=1.0) == pytest.approx(4.0 + 0.1 * 7)


def test_cost_monotonicity_ranks_costs_by_how_they_follow_steps_to_go():
    from planners.diagnostics import cost_monotonicity, steps_to_go

    lengths = [5, 8, 2]
    togo = steps_to_go(lengths)
    assert togo.tolist() == [4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0, 1, 0]
    rng = np.random.default_rng(0)
    rows = {r["cost"]: r for r in cost_monotonicity({"exact": togo ** 2, "reversed": -togo,
                                                     "noise": rng.normal(size=len(togo))}, lengths)}
    assert rows["exact"]["spearman_mean"] == 1.0 and rows["exact"]["episodes"] == 2  # the 2-frame episode is skipped
    assert rows["reversed"]["spearman_mean"] == -1.0 and rows["reversed"]["share_positive"] == 0.0
    assert abs(rows["noise"]["spearman_mean"]) < 1.0


def test_frameskip_transitions_span_r_env_steps_and_match_repeated_single_steps():
    # episodes of 7 and 5 frames with latent = frame index and action = 10 * frame index
    lengths = [7, 5]
    z = torch.cat([torch.arange(n) for n in lengths]).float()[:, None]
    a = (10 * z).repeat(1, 4)
    ends = np.cumsum(lengths) - 1
    data = Transitions(z, a, torch.from_numpy(np.repeat(ends, lengths)).long(), frameskip=2)
    assert data.starts(1).tolist() == [0, 1, 2, 3, 4, 7, 8, 9] and data.action_dim == 8
    z0, actions, target, mask = data.window(torch.tensor([1, 8]), 3)
    assert z0[:, 0].tolist() == [1, 1] and target[:, :, 0].tolist() == [[3, 5, 6], [3, 4, 4]]
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert actions.shape == (2, 3, 8) and actions[0, 0, ::4].tolist() == [10, 20] and actions[0, 1, ::4].tolist() == [30, 40]

    class TwoSteps(LatentDynamics):  # exactly two single steps of PointMass per model step
        frameskip = 2

        def forward(self, z, a):
            return z + 0.1 * (a[..., :2] + a[..., 4:6])

    from planners.mpc import goal_cost

    z, goal = torch.zeros(2, 2), torch.tensor([[0.3, 0.1], [-0.2, 0.0]])
    cand = torch.rand(2, 6, 3, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    single = goal_cost(PointMass(), z, goal, cand, running_weight=0.5, repeat=4)
    torch.testing.assert_close(goal_cost(TwoSteps(), z, goal, cand, running_weight=0.5, repeat=4), single)
    with pytest.raises(ValueError, match="multiple"):
        goal_cost(TwoSteps(), z, goal, cand, repeat=3)


def test_subgoals_follow_the_expert_trajectory_from_the_nearest_frame():
    planner = LatentPlanner.__new__(LatentPlanner)
    planner.subgoal_ahead, planner.goals = 2, {0: torch.tensor([9.0])}
    planner.latent, planner.proprio_weight = LatentMap("pooled", 1, (1, 1), 0, grid=1, dim=1, use_proprio=False), 1.0
    planner.trajectories = {0: torch.arange(10.0)[:, None]}  # expert latents 0, 1, ..., 9
    assert float(planner.current_goal(0, torch.tensor([3.2]))) == 5.0  # nearest frame 3, two steps ahead
    assert float(planner.current_goal(0, torch.tensor([8.9]))) == 9.0  # past the end: the goal itself
    planner.subgoal_ahead = 0
    assert float(planner.current_goal(0, torch.tensor([3.2]))) == 9.0


def test_history_windows_and_a_second_order_system_needs_them():
    """z_{t+1} = z_t + 0.9 (z_t − z_{t−1}) + 0.1 a from rest: a model reading two latents learns it, one reading one cannot."""
    g = torch.Generator().manual_seed(0)
    z, a, lengths = [], [], [20] * 40
    for _ in lengths:
        prev = cur = float(torch.rand(1, generator=g) * 2 - 1)  # at rest: the repeated first frame is exact
        for _ in range(20):
            act = float(torch.rand(1, generator=g) * 2 - 1)
            z.append([cur])
            a.append([act, 0.0, 0.0, 0.0])
            prev, cur = cur, cur + 0.9 * (cur - prev) + 0.1 * act
    z, a = torch.tensor(z), torch.tensor(a)
    last = torch.from_numpy(np.repeat(np.cumsum(lengths) - 1, lengths)).long()
    two = Transitions(z, a, last, frameskip=1, history=2)
    z0, _, target, _ = two.window(torch.tensor([0, 5, 20]), 1)
    assert z0.shape == (3, 2, 1) and z0[0, :, 0].tolist() == [z[0, 0]] * 2  # the episode's first frame repeated
    assert z0[1, :, 0].tolist() == [z[4, 0], z[5, 0]] and z0[2, 0, 0] == z[20, 0]  # never the previous episode
    errs = {}
    for hist in (1, 2):
        data = Transitions(z, a, last, frameskip=1, history=hist)
        torch.manual_seed(0)
        model = build_dynamics("pooled_mlp", (1,), 4, history=hist, hidden=64, layers=2)
        fit_dynamics(model, data, data, DynamicsTrainConfig(steps=1500, batch_size=128, lr=3e-3, horizon=3,
                                                            eval_every=500), torch.Generator().manual_seed(0))
        errs[hist] = horizon_errors(model, data, 3)[-1]["mse"]
        assert model.rollout(*data.window(torch.tensor([3]), 3)[:2]).shape == (1, 3, 1)
    assert errs[2] < 0.2 * errs[1]


def test_the_default_world_model_path_changes_with_what_shapes_the_model():
    """A model trained without proprio (or with another latent, dynamics or training config) is never reused by a
    config that asks for another one."""
    from planners.experiment import world_model_key
    from robrep.config import compose

    base = compose("plan", ["task=reach"])
    key = world_model_key(base, "abc")
    assert key == world_model_key(compose("plan", ["task=reach"]), "abc")
    for override in ("use_proprio=true", "dynamics.latent.grid=4", "train.steps=10", "play_episodes=3",
                     "dynamics=token_transformer"):
        assert world_model_key(compose("plan", ["task=reach", override]), "abc") != key, override
    assert world_model_key(base, "abd") != key


def test_latent_distance_averages_image_and_proprio_apart():
    from planners.latent import LatentMap

    pooled = LatentMap("pooled", feature_dim=8, grid_in=(4, 4), proprio_dim=2, grid=2, dim=3, use_proprio=True)
    z, goal = torch.zeros(5, 14), torch.zeros(14)
    z[:, :12], z[:, 12:] = 1.0, 2.0  # every image channel off by 1, every proprio channel by 2
    torch.testing.assert_close(pooled.distance(z, goal), torch.full((5,), 1.0 + 4.0))
    torch.testing.assert_close(pooled.distance(z, goal, proprio_weight=0.0), torch.ones(5))
    tokens = LatentMap("tokens", feature_dim=8, grid_in=(4, 4), proprio_dim=2, grid=2, dim=3, use_proprio=True)
    t = torch.zeros(3, 7, 5, 3)
    t[..., :4, :], t[..., 4, :2] = 1.0, 2.0  # the proprio token's padding (last channel) is ignored
    torch.testing.assert_close(tokens.distance(t, torch.zeros(5, 3), 0.5), torch.full((3, 7), 1.0 + 0.5 * 4.0))
    plain = LatentMap("pooled", feature_dim=8, grid_in=(4, 4), proprio_dim=2, grid=2, dim=3, use_proprio=False)
    torch.testing.assert_close(plain.distance(torch.ones(2, 12), torch.zeros(12)), torch.ones(2))


def test_goal_settle_takes_the_goal_frame_inside_the_success_region():
    from envs.registration import make_env
    from planners.mpc import expert_trajectory

    env = make_env("reach", image_size=32, terminate_on_success=False)
    try:
        first, ok = expert_trajectory(env, seed=5)
        settled, ok2 = expert_trajectory(env, seed=5, settle=4)
        assert ok and ok2 and len(settled) == len(first) + 4
        goal = env.unwrapped.body_pos("goal")
        gap = lambda frames: float(np.linalg.norm(frames[-1]["proprio"][:3] - goal))  # noqa: E731
        assert gap(settled) < gap(first) < 0.03  # the first success is on the edge; settling moves inside
    finally:
        env.close()


def test_rollout_loss_takes_the_planners_distance():
    """part_loss: the rollout loss is the latent map's distance (image and proprio averaged apart), so a model is
    trained on what the planner scores."""
    from planners.fit import rollout_loss

    latent = LatentMap("pooled", 3, (1, 1), 4, grid=1, dim=2, use_proprio=True)
    cells = linear_episodes(4)
    latent.fit(cells.cells, cells.proprio + torch.randn(cells.proprio.shape))
    data = Transitions.from_cells(cells, latent)
    model, idx = PooledMLP(latent.shape, 4, hidden=8), torch.tensor([0, 3, 5])
    z0, actions, target, mask = data.window(idx, 2)
    with torch.no_grad():
        pred = model.rollout(z0, actions)
        expected = (latent.distance(pred, target) * mask).sum() / mask.sum()
        plain = (((pred - target) ** 2).flatten(2).mean(-1) * mask).sum() / mask.sum()
        torch.testing.assert_close(rollout_loss(model, data, idx, 2, latent.distance), expected)
        torch.testing.assert_close(rollout_loss(model, data, idx, 2), plain)


def test_ladder_table_keeps_rows_written_before_a_column_existed(tmp_path):
    from planners.experiment import LADDER_KEY, write_ladder

    base = {"task": "reach", "encoder": "mae", "rung": "c", "model": "m", "scored_by": "s", "eval_split": "dev",
            "episodes": 2, "successes": 1, "success_rate": 0.5, "ci_low": 0.1, "ci_high": 0.9, "mean_length": 5.0,
            "horizon": 3, "action_repeat": 1, "samples": 8, "elites": 2, "iterations": 1, "cost": "goal",
            "approach_weight": "", "subgoal_ahead": 0, "ms_per_action": 1.0, "ms_per_plan": 1.0, "command": "x"}
    old = {k: v for k, v in base.items()}
    write_csv([old], tmp_path / "ladder.csv")  # a table from before use_proprio ... running_weight were columns
    new = {**base, "use_proprio": True, "proprio_weight": 10.0, "goal_settle": 5, "running_weight": 0.1,
           "world_model": "pooled_mlp ×1 hidden=256 layers=2, 3000 steps", "risk": "", "prior": ""}
    assert set(LADDER_KEY) <= set(new)
    write_ladder(tmp_path / "ladder.csv", [new])
    rows = read_csv(tmp_path / "ladder.csv")
    assert len(rows) == 2 and rows[0]["goal_settle"] == "" and rows[1]["goal_settle"] == "5"
    assert (tmp_path / "ladder_reach.png").exists()
    # another transition model on the same settings is another row; the same one again replaces its row
    other = {**new, "world_model": "token_transformer ×1 depth=2 heads=4 width=64, 3000 steps", "successes": 2}
    write_ladder(tmp_path / "ladder.csv", [other, {**new, "successes": 0}])
    rows = read_csv(tmp_path / "ladder.csv")
    assert len(rows) == 3 and sorted(r["successes"] for r in rows[1:]) == ["0", "2"]
    # rung (c) around a BC policy is its own row (column `prior`)
    write_ladder(tmp_path / "ladder.csv", [{**new, "prior": "mae_n100_s0.pt std=0.1 weight=10", "successes": 2}])
    assert len(read_csv(tmp_path / "ladder.csv")) == 4


def test_world_model_label_names_the_transition_model_and_its_training():
    from planners.experiment import _default_world_model, _world_model_note, world_model_label
    from robrep.config import compose

    label = world_model_label(compose("plan", ["dynamics.frameskip=5", "train.steps=100"]))
    assert label == "pooled_mlp ×5 hidden=256 layers=2, 3x3x16, 100 steps"
    default = _default_world_model()  # from the config files: what `robrep plan` trains when nothing is overridden
    assert default == "pooled_mlp hidden=256 layers=2, 3x3x16, 3000 steps"
    assert _world_model_note({"world_model": "pooled_mlp ×5 hidden=256 layers=2, 3x3x16, 3000 steps"}, default) == ""
    assert "6x6x16" in _world_model_note({"world_model": world_model_label(compose("plan", ["dynamics.latent.grid=6"]))},
                                         default)
    assert "token_transformer" in _world_model_note({"world_model": world_model_label(
        compose("plan", ["dynamics=token_transformer"]))}, default)


def test_an_ensemble_trains_each_member_round_trips_and_its_spread_is_priced_by_risk(tmp_path):
    """Ensemble members are initialised apart and each learns the system; the checkpoint rebuilds the ensemble;
    with ``risk`` > 0 the cost adds the members' disagreement, and a single model refuses ``risk``."""
    from planners.dynamics import Ensemble
    from planners.mpc import goal_cost

    latent = LatentMap("pooled", 3, (1, 1), 4, grid=1, dim=2, use_proprio=False)
    train_cells, valid_cells = linear_episodes(60), linear_episodes(10, seed=1)
    latent.fit(train_cells.cells, train_cells.proprio)
    train, valid = Transitions.from_cells(train_cells, latent), Transitions.from_cells(valid_cells, latent)
    torch.manual_seed(0)
    model = build_dynamics("pooled_mlp", latent.shape, 4, ensemble=3, hidden=32)
    assert isinstance(model, Ensemble) and len(model.members) == 3 and model.config["ensemble"] == 3
    z0, acts = torch.randn(5, 2), torch.rand(5, 4, 4)
    assert model.rollout_members(z0, acts).shape == (3, 5, 4, 2)
    fit_dynamics(model, train, valid, DynamicsTrainConfig(steps=400, batch_size=128, lr=3e-3, horizon=3, eval_every=100),
                 torch.Generator().manual_seed(0))
    members = model.rollout_members(z0, acts)
    assert not torch.allclose(members[0], members[1])  # initialised apart, still not identical
    torch.testing.assert_close(model.rollout(z0, acts), members.mean(0))
    for m in model.members:  # every member learnt the system (not just their mean)
        assert horizon_errors(m, valid, 3)[0]["mse"] < 0.2 * horizon_errors(m, valid, 3)[0]["copy_mse"]

    enc = {"name": "mae", "identity": {"family": "mae", "config": {}, "weights_hash": "abc"}}
    _, again, _ = load_world_model(save_world_model(latent, model, enc, {}, tmp_path / "wm.pt"), "abc")
    assert isinstance(again, Ensemble)
    torch.testing.assert_close(again.rollout_members(z0, acts), members)

    goal, cands = torch.zeros(2, 2), torch.rand(2, 6, 3, 4) * 2 - 1
    calm = goal_cost(model, z0[:2], goal, cands, running_weight=0.0)
    costs = torch.stack([goal_cost(m, z0[:2], goal, cands, running_weight=0.0) for m in model.members])
    torch.testing.assert_close(calm, costs.mean(0))
    torch.testing.assert_close(goal_cost(model, z0[:2], goal, cands, running_weight=0.0, risk=2.0),
                               costs.mean(0) + 2.0 * costs.std(0))
    with pytest.raises(ValueError, match="needs an ensemble"):
        goal_cost(model.members[0], z0[:2], goal, cands, risk=1.0)


def test_on_policy_rounds_add_the_planners_own_episodes_to_the_world_models_data(tmp_path, monkeypatch):
    """``aggregate.rounds=1``: the planner's episodes (planner-play seeds, with states) are written, the world model
    is trained again on demos + play + them, and the plan runs with that model (named in its row)."""
    from planners.aggregate import PLANNER_PLAY_SEEDS
    from robrep.cli import main
    from robrep.data.demo_file import DemoFile
    from robrep.seeds import PLAY_SEEDS

    monkeypatch.chdir(tmp_path)
    assert main([*TINY_PLAN, "aggregate.rounds=1", "aggregate.episodes=2", "ladder=true", "rungs=[c]"]) == 0
    (data,) = sorted((tmp_path / "runs/plan").glob("*.planner_play1_*.hdf5"))
    with DemoFile(data) as f:
        seeds = f.demo_seeds
        assert len(seeds) == 2 and f.required_keys is not None
    assert seeds == [PLANNER_PLAY_SEEDS.start, PLANNER_PLAY_SEEDS.start + 1] and seeds[0] in PLAY_SEEDS
    (model,) = [p for p in (tmp_path / "runs/plan").glob("*.agg1_*.pt") if not p.name.endswith(".progress.pt")]
    record = load_world_model(model)[2]["record"]
    assert len(record["files"]) == 3 and (tmp_path / record["files"][-1]).resolve() == data.resolve()
    (row,) = read_csv("out/ladder.csv")
    assert row["world_model"].endswith("1 planner rounds × 2 episodes")


class FixedChunkPolicy:
    """A stand-in BC policy whose chunk is the same ramp for every frame: x actions 0.1, 0.2, 0.3, 0.4."""

    def predict_chunks(self, obs):
        chunk = np.zeros((4, 4), np.float32)
        chunk[:, 0] = [0.1, 0.2, 0.3, 0.4]
        return np.repeat(chunk[None], len(obs["proprio"]), axis=0)


def test_policy_prior_macro_actions_are_residuals_on_the_policys_chunk():
    from planners.mpc import MPCPlanner
    from planners.prior import PolicyPrior, chunk_to_macros, pad_chunks

    ramp = FixedChunkPolicy().predict_chunks({"proprio": np.zeros((1, 4))})
    assert pad_chunks(ramp, 3)[0, :, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert chunk_to_macros(ramp, 3)[0, :, 0].tolist() == pytest.approx([0.2, 0.4])  # (0.1+0.2+0.3)/3, 0.4
    assert chunk_to_macros(ramp, 5)[0, :, 0].tolist() == pytest.approx([0.28])  # padded with the last action

    class Toy(MPCPlanner):  # the cost: squared distance of the first macro-action's x to `target`
        accepts_prior, target, seen = True, None, []

        def prepare(self, obs, envs):
            pass

        def cost(self, envs, actions):
            Toy.seen.append(self.step_offsets)
            if self.target is None:
                return torch.zeros(actions.shape[:2])
            return (actions[:, :, 0, 0] - self.target) ** 2

    cfg = CEMConfig(horizon=2, samples=64, elites=8, iterations=4, init_std=0.3, min_std=1e-4)
    planner = Toy(cfg, "reach", action_repeat=5)
    planner.prior = PolicyPrior(FixedChunkPolicy(), std=1e-3, weight=100.0)
    planner.reset(2)
    obs = {"proprio": np.zeros((2, 4), np.float32)}
    acts = np.stack([planner.act(obs) for _ in range(5)])  # (5 env steps, 2 envs, 4): one macro-action
    # a cost that cannot tell candidates apart + the deviation penalty: the policy's chunk, step by step
    np.testing.assert_allclose(acts[:, :, 0], np.array([[0.1, 0.2, 0.3, 0.4, 0.4]] * 2).T, atol=0.01)
    offsets = Toy.seen[-1]
    assert offsets.shape == (2, 10, 4)  # (b, H·r, A): the chunk's deviation from its macro mean, zero after it
    assert offsets[0, :5, 0].tolist() == pytest.approx([-0.18, -0.08, 0.02, 0.12, 0.12], abs=1e-6)
    assert float(offsets[:, 5:].abs().max()) == 0.0
    # a cost that wants the macro-action at x = 0.58: the whole chunk shifted by +0.3, its shape kept
    planner = Toy(cfg, "reach", action_repeat=5)
    planner.target = 0.58
    planner.prior = PolicyPrior(FixedChunkPolicy(), std=0.3, weight=0.0)
    planner.reset(1)
    acts = np.stack([planner.act({"proprio": np.zeros((1, 4), np.float32)}) for _ in range(5)])
    np.testing.assert_allclose(acts[:, 0, 0], [0.4, 0.5, 0.6, 0.7, 0.7], atol=0.02)


def test_goal_cost_feeds_the_model_the_executed_step_actions():
    from planners.mpc import goal_cost

    class Recording(PointMass):
        actions = None

        def rollout(self, z0, actions):
            Recording.actions = actions.clone()
            return super().rollout(z0, actions)

    z, goal = torch.zeros(1, 2), torch.tensor([[0.1, 0.0]])
    macros = torch.zeros(1, 3, 2, 4)  # (B, K, H, A)
    macros[0, 1, :, 0] = 0.5
    plain = goal_cost(Recording(), z, goal, macros, 0.0, repeat=2)
    assert Recording.actions.shape == (3, 4, 4) and Recording.actions[1, :, 0].tolist() == [0.5] * 4
    zero = goal_cost(Recording(), z, goal, macros, 0.0, repeat=2, offsets=torch.zeros(1, 4, 4))
    torch.testing.assert_close(plain, zero)
    offsets = torch.zeros(1, 4, 4)
    offsets[0, :, 0] = torch.tensor([-0.1, 0.1, 0.6, 0.0])
    goal_cost(Recording(), z, goal, macros, 0.0, repeat=2, offsets=offsets)
    assert Recording.actions[1, :, 0].tolist() == pytest.approx([0.4, 0.6, 1.0, 0.5])  # clipped to the action box
    assert Recording.actions[0, :, 0].tolist() == pytest.approx([-0.1, 0.1, 0.6, 0.0])


def test_simulator_rungs_refuse_a_policy_prior():
    from planners.prior import PolicyPrior
    from planners.sim_model import SimLatentPlanner

    planner = SimLatentPlanner.__new__(SimLatentPlanner)
    planner.prior, planner.action_repeat = PolicyPrior(FixedChunkPolicy()), 1
    planner.cem_cfg = CEMConfig()
    with pytest.raises(ValueError, match="policy prior"):
        planner._plan({"proprio": np.zeros((1, 4), np.float32)}, [0])


def test_a_named_prior_needs_its_policy_loaded_by_the_caller_and_on_the_planners_task():
    from planners.experiment import with_prior
    from planners.prior import PolicyPrior
    from robrep.config import compose

    cfg = compose("plan", ["task=push", "planner.prior=runs/some_policy.pt", "planner.prior_std=0.1"])
    planner = type("Stub", (), {"prior": None})()
    with pytest.raises(ValueError, match="loaded"):
        with_prior(cfg, planner, None)  # planners never import policies: the caller loads it
    policy = FixedChunkPolicy()
    policy.task, policy.env_kwargs = "push", {"image_size": cfg.task.image_size}
    assert with_prior(cfg, planner, policy).prior.std == 0.1
    policy.task = "reach"
    with pytest.raises(ValueError, match="trained on task"):
        with_prior(cfg, planner, policy)
    assert with_prior(compose("plan", ["task=push"]), type("Stub", (), {"prior": None})(), policy).prior is None
    with pytest.raises(ValueError, match="std"):
        PolicyPrior(policy, std=0.0)


def test_the_reward_model_maps_latents_to_non_negative_steps_to_go():
    """``ProgressModel``: latents ``(B, *S)`` → steps-to-go ``(B,)`` float in env steps, ≥ 0 (softplus), ``normalised``
    = that / ``scale``; trained by ``fit_progress`` on latents whose steps-to-go is a known linear function it
    recovers (valid RMSE a small fraction of the targets' spread) and keeps the best step's weights."""
    from planners.fit import ProgressTrainConfig, fit_progress
    from planners.reward import ProgressModel

    g = torch.Generator().manual_seed(0)
    z = torch.randn(512, 4, 3, generator=g)                 # (F, *S): 4 cells × 3 components
    togo = (30 + 10 * z[:, 0, 0] - 5 * z[:, 2, 1]).clamp(min=0)  # (F,) env steps
    model = ProgressModel((4, 3), hidden=64, layers=2, scale=30.0)
    out = model(z[:7])
    assert out.shape == (7,) and out.dtype == torch.float32 and bool((out >= 0).all())
    torch.testing.assert_close(model.normalised(z[:7]) * 30.0, out)
    hist = fit_progress(model, z[:400], togo[:400], z[400:], togo[400:],
                        ProgressTrainConfig(steps=600, batch_size=128, lr=3e-3, eval_every=100), g)
    assert hist["best_valid_rmse_steps"] < 0.2 * float(togo.std())
    with torch.no_grad():
        rmse = float(((model(z[400:]) - togo[400:]) ** 2).mean().sqrt())
    assert rmse == pytest.approx(hist["best_valid_rmse_steps"], rel=1e-5)
