"""ConvNeXtPose networks. Knows nothing of the application."""
from .checkpoint import (CheckpointError, CheckpointNotFoundError, CorruptCheckpointError,
                         InconsistentShapesError, NotACheckpointError, NotConvNeXtPoseError,
                         UnsafeCheckpointError, infer_config, load_convnextpose, read_state_dict,
                         resolve_device)
from .convnextpose import VARIANTS, ConvNeXtPose, ConvNeXtPoseConfig, build_convnextpose
from .optimize import optimize_for_inference

__all__ = [
    "build_convnextpose", "load_convnextpose", "read_state_dict", "infer_config", "resolve_device",
    "optimize_for_inference", "ConvNeXtPose", "ConvNeXtPoseConfig", "VARIANTS",
    "CheckpointError", "CheckpointNotFoundError", "NotACheckpointError", "CorruptCheckpointError",
    "UnsafeCheckpointError", "NotConvNeXtPoseError", "InconsistentShapesError",
]
