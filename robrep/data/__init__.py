"""Demonstration data: robomimic-layout HDF5 files (:mod:`robrep.data.demo_file`) and which of their obs keys
a policy reads (:mod:`robrep.data.obs_keys`)."""

from robrep.data.demo_file import DemoFile, DemoFileError, DemoWriter, split_masks
from robrep.data.obs_keys import ObsKeys

__all__ = ["DemoFile", "DemoFileError", "DemoWriter", "ObsKeys", "split_masks"]
