"""Frozen spatial encoders behind one interface (see ``base.py``) and one registry."""

from robrep.encoders.base import Encoder, SpatialFeatures
from robrep.encoders.checkpoint import WeightsMismatchError, load_checkpoint, save_checkpoint
from robrep.encoders.load import load_encoder
from robrep.encoders.registry import build_encoder, list_encoders, register_encoder, register_family

__all__ = ["Encoder", "SpatialFeatures", "WeightsMismatchError", "build_encoder", "list_encoders",
           "load_checkpoint", "load_encoder", "register_encoder", "register_family", "save_checkpoint"]
