"""Where the Hydra configs live and how library code composes them (no Hydra app needed).

The ``configs`` package holds every YAML; commands (``robrep <command>``), benchmarks and tests all find it
through :func:`config_dir` and compose a config with :func:`compose` — one place for the path and the Hydra
version base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

#: Hydra's version base for every app and compose call in the project.
VERSION_BASE = "1.3"


def config_dir() -> str:
    """Absolute path of the Hydra config folder (the ``configs`` package, installed or in the source tree)."""
    import configs

    return str(Path(configs.__file__).resolve().parent)


def compose(name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config ``configs/<name>.yaml`` composed with ``overrides``, as ``robrep <name> <overrides>`` sees it
    (without the ``hydra`` node's runtime values)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a running Hydra app: compose in a fresh context
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=VERSION_BASE):
        return hydra_compose(config_name=name, overrides=list(overrides), return_hydra_config=return_hydra_config)
