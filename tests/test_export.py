"""Export: a policy (frozen-feature MLP head, from-scratch CNN) or an encoder as one ONNX / TorchScript file that
reproduces the PyTorch network on real frames, run without robrep's classes; `robrep export` end to end."""

import importlib.util

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from policies import EncoderSpec, load_policy, train_policy
from policies.export import Runner, export_encoder, export_policy
from robrep.config import config_dir
from robrep.data.collect import collect_demos
from robrep.data.demo_file import DemoFile
from robrep.encoders import load_encoder, save_checkpoint

ARCH = dict(input_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def policy_cfg(name: str, **overrides) -> dict:
    base = OmegaConf.load(f"{config_dir()}/policy/mlp.yaml")
    if name != "mlp":
        own = OmegaConf.load(f"{config_dir()}/policy/{name}.yaml")
        own.pop("defaults")
        base = OmegaConf.merge(base, own)
    if name == "mlp":
        base.readout = "spatial_softmax"
    return OmegaConf.to_container(OmegaConf.merge(base, {"train": {"steps": 30, "eval_every": 10, "evals": None,
                                                                  "precision": "float32"}}, overrides),
                                  resolve=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    demos = root / "push.hdf5"
    collect_demos("push", 4, demos, image_size=32, subset_sizes=(3,), subset_seeds=(0,), progress=False)
    torch.manual_seed(0)
    enc = root / "mae.pt"
    save_checkpoint(load_encoder("mae", **ARCH), enc)
    policies = {}
    for name, spec in (("mlp", EncoderSpec("mae", str(enc), ARCH)), ("cnn", None)):
        out = root / f"{name}.pt"
        train_policy(policy_cfg(name, chunk=3), demos, 3, 0, out, spec, cache_dir=root / "cache")
        policies[name] = out
    with DemoFile(demos) as d:
        ep = d.episode("demo_3")
    return policies, ep["obs"]["image"][:6], ep["obs"]["proprio"][:6], enc


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_an_exported_policy_reproduces_pytorch_on_real_frames(setup, tmp_path, name, fmt):
    policies, images, proprio, _ = setup
    policy = load_policy(policies[name])
    report = export_policy(policy, tmp_path / f"p.{fmt}", fmt, images)
    assert report["max_abs_diff"] < 1e-4 and report["frames"] == 6
    run = Runner(report["path"])  # plain onnxruntime / torch.jit: no robrep class involved
    chunk = run(images, proprio)
    assert chunk.shape == (6, 3, 4) and np.abs(chunk).max() <= 1.0
    policy.reset(6)
    np.testing.assert_allclose(chunk[:, 0], policy.act({"image": images, "proprio": proprio}), atol=1e-4)
    assert run(images[:1], proprio[:1]).shape == (1, 3, 4)  # the batch axis is dynamic


def test_an_exported_encoder_gives_the_tokens(setup, tmp_path):
    encoder = load_encoder("mae", weights=str(setup[3]), **ARCH)
    report = export_encoder(encoder, tmp_path / "enc.onnx", "onnx", setup[1])
    assert report["max_abs_diff"] < 1e-4
    tokens, glob = Runner(report["path"])(setup[1])
    assert tokens.shape == (6, 16, 32) and glob.shape == (6, 32)
    with torch.no_grad():
        np.testing.assert_allclose(tokens, encoder.encode_images(setup[1]).tokens.numpy(), atol=1e-4)


def test_robrep_export_command(setup, tmp_path, capsys):
    from robrep.cli import main

    out = tmp_path / "mlp.ts"
    assert main(["export", f"checkpoint={setup[0]['mlp']}", "format=torchscript", f"out={out}",
                 "check_frames=4"]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 1000 and "differ by at most" in printed
    enc_out = tmp_path / "enc.onnx"  # no checkpoint: the encoder alone, tokens out
    assert main(["export", "encoder=mae", "weights=null", *(f"encoder.arch.{k}={v}" for k, v in ARCH.items()),
                 "task.image_size=32", f"out={enc_out}", "check_frames=3"]) == 0
    assert "tokens (B, N, D)" in capsys.readouterr().out and enc_out.stat().st_size > 1000


def test_the_default_onnx_file_is_lossless_and_int8_is_opt_in(setup, tmp_path):
    """``format=onnx`` writes the float32 graph (no quantized operator), matching PyTorch within the bound on real
    frames; ``quantize="int8"`` — asked for only — writes int8 MatMul weights and reports its (larger) difference
    truthfully; int8 is refused for TorchScript."""
    import onnx

    policies, images, proprio, _ = setup
    policy = load_policy(policies["mlp"])
    default = export_policy(policy, tmp_path / "p.onnx", "onnx", images)
    ops = {n.op_type for n in onnx.load(default["path"]).graph.node}
    assert default["quantize"] is None and default["max_abs_diff"] < 1e-4
    assert not ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    int8 = export_policy(load_policy(policies["mlp"]), tmp_path / "q.onnx", "onnx", images, quantize="int8")
    int8_ops = {n.op_type for n in onnx.load(int8["path"]).graph.node}
    assert int8["quantize"] == "int8" and int8_ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert int8["max_abs_diff_float32"] < 1e-4 and sorted(p.name for p in tmp_path.iterdir()) == ["p.onnx", "q.onnx"]
    policy.reset(6)
    expected = policy.act({"image": images, "proprio": np.zeros_like(proprio)})
    got = Runner(int8["path"])(images, np.zeros_like(proprio))[:, 0]
    assert np.isclose(np.abs(got - expected).max(), int8["max_abs_diff"], atol=1e-4)
    with pytest.raises(ValueError, match="quantize"):
        export_policy(policy, tmp_path / "p.ts", "torchscript", images, quantize="int8")


class Recording:
    """A policy whose actions are kept (``evaluate`` sees the wrapped policy's interface)."""

    def __init__(self, inner):
        self.inner, self.actions = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def act(self, obs):
        self.actions.append(self.inner.act(obs))
        return self.actions[-1]


@pytest.mark.parametrize("execution", ["open_loop", "ensemble"])
def test_an_exported_file_evaluates_closed_loop_like_its_policy(setup, tmp_path, execution):
    """:class:`policies.exported.ExportedPolicy` runs the ONNX file in ``evaluate`` with the checkpoint's chunk
    execution: on the same layouts it takes the same actions as ``Policy.act`` at every step, and, open-loop, calls
    the file once per chunk per env."""
    from policies.exported import ExportedPolicy
    from robrep.eval.rollouts import evaluate

    policies, images, _, _ = setup
    policy = Recording(load_policy(policies["mlp"], chunk_execution=execution))
    expected = evaluate(policy, 4, num_envs=2, progress=False, max_steps=7)
    report = export_policy(policy.inner, tmp_path / "p.onnx", "onnx", images)
    exported = Recording(ExportedPolicy(report["path"], policy.meta))
    got = evaluate(exported, 4, num_envs=2, progress=False, max_steps=7)
    assert exported.task == "push" and exported.chunk_execution == execution
    assert len(exported.actions) == len(policy.actions) == 14 and list(got.success) == list(expected.success)
    np.testing.assert_allclose(np.stack(exported.actions), np.stack(policy.actions), atol=1e-4)
    if execution == "open_loop":
        assert exported.encoded_frames == 4 * 3  # ceil(7 steps / chunk 3) calls per episode
    inner, proprio = exported.inner, np.zeros((3, policy.model.proprio_dim), np.float32)
    inner.reset(2)
    inner.act({"image": images[:2], "proprio": proprio[:2]})
    with pytest.raises(ValueError, match="reset"):  # mid-episode, a batch of another size is refused
        inner.act({"image": images[:3], "proprio": proprio})


def test_export_fidelity_pairs_episodes_with_mcnemar():
    from benchmarks.export_fidelity import mcnemar

    a = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool)
    assert mcnemar(a, a) == (0, 0, 1.0)
    only_a, only_b, p = mcnemar(a, np.zeros(8, bool))  # 6 discordant, all one way: 2 × 0.5^6
    assert (only_a, only_b) == (6, 0) and p == pytest.approx(2 * 0.5 ** 6)


def test_openvino_runs_the_exported_onnx_file(setup, tmp_path):
    """The same float32 ONNX file in OpenVINO (``runtime="openvino"``): at ``precision="f32"`` it gives onnxruntime's
    actions, its default precision is reported (bfloat16 only where the CPU computes it natively) and stays close,
    the batch axis stays dynamic, and it acts closed-loop through :class:`ExportedPolicy` like the PyTorch policy."""
    if importlib.util.find_spec("openvino") is None:  # not imported here: Runner imports it (stderr guard)
        pytest.skip("openvino is not installed (the deploy extra)")
    from policies.exported import ExportedPolicy
    from robrep.eval.rollouts import evaluate

    policies, images, proprio, _ = setup
    policy = Recording(load_policy(policies["mlp"], chunk_execution="open_loop"))
    evaluate(policy, 2, num_envs=2, progress=False, max_steps=5)
    path = export_policy(policy.inner, tmp_path / "p.onnx", "onnx", images)["path"]
    reference = Runner(path)(images, proprio)
    f32, native = Runner(path, runtime="openvino", precision="f32"), Runner(path, threads=1, runtime="openvino")
    assert f32.runtime == "openvino" and f32.precision == "float32" and native.precision in ("float32", "bfloat16")
    np.testing.assert_allclose(f32(images, proprio), reference, atol=1e-5)
    np.testing.assert_allclose(native(images, proprio), reference, atol=5e-2)
    assert f32(images[:1], proprio[:1]).shape == (1, 3, 4)
    exported = Recording(ExportedPolicy(path, policy.meta, runtime="openvino", precision="f32"))
    evaluate(exported, 2, num_envs=2, progress=False, max_steps=5)
    np.testing.assert_allclose(np.stack(exported.actions), np.stack(policy.actions), atol=1e-4)
    with pytest.raises(ValueError, match="runtime"):
        Runner(path, runtime="tensorrt")
    ts = export_policy(policy.inner, tmp_path / "p.ts", "torchscript", images)["path"]
    with pytest.raises(ValueError, match="TorchScript"):
        Runner(ts, runtime="openvino")


def test_importing_openvino_leaves_a_redirected_stderr_open():
    """OpenVINO's import pulls in absl logging, whose handler keeps the stderr of import time and closes it at logging
    shutdown if it is no longer ``sys.stderr``: imported under a redirect (pytest's capture, a user's log file), the
    owner's stream would be closed. ``import_openvino`` gives it the process's own stderr (a fresh interpreter, so
    the import really happens here)."""
    import subprocess
    import sys

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed (the deploy extra)")
    code = ("import contextlib, io, logging; buf = io.StringIO()\n"
            "with contextlib.redirect_stderr(buf):\n"
            "    from policies.export import import_openvino; import_openvino()\n"
            "logging.shutdown(); print('closed' if buf.closed else 'open')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "open"
