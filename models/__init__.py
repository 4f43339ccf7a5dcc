"""Pose networks: ConvNeXtPose (torch) and BlazePose (LiteRT, models/blazepose/). Knows nothing of
the application.

The ConvNeXtPose names below are imported on first use, so that importing models.blazepose (the
fallback, which must start where torch is absent or slow to load) does not import torch."""
from importlib import import_module

_LAZY = {
    "CheckpointError": "checkpoint", "CheckpointNotFoundError": "checkpoint",
    "CorruptCheckpointError": "checkpoint", "InconsistentShapesError": "checkpoint",
    "NotACheckpointError": "checkpoint", "NotConvNeXtPoseError": "checkpoint",
    "UnsafeCheckpointError": "checkpoint", "infer_config": "checkpoint",
    "load_convnextpose": "checkpoint", "read_state_dict": "checkpoint",
    "resolve_device": "checkpoint",
    "VARIANTS": "convnextpose", "ConvNeXtPose": "convnextpose",
    "ConvNeXtPoseConfig": "convnextpose", "build_convnextpose": "convnextpose",
    "optimize_for_inference": "optimize",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
