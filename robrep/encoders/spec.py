"""How to rebuild a frozen encoder: :class:`EncoderSpec`, the one factory from a command config to an encoder.

Every command and library function that needs "the encoder of this config" builds it through
:meth:`EncoderSpec.from_cfg` and :meth:`EncoderSpec.load`; policy checkpoints, feature caches and world models
record :meth:`EncoderSpec.to_dict`, and :meth:`EncoderSpec.from_record` rebuilds the spec from that record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from robrep.encoders.base import Encoder
from robrep.encoders.load import load_encoder
from robrep.encoders.weights import split_weights
from robrep.precision import check_precision


@dataclass
class EncoderSpec:
    """How to rebuild a frozen encoder with :func:`robrep.encoders.load.load_encoder`.

    ``name`` is a registry name (``configs/encoder/<name>.yaml``) or an encoder checkpoint path;
    ``weights`` a ``weights=`` spec (``None`` = random init, drawn under ``torch.manual_seed(init_seed)``);
    ``arch`` the architecture keyword arguments. ``weights_resolved`` is the absolute path of a plain-file
    ``weights`` when it was recorded, tried when the relative one does not exist (another working dir).
    ``precision`` the compute precision of its forward passes (``float32`` | ``bfloat16`` autocast).
    """

    name: str
    weights: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    init_seed: int = 0
    weights_resolved: str | None = None
    precision: str = "float32"    # the frozen encoder's compute precision (robrep.precision); part of the cache key

    def __post_init__(self) -> None:
        self.precision = check_precision(self.precision)
        if self.weights is not None:
            self.weights = str(self.weights)
            if self.weights_resolved is None and split_weights(self.weights)[0] == "" and Path(self.weights).exists():
                self.weights_resolved = str(Path(self.weights).resolve())

    @property
    def label(self) -> str:
        """Short name for file names: the registry name, or a checkpoint's stem."""
        return Path(self.name).stem

    @property
    def run_label(self) -> str:
        """:attr:`label`, with ``_random`` for random init (``weights=None``): the sweep's arm name of a control."""
        return self.label if self.weights else f"{self.label}_random"

    def load(self, device: str | torch.device = "cpu", frozen: bool = True) -> Encoder:
        """The frozen encoder (random init is reproducible: a forked RNG seeded with ``init_seed``);
        ``frozen=False``: the same weights, trainable (a fresh module, for fine-tuning)."""
        weights = self.weights
        if (weights is not None and split_weights(weights)[0] == "" and not Path(weights).exists()
                and self.weights_resolved and Path(self.weights_resolved).exists()):
            weights = self.weights_resolved
        if weights is not None:
            encoder = load_encoder(self.name, weights=weights, device=device, frozen=frozen, **self.arch)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                encoder = load_encoder(self.name, weights=None, device=device, frozen=frozen, **self.arch)
        return encoder.set_precision(self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "EncoderSpec":
        """The spec a checkpoint recorded (a policy's or world model's ``encoder`` entry: :meth:`to_dict` plus
        whatever else it stored beside it); ``precision`` defaults to float32 for records from before it existed."""
        return cls(**{k: record[k] for k in ("name", "weights", "arch", "init_seed", "weights_resolved")},
                   precision=record.get("precision", "float32"))

    @classmethod
    def from_cfg(cls, cfg: Any, precision: str | None = None) -> "EncoderSpec":
        """The spec of a command config: ``cfg.encoder.name`` and ``.arch`` (a ``configs/encoder`` group),
        ``cfg.weights``, ``cfg.encoder_seed`` and ``cfg.encoder_precision`` (``auto`` is resolved for ``cfg.device``;
        ``precision`` overrides it)."""
        from omegaconf import OmegaConf

        from robrep.precision import resolve_precision

        arch = cfg.encoder.get("arch")
        arch = (OmegaConf.to_container(arch, resolve=True) if OmegaConf.is_config(arch) else dict(arch)) if arch else {}
        return cls(str(cfg.encoder.name), cfg.get("weights"), arch, init_seed=int(cfg.get("encoder_seed", 0)),
                   precision=precision or resolve_precision(str(cfg.get("encoder_precision", "float32")),
                                                            str(cfg.get("device", "cpu"))))
