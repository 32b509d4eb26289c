"""robrep.launch: every launcher maps a function over picklable items in order, keeps going past a failing
item, and builds from its configs/launcher/*.yaml; Ray's default is a private loopback instance, gone after."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cloudpickle
import pytest
from omegaconf import OmegaConf

from robrep.config import config_dir
from robrep.launch import LAUNCHERS, InProcess, Joblib, Outcome, Ray, Submitit, make_launcher

# Workers started by submitit and Ray cannot import this test module: ship its functions and classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class Spec:
    x: int


def square(spec: Spec) -> int:
    if spec.x < 0:
        raise ValueError(f"negative spec {spec.x}")
    return spec.x * spec.x


def square_and_node(spec: Spec) -> tuple[int, str]:
    import ray

    return square(spec), ray.util.get_node_ip_address()


def torch_threads(spec: Spec) -> int:
    import torch

    return torch.get_num_threads()


SPECS = [Spec(3), Spec(-1), Spec(1), Spec(2)]


def assert_in_order_past_the_failure(outcomes: list[Outcome], values: list) -> None:
    """One outcome per spec, in order: values for the good specs, the ValueError's traceback for Spec(-1)."""
    assert [o.item for o in outcomes] == SPECS
    assert [o.value for o in outcomes if o.ok] == values and [o.ok for o in outcomes] == [True, False, True, True]
    assert outcomes[1].value is None and "ValueError: negative spec -1" in outcomes[1].error


@pytest.mark.parametrize("make", [InProcess, lambda: Joblib(n_jobs=2)], ids=["inprocess", "joblib"])
def test_local_launchers_map_in_order_past_a_failure(make):
    assert_in_order_past_the_failure(make().map(square, SPECS), [9, 1, 4])


def test_submitit_local_maps_in_order_past_a_failure(tmp_path):
    pytest.importorskip("submitit")
    launcher = Submitit(folder=str(tmp_path / "submitit"), cluster="local", timeout_min=5)
    assert_in_order_past_the_failure(launcher.map(square, SPECS), [9, 1, 4])


def test_ray_default_is_a_private_loopback_instance_shut_down_after():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray pickles with its own cloudpickle copy
    assert not ray.is_initialized()
    environ = dict(os.environ)
    outcomes = Ray(num_cpus=2).map(square_and_node, SPECS)
    assert_in_order_past_the_failure(outcomes, [(9, "127.0.0.1"), (1, "127.0.0.1"), (4, "127.0.0.1")])
    assert not ray.is_initialized() and dict(os.environ) == environ  # no usage-stats variable left behind


def test_threads_per_job_applies_inside_the_call_and_is_restored():
    import torch

    before, environ_omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        torch.set_num_threads(2)
        assert [o.value for o in InProcess(threads_per_job=3).map(torch_threads, SPECS[:1])] == [3]
        assert torch.get_num_threads() == 2
        # n_jobs > 1: one thread per call by default (a thread pool here, so the check sees this process's torch)
        assert [o.value for o in Joblib(n_jobs=2, backend="threading").map(torch_threads, SPECS[:1])] == [1]
        assert torch.get_num_threads() == 2 and os.environ.get("OMP_NUM_THREADS") == environ_omp
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name, cls", [("inprocess", InProcess), ("joblib", Joblib), ("submitit_local", Submitit),
                                       ("slurm", Submitit), ("ray", Ray)])
def test_make_launcher_builds_each_config(name, cls):
    cfg = OmegaConf.load(Path(config_dir()) / "launcher" / f"{name}.yaml")
    launcher = make_launcher(cfg)
    assert type(launcher) is cls and LAUNCHERS[cfg.name] is cls
    if name == "ray":
        assert launcher.address is None  # a private local instance, never "auto"
    if name == "slurm":
        assert launcher.cluster == "slurm" and launcher.slurm["mem_gb"] == 8


def test_launcher_configs_are_exactly_the_group():
    assert sorted(p.stem for p in (Path(config_dir()) / "launcher").glob("*.yaml")) == [
        "inprocess", "joblib", "ray", "slurm", "submitit_local"]
    assert not (Path(config_dir()) / "hydra" / "launcher" / "ray.yaml").exists()
    with pytest.raises(ValueError, match="unknown launcher"):
        make_launcher({"name": "dask"})


def test_slurm_options_are_valid_submitit_parameters(tmp_path):
    submitit = pytest.importorskip("submitit")
    cfg = OmegaConf.load(Path(config_dir()) / "launcher" / "slurm.yaml")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")  # raises on an unknown slurm_* name
    executor.update_parameters(timeout_min=cfg.timeout_min, cpus_per_task=cfg.cpus_per_task,
                               **{f"slurm_{k}": v for k, v in cfg.slurm.items()})
    assert make_launcher(cfg).cluster == "slurm" and make_launcher(cfg).slurm["mem_gb"] == cfg.slurm.mem_gb


def test_the_sweeps_jobs_set_joblibs_n_jobs():
    from robrep.config import compose

    assert make_launcher(compose("sweep", ["jobs=3"]).launcher).n_jobs == 3
    assert type(make_launcher(compose("sweep", ["launcher=ray"]).launcher)) is Ray
