"""Demonstration data: robomimic-layout HDF5 files (:mod:`robrep.data.demo_file`)."""

from robrep.data.demo_file import DemoFile, DemoFileError, DemoWriter, split_masks

__all__ = ["DemoFile", "DemoFileError", "DemoWriter", "split_masks"]
