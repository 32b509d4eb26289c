"""Library messages go through ``logging`` (plain lines on stdout, timestamped in a Hydra run's ``<command>.log``) and
``tensorboard=true`` writes the training and pretraining scalars (off by default: no event file)."""

import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from policies import train_policy
from robrep.cli import main
from robrep.config import compose, config_dir
from robrep.data.collect import collect_demos
from robrep.logs import StdoutHandler, console_logging
from robrep.sweep.cell import CellSpec

CNN = ["policy=cnn", "policy.train.steps=6", "policy.train.eval_every=2", "policy.train.evals=null",
       "policy.train.epochs=null", "policy.train.precision=float32", "policy.cnn.channels=8", "progress=false"]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    collect_demos("push", 4, path, image_size=32, subset_sizes=(3,), subset_seeds=(0,), progress=False)
    return path


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the TensorBoard run in ``log_dir``: tag → [(step, value)]."""
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def cnn_cfg() -> dict:
    cnn = {k: v for k, v in OmegaConf.load(f"{config_dir()}/policy/cnn.yaml").items() if k != "defaults"}
    base = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/policy/mlp.yaml"), cnn)
    return OmegaConf.to_container(OmegaConf.merge(base, {"cnn": {"channels": 8}, "train": {
        "steps": 6, "eval_every": 2, "evals": None, "epochs": None, "precision": "float32"}}), resolve=True)


def test_train_policy_writes_the_loss_scalars_only_when_asked(demos, tmp_path):
    tb = tmp_path / "tb"
    summary = train_policy(cnn_cfg(), demos, 3, 0, tmp_path / "on.pt", tensorboard=tb)
    series = scalars(tb)
    assert {"train/loss", "valid/mse", "train/lr", "train/steps_per_s"} <= set(series)
    assert [s for s, _ in series["train/loss"]] == [h["step"] for h in summary["train"]["history"]] == [2, 4, 6]
    assert [v for _, v in series["valid/mse"]] == pytest.approx([h["valid_mse"] for h in summary["train"]["history"]])
    assert all(v == pytest.approx(cnn_cfg()["train"]["lr"]) for _, v in series["train/lr"])
    assert all(v > 0 for _, v in series["train/steps_per_s"])
    train_policy(cnn_cfg(), demos, 3, 0, tmp_path / "off.pt")  # the default: off
    assert not [p for p in tmp_path.rglob("events.out.tfevents.*") if tb not in p.parents]


def test_robrep_train_logs_to_stdout_and_the_hydra_run_log_and_tensorboard(demos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", f"dataset={demos}", "n=3", "out=policies/cnn.pt", "tensorboard=true", *CNN]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("policy: ")]
    assert lines == ["policy: policies/cnn.pt"]  # a plain line, as print gave it
    (run_log,) = Path("runs/train").glob("*/train.log")  # Hydra's run directory and file handler
    text = run_log.read_text()
    assert "[robrep.commands.train][INFO] - policy: policies/cnn.pt" in text and "3 train demos" in text
    assert "train/loss" in scalars(Path("runs/tb/train/cnn"))
    capsys.readouterr()
    assert main(["train", f"dataset={demos}", "n=3", "out=policies/cnn2.pt", *CNN]) == 0  # off by default
    assert not Path("runs/tb/train/cnn2").exists()


def test_robrep_pretrain_tensorboard(demos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arch = ["encoder.arch.depth=1", "encoder.arch.embed_dim=32", "encoder.arch.num_heads=2"]
    assert main(["pretrain", "encoder=mae", f"data=[{demos}]", "steps=3", "encoder.pretrain.batch_size=4",
                 "out=enc.pt", "progress=false", "tensorboard=true", *arch]) == 0
    series = scalars(Path("runs/tb/pretrain/enc"))
    assert [s for s, _ in series["pretrain/loss"]] == [1] and "pretrain/lr" in series
    assert "pretrain/steps_per_s" in series


def test_a_sweep_cell_trains_with_tensorboard_under_the_sweep_name_and_the_same_policy_key(demos):
    common = ["arm=cnn", f"dataset={demos}", "sweep_dir=runs/sweeps/push_x"]
    off, on = (CellSpec.from_cfg(compose("cell", common + extra)) for extra in ([], ["tensorboard=true"]))
    assert off.tensorboard is None and on.tensorboard == str(Path("runs/tb/push_x/cnn_n10_s0"))
    assert on.policy_key == off.policy_key  # logging is no input of the policy


def test_library_loggers_print_plain_lines_where_stdout_is_now(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        console_logging()
        console_logging()  # idempotent: one handler
        assert len(root.handlers) == 1 and isinstance(root.handlers[0], StdoutHandler)
        logging.getLogger("robrep.sweep.cell").info("cnn_n10_s0: done already")
        assert capsys.readouterr().out == "cnn_n10_s0: done already\n"
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
