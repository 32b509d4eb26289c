"""One registry of named encoders (names = ``configs/encoder/<name>.yaml``) and of encoder families.

A *family* is an :class:`Encoder` subclass (``mae``, ``dift``, ``voltron``, ``clip``), found by its
``family`` attribute when a checkpoint is loaded. A *name* is a factory registered with
:func:`register_encoder` that builds an encoder from hyperparameters and optional weights.

Built-in families live one per module (:data:`BUILTIN_MODULES`); a module is imported only when its name or
family is first asked for, so loading an MAE encoder never imports diffusers (DIFT) or any pretraining code.
An encoder's default readout is not registry data: it is ``readout:`` in its ``configs/encoder/<name>.yaml``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from robrep.encoders.base import Encoder

Factory = Callable[..., Encoder]
_FACTORIES: dict[str, Factory] = {}
_FAMILIES: dict[str, type[Encoder]] = {}

#: Built-in registry names (= family names) → the module that registers them, imported on first use.
BUILTIN_MODULES: dict[str, str] = {
    "mae": "robrep.encoders.mae",
    "dift": "robrep.encoders.dift",
    "voltron": "robrep.encoders.voltron",
    "clip": "robrep.encoders.clip",
    "dinov2": "robrep.encoders.dinov2",
    "r3m": "robrep.encoders.r3m",
    "vc1": "robrep.encoders.vc1",
}


def register_family(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make ``cls`` loadable from checkpoints by ``cls.family``."""
    _FAMILIES[cls.family] = cls
    return cls


def register_encoder(name: str) -> Callable[[Factory], Factory]:
    """Function decorator: register ``factory(weights=None, **cfg) -> Encoder`` under ``name``."""

    def wrap(factory: Factory) -> Factory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"encoder {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return wrap


def _import_builtin(name: str) -> None:
    """Import the built-in module that registers ``name`` (a registry or family name), if there is one."""
    module = BUILTIN_MODULES.get(name)
    if module is not None:
        importlib.import_module(module)


def list_encoders() -> list[str]:
    """Registered encoder names, sorted (imports every built-in family module)."""
    for name in BUILTIN_MODULES:
        _import_builtin(name)
    return sorted(_FACTORIES)


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered encoder name (imports only that name's module)."""
    _import_builtin(name)
    return name in _FACTORIES


def family_class(family: str) -> type[Encoder]:
    """The :class:`Encoder` subclass of ``family`` (imports only that family's module)."""
    _import_builtin(family)
    if family not in _FAMILIES:
        raise KeyError(f"unknown encoder family {family!r}; known: {sorted(set(_FAMILIES) | set(BUILTIN_MODULES))}")
    return _FAMILIES[family]


def build_encoder(name: str, weights: str | None = None, **cfg: Any) -> Encoder:
    """The registered factory's encoder, trainable (not frozen): for pretraining and fine-tuning."""
    if not is_registered(name):
        raise KeyError(f"unknown encoder {name!r}; registered: {list_encoders()}")
    return _FACTORIES[name](weights=weights, **cfg)
