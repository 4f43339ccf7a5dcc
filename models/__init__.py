"""Pose networks: ConvNeXtPose (torch) and BlazePose (LiteRT, models/blazepose/). Knows nothing of
the application.

The ConvNeXtPose names below are imported on first use, so that importing models.blazepose (the
fallback, which must start where torch is absent or slow to load) does not import torch. The
checkpoint errors live in models/errors.py, without torch, so that the command line can catch
them on the fallback's path too."""
from importlib import import_module

from .errors import (CheckpointError, CheckpointNotFoundError, CorruptCheckpointError,
                     InconsistentShapesError, NotACheckpointError, NotConvNeXtPoseError,
                     UnsafeCheckpointError)

_LAZY = {
    "infer_config": "checkpoint", "load_convnextpose": "checkpoint", "read_state_dict": "checkpoint",
    "resolve_device": "checkpoint",
    "VARIANTS": "convnextpose", "ConvNeXtPose": "convnextpose",
    "ConvNeXtPoseConfig": "convnextpose", "build_convnextpose": "convnextpose",
    "optimize_for_inference": "optimize",
}

__all__ = sorted([*_LAZY, "CheckpointError", "CheckpointNotFoundError", "CorruptCheckpointError",
                  "InconsistentShapesError", "NotACheckpointError", "NotConvNeXtPoseError",
                  "UnsafeCheckpointError"])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
