"""Read ConvNeXtPose checkpoints safely, infer their architecture, and load them strictly.

Accepts the authors' release files as distributed (`ConvNeXtPose_L.tar`: a PyTorch zip archive
whose records sit under `snapshot_<epoch>.pth/`), and .pth / .pth.tar files; with or without
DataParallel's `module.` prefix; the `network` wrapper or a bare state dict. Only
`torch.load(weights_only=True)` is used, so a file that needs arbitrary unpickling is refused
before any of its code can run.
"""
from __future__ import annotations

import os
import pickle
import pickletools
import re
import zipfile

import torch

from .convnextpose import ConvNeXtPose, ConvNeXtPoseConfig

# Usual depth-bin counts, tried in order when the joint count is not 18.
_DEPTH_BIN_GUESSES = (64, 32, 16, 8)


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


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network's state dict from a checkpoint file, keys without the `module.` prefix."""
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"checkpoint '{path}' does not exist")
    if os.path.isdir(path):
        raise NotACheckpointError(f"checkpoint '{path}' is a folder, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CorruptCheckpointError(f"checkpoint '{name}' is empty")
    if not zipfile.is_zipfile(path) and _looks_like_truncated_zip(path):
        raise CorruptCheckpointError(f"checkpoint '{name}' is a truncated or corrupt archive")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch says the same for a pickle it will not run and for bytes that are no pickle at
        # all (a text file); only a well-formed pickle can be the malicious kind.
        if _holds_valid_pickle(path):
            raise UnsafeCheckpointError(
                f"checkpoint '{name}' was refused: it needs arbitrary code to unpickle, which could "
                "be malicious, and only plain tensors are loaded") from None
        raise NotACheckpointError(f"'{name}' is not a PyTorch checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as error:
        if zipfile.is_zipfile(path) or "zip" in str(error).lower():
            raise CorruptCheckpointError(f"checkpoint '{name}' is a truncated or corrupt archive") from None
        raise NotACheckpointError(f"'{name}' is not a PyTorch checkpoint") from None
    except Exception:  # torch raises assorted types for garbage input; none may escape as a traceback
        raise NotACheckpointError(f"'{name}' is not a PyTorch checkpoint") from None
    return _network_state(obj, name)


def _holds_valid_pickle(path: str) -> bool:
    """Whether the file's (first) pickle stream is well formed: its opcodes are walked with
    pickletools, which only reads them and never executes anything."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                record = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if record is None:
                    return False
                with archive.open(record) as stream:
                    for _ in pickletools.genops(stream):
                        pass
        else:
            with open(path, "rb") as stream:
                for _ in pickletools.genops(stream):
                    pass
    except Exception:
        return False
    return True


def _looks_like_truncated_zip(path: str) -> bool:
    """A zip archive that lost its end (central directory) still starts with the zip magic."""
    with open(path, "rb") as file:
        return file.read(4) == b"PK\x03\x04"


def _network_state(obj, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for wrapper in ("network", "state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise NotConvNeXtPoseError(f"checkpoint '{name}' holds no state dict")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise NotConvNeXtPoseError(f"checkpoint '{name}' holds no state dict (entry {key!r} is not a tensor)")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def infer_config(state: dict[str, torch.Tensor], name: str = "checkpoint") -> ConvNeXtPoseConfig:
    """Stage depths, dims, head width, depth bins and joint count, read off the tensor shapes."""
    required = ["backbone.downsample_layers.0.0.weight", "head.deconv_layers_1.pwconv.weight",
                "head.final_layer.weight"] + [f"backbone.downsample_layers.{i}.1.weight" for i in (1, 2, 3)]
    missing = [key for key in required if key not in state]
    if missing:
        raise NotConvNeXtPoseError(
            f"'{name}' is not a ConvNeXtPose state dict: it lacks {missing[0]}"
            + (f" and {len(missing) - 1} more ConvNeXtPose entries" if len(missing) > 1 else ""))
    dims = (state["backbone.downsample_layers.0.0.weight"].shape[0],
            *(state[f"backbone.downsample_layers.{i}.1.weight"].shape[0] for i in (1, 2, 3)))
    depths = []
    for stage in range(4):
        pattern = re.compile(rf"backbone\.stages\.{stage}\.(\d+)\.dwconv\.weight$")
        blocks = [int(m.group(1)) for key in state if (m := pattern.match(key))]
        depths.append(max(blocks) + 1 if blocks else 0)
    if 0 in depths:
        raise NotConvNeXtPoseError(
            f"'{name}' is not a ConvNeXtPose state dict: it has no blocks in backbone stage {depths.index(0)}")
    head_width = state["head.deconv_layers_1.pwconv.weight"].shape[0]
    outputs = state["head.final_layer.weight"].shape[0]
    joints, depth_bins = _split_outputs(outputs, name)
    return ConvNeXtPoseConfig(tuple(depths), tuple(int(d) for d in dims), int(head_width), depth_bins, joints)


def _split_outputs(outputs: int, name: str) -> tuple[int, int]:
    """J * D output channels -> (J, D). The product alone is ambiguous, so prefer the 18-joint
    set every released model uses, then the usual depth-bin counts."""
    if outputs % 18 == 0:
        return 18, outputs // 18
    for depth_bins in _DEPTH_BIN_GUESSES:
        if outputs % depth_bins == 0:
            return outputs // depth_bins, depth_bins
    raise InconsistentShapesError(
        f"checkpoint '{name}' has {outputs} output channels, which is not joints x depth bins of any usual shape")


def load_convnextpose(path: str | os.PathLike, device: str | torch.device = "cpu") -> ConvNeXtPose:
    """The eval-mode network stored in `path`, its architecture inferred from the file.
    `device="auto"` picks CUDA when it is available."""
    name = os.path.basename(os.fspath(path))
    state = read_state_dict(path)
    config = infer_config(state, name)
    model = ConvNeXtPose(config)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has an unexpected entry {unexpected[0]}"
        count = len(missing) + len(unexpected) - 1
        raise NotConvNeXtPoseError(
            f"'{name}' is not a ConvNeXtPose state dict: it {what}" + (f" ({count} more differences)" if count else ""))
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise InconsistentShapesError(
                f"checkpoint '{name}' has inconsistent shapes: {key} is {tuple(state[key].shape)} "
                f"where the inferred architecture needs {tuple(tensor.shape)}")
    model.load_state_dict(state, strict=True)
    return model.to(resolve_device(device)).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA device is available")
    return device

