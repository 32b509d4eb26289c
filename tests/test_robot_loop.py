"""examples/robot_loop.py: a few steps of the fixed-rate control loop on the simulator, on a folder of images and on
a video, with the PyTorch policy and its ONNX export; latencies, deadline misses and the per-step CSV."""

import csv
import importlib.util
import logging
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from policies import load_policy, train_policy
from policies.export import export_policy
from robrep.config import config_dir
from robrep.data.collect import collect_demos

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("robot_loop", ROOT / "examples" / "robot_loop.py")
loop = sys.modules["robot_loop"] = importlib.util.module_from_spec(spec)  # a script, not a package
spec.loader.exec_module(loop)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A chunk-3 CNN policy trained for 30 steps on 4 push demos at 32 px, and its ONNX export: (pt, onnx)."""
    root = tmp_path_factory.mktemp("loop")
    demos = root / "push.hdf5"
    collect_demos("push", 4, demos, image_size=32, subset_sizes=(3,), subset_seeds=(0,), progress=False)
    base = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/policy/mlp.yaml"),
                           {k: v for k, v in OmegaConf.load(f"{config_dir()}/policy/cnn.yaml").items()
                            if k != "defaults"})
    cfg = OmegaConf.to_container(OmegaConf.merge(base, {"chunk": 3, "train": {
        "steps": 30, "eval_every": 10, "evals": None, "precision": "float32"}}), resolve=True)
    torch.manual_seed(0)
    out = root / "cnn.pt"
    train_policy(cfg, demos, 3, 0, out, None, cache_dir=root / "cache")
    onnx = export_policy(load_policy(out), root / "cnn.onnx", "onnx")["path"]
    return out, Path(onnx)


@pytest.fixture
def frames_dir(tmp_path):
    """Three 48x64 PNGs (not the policy's 32x32: the loop crops and resizes)."""
    rng = np.random.default_rng(0)
    for i in range(3):
        imageio.imwrite(tmp_path / f"frame_{i:03d}.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return tmp_path


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sim_source_runs_the_policy_and_logs_every_step(cnn, tmp_path, capsys):
    log = tmp_path / "loop.csv"
    report = loop.main(["--policy", str(cnn[0]), "--source", "sim:push", "--rate-hz", "200", "--steps", "5",
                        "--log", str(log)])
    actions = np.stack(report.actions)
    assert actions.shape == (5, 4) and actions.dtype == np.float32 and np.abs(actions).max() <= 1.0
    rows = read_csv(log)
    assert [int(r["step"]) for r in rows] == list(range(5))
    assert isinstance(report.misses, int)
    assert report.misses == sum(float(r["late_ms"]) > 0 for r in rows) == sum(int(r["missed"]) for r in rows)
    np.testing.assert_allclose([[float(r[f"a{j}"]) for j in range(4)] for r in rows], actions, atol=1e-6)
    out = capsys.readouterr().out
    assert "5 steps at 200 Hz" in out and f"{report.misses} deadline misses" in out and "success_now" in out
    assert report.source_stats["episodes_done"] == 0  # 5 steps end no episode


def test_the_sim_source_applies_the_actions(cnn):
    policy = load_policy(cnn[0])
    source = loop.SimSource(policy.task, **policy.env_kwargs)
    before = source.read().proprio.copy()
    report = loop.run_loop(source, loop.TorchController(policy), source, rate_hz=1e6, steps=3)
    source.close()
    assert not np.allclose(source.obs["proprio"], before)  # the gripper moved
    assert report.misses == 3  # a 1 µs period: every step is late, and each is counted once


class FakeClock:
    """Time advances only when the loop sleeps or the controller works (``cost`` s per act)."""

    def __init__(self) -> None:
        self.t, self.sleeps = 0.0, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.t += dt


class SlowController:
    def __init__(self, inner, clock, cost):
        self.inner, self.clock, self.cost = inner, clock, cost
        self.image_size, self.proprio_dim = inner.image_size, inner.proprio_dim
        self.images = []

    def reset(self):
        self.inner.reset()

    def act(self, image, proprio):
        self.images.append(image)
        self.clock.t += self.cost
        return self.inner.act(image, proprio)


class ListSink:
    def __init__(self):
        self.sent = []

    def send(self, action):
        self.sent.append(action)


@pytest.mark.parametrize("rate_hz, misses", [(10.0, 0), (40.0, 3)])
def test_deadline_misses_against_a_fake_clock(cnn, frames_dir, caplog, rate_hz, misses):
    clock = FakeClock()
    controller = SlowController(loop.TorchController(load_policy(cnn[0])), clock, cost=0.05)  # 50 ms per act
    sink = ListSink()
    with caplog.at_level(logging.WARNING, logger="robot_loop"):
        report = loop.run_loop(loop.FolderSource(frames_dir), controller, sink, rate_hz, steps=5,
                               clock=clock, sleep=clock.sleep)
    assert "no proprio" in caplog.text
    assert len(report.rows) == len(sink.sent) == 3  # the folder has 3 frames: the loop stops there
    assert all(im.shape == (32, 32, 3) and im.dtype == np.uint8 for im in controller.images)
    assert report.misses == misses
    assert [r["total_ms"] for r in report.rows] == pytest.approx([50.0] * 3)
    assert [r["missed"] for r in report.rows] == [int(50.0 > 1000 / rate_hz)] * 3
    if misses:  # late steps start the next one at once
        assert [r["t_s"] for r in report.rows] == pytest.approx([0.0, 0.05, 0.1]) and not clock.sleeps
    else:  # on time: the loop sleeps to the next period
        assert [r["t_s"] for r in report.rows] == pytest.approx([0.0, 0.1, 0.2])
        assert clock.sleeps == pytest.approx([0.05] * 3)  # the 3rd waits for a 4th frame, which never comes
    assert report.latency_ms(50) == pytest.approx(50.0)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("execution", ["ensemble", "open_loop"])
def test_the_onnx_controller_acts_as_the_pytorch_policy(cnn, execution, runtime):
    """The exported file acts as the PyTorch policy in either runtime (OpenVINO: within bfloat16 rounding where the
    CPU computes bfloat16 natively)."""
    if runtime == "openvino":
        if importlib.util.find_spec("openvino") is None:  # not imported here: the controller imports it (stderr guard)
            pytest.skip("openvino is not installed (the deploy extra)")
    policy = load_policy(cnn[0], chunk_execution=execution)
    sim = loop.SimSource(policy.task, **policy.env_kwargs)
    torch_ctl, onnx_ctl = loop.TorchController(policy), loop.OnnxController(cnn[1], execution, runtime=runtime)
    assert onnx_ctl.image_size == torch_ctl.image_size == (32, 32) and onnx_ctl.proprio_dim == 4
    torch_ctl.reset(), onnx_ctl.reset()
    for _ in range(5):  # more steps than the chunk: the ensemble's history and open loop's refills both matter
        frame = sim.read()
        expected = torch_ctl.act(frame.image, frame.proprio)
        got = onnx_ctl.act(frame.image, frame.proprio)
        np.testing.assert_allclose(got, expected, atol=1e-4 if runtime == "onnxruntime" else 2e-2)
        sim.send(expected)
    sim.close()


def test_onnx_on_a_folder_and_a_video(cnn, frames_dir, tmp_path, capsys):
    report = loop.main(["--policy", str(cnn[0]), "--onnx", str(cnn[1]), "--source", f"folder:{frames_dir}",
                        "--rate-hz", "1000", "--steps", "10", "--log", str(tmp_path / "folder.csv")])
    assert np.stack(report.actions).shape == (3, 4) and len(read_csv(tmp_path / "folder.csv")) == 3
    assert capsys.readouterr().out.count("move tcp by") == 3  # the print sink: one command per step
    video = tmp_path / "clip.mp4"
    imageio.mimsave(video, [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)], fps=10, macro_block_size=1)
    report = loop.main(["--policy", str(cnn[0]), "--source", f"video:{video}", "--rate-hz", "1000",
                        "--steps", "10", "--log", str(tmp_path / "video.csv")])
    assert len(report.rows) == 4 and np.abs(np.stack(report.actions)).max() <= 1.0


def test_the_onnx_controller_runs_without_torch(cnn):
    """A deployed controller needs onnxruntime and NumPy only: acting (ensemble included) never imports torch."""
    import subprocess

    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import robot_loop; "
            "c = robot_loop.OnnxController(sys.argv[2]); c.reset(); "
            "a = [c.act(np.zeros((32, 32, 3), np.uint8), np.zeros(4, np.float32)) for _ in range(4)]; "
            "print(np.stack(a).shape, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples"), str(cnn[1])], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["(4,", "4)", "False"]
