"""Behaviour cloning on frozen encoder features (baselines: a from-scratch CNN, a fine-tuned encoder).

Modules, one job each: ``normalization`` (training statistics), ``trunks`` (frozen-feature readouts),
``cnn`` (from-scratch image trunks, random-shift augmentation), ``finetune`` (pretrained encoder with its
last blocks fine-tuned end to end), ``heads`` (MLP / Gaussian-mixture),
``model`` (trunk + proprio + frame stack + head), ``datasets`` (training tensors from the feature cache
and the demo file), ``train`` (the loop and :func:`train_policy`), ``checkpoint`` (one file per policy),
``chunking`` (ACT temporal ensembling), ``policy`` (:class:`Policy`, :func:`load_policy`).

Loading a policy never imports its training code: every public name is imported from its module on first use
of the name (``train_policy`` from ``policies.train``).
"""

import importlib
from typing import Any

#: Public names → the module that defines them, imported on first use (PEP 562): ``import policies.chunking``
#: stays torch-free, and loading a policy never imports the training code.
_EXPORTS = {"EncoderSpec": "robrep.encoders.spec", "Policy": "policies.policy",
            "PolicyCheckpointError": "policies.checkpoint", "load_policy": "policies.policy",
            "train_policy": "policies.train"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
