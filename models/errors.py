"""Why a checkpoint could not be used. No torch here: the command line catches these without
loading torch, which the BlazePose fallback never needs."""


class CheckpointError(ValueError):
    """A checkpoint could not be used. The message is one sentence naming the file."""


class CheckpointNotFoundError(CheckpointError):
    pass


class NotACheckpointError(CheckpointError):
    pass


class CorruptCheckpointError(CheckpointError):
    pass


class UnsafeCheckpointError(CheckpointError):
    pass


class NotConvNeXtPoseError(CheckpointError):
    pass


class InconsistentShapesError(CheckpointError):
    pass
