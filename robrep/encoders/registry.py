"""One registry of named encoders (names = ``configs/encoder/<name>.yaml``) and of encoder families.

A *family* is an :class:`Encoder` subclass (``mae``, ``dift``, ``voltron``, ``clip``), found by its
``family`` attribute when a checkpoint is loaded. A *name* is a factory registered with
:func:`register_encoder` that builds an encoder from hyperparameters and optional weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from robrep.encoders.base import Encoder

Factory = Callable[..., Encoder]
_FACTORIES: dict[str, Factory] = {}
_DEFAULT_READOUT: dict[str, str] = {}
_FAMILIES: dict[str, type[Encoder]] = {}


def register_family(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator: make ``cls`` loadable from checkpoints by ``cls.family``."""
    _FAMILIES[cls.family] = cls
    return cls


def register_encoder(name: str, default_readout: str = "attention") -> Callable[[Factory], Factory]:
    """Function decorator: register ``factory(weights=None, **cfg) -> Encoder`` under ``name``."""

    def wrap(factory: Factory) -> Factory:
        if name in _FACTORIES:
            raise ValueError(f"encoder {name!r} registered twice")
        _FACTORIES[name] = factory
        _DEFAULT_READOUT[name] = default_readout
        return factory

    return wrap


def _ensure_builtin() -> None:
    import robrep.encoders.families  # noqa: F401  (registers the built-in families and names)


def list_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    _ensure_builtin()
    return sorted(_FACTORIES)


def family_class(family: str) -> type[Encoder]:
    """The :class:`Encoder` subclass of ``family``."""
    _ensure_builtin()
    if family not in _FAMILIES:
        raise KeyError(f"unknown encoder family {family!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[family]


def default_readout(name: str) -> str:
    """The readout a head uses with this encoder unless configured otherwise."""
    _ensure_builtin()
    return _DEFAULT_READOUT.get(name, "attention")


def build_encoder(name: str, weights: str | None = None, **cfg: Any) -> Encoder:
    """The registered factory's encoder, trainable (not frozen): for pretraining and fine-tuning."""
    _ensure_builtin()
    if name not in _FACTORIES:
        raise KeyError(f"unknown encoder {name!r}; registered: {sorted(_FACTORIES)}")
    return _FACTORIES[name](weights=weights, **cfg)


def load_encoder(
    name: str,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    frozen: bool = True,
    **cfg: Any,
) -> Encoder:
    """Build a frozen encoder (``frozen=False``: the same weights, trainable, for fine-tuning).

    ``name`` is a registered name (``"mae"``) or the path of a robrep encoder checkpoint
    (``*.pt``). ``weights`` is ``None`` (random init), a robrep checkpoint path, or a public
    format the family understands (see each family's docstring). ``cfg`` overrides the
    architecture hyperparameters of the registered name.
    """
    _ensure_builtin()
    from robrep.encoders.weights import load_checkpoint_as, split_weights

    if name not in _FACTORIES:
        if not (Path(name).suffix == ".pt" or Path(name).exists()):
            raise KeyError(f"unknown encoder {name!r}; registered: {sorted(_FACTORIES)} (or pass a checkpoint path)")
        encoder = load_checkpoint_as(name, **cfg)
    elif weights is not None and split_weights(weights)[0] == "" and Path(weights).suffix == ".pt":
        encoder = load_checkpoint_as(weights, **cfg)
    else:
        encoder = build_encoder(name, weights=weights, **cfg)
    encoder = encoder.to(device=device, dtype=dtype)
    return encoder.freeze() if frozen else encoder
