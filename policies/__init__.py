"""Behaviour cloning on frozen encoder features (baselines: a from-scratch CNN, a fine-tuned encoder).

Modules, one job each: ``normalization`` (training statistics), ``trunks`` (frozen-feature readouts),
``cnn`` (from-scratch image trunks, random-shift augmentation), ``finetune`` (pretrained encoder with its
last blocks fine-tuned end to end), ``heads`` (MLP / Gaussian-mixture),
``model`` (trunk + proprio + frame stack + head), ``datasets`` (training tensors from the feature cache
and the demo file), ``train`` (the loop and :func:`train_policy`), ``checkpoint`` (one file per policy),
``chunking`` (ACT temporal ensembling), ``policy`` (:class:`Policy`, :func:`load_policy`).

Loading a policy never imports its training code: ``train_policy`` is imported from ``policies.train`` on first
use of the name.
"""

from typing import Any

from policies.checkpoint import PolicyCheckpointError
from policies.policy import Policy, load_policy
from robrep.encoders.spec import EncoderSpec

__all__ = ["EncoderSpec", "Policy", "PolicyCheckpointError", "load_policy", "train_policy"]


def __getattr__(name: str) -> Any:
    if name == "train_policy":
        from policies.train import train_policy

        return train_policy
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
