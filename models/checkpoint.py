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
import stat
import tarfile
import zipfile

import torch

from .convnextpose import ConvNeXtPose, ConvNeXtPoseConfig
from .errors import (CheckpointError, CheckpointNotFoundError, CorruptCheckpointError,  # noqa: F401
                     InconsistentShapesError, NotACheckpointError, NotConvNeXtPoseError,
                     UnsafeCheckpointError)

# Usual depth-bin counts, tried in order when the joint count is not 18.
_DEPTH_BIN_GUESSES = (64, 32, 16, 8)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network's state dict from a checkpoint file, keys without the `module.` prefix."""
    path = os.fspath(path)
    name = os.path.basename(path) or path
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"checkpoint '{path}' does not exist")
    if os.path.isdir(path):
        raise NotACheckpointError(f"checkpoint '{path}' is a folder, not a checkpoint file")
    special = _special_file(path)
    if special:
        # a device or a pipe reports size 0 and could be read forever: never open it
        raise NotACheckpointError(f"'{path}' is {special}, not a checkpoint file")
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
        raise NotACheckpointError(f"'{name}' is {_what_it_is(path)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as error:
        if _is_torch_zip(path) or (not zipfile.is_zipfile(path) and "zip" in str(error).lower()):
            raise CorruptCheckpointError(f"checkpoint '{name}' is a truncated or corrupt archive") from None
        raise NotACheckpointError(f"'{name}' is {_what_it_is(path)}") from None
    except Exception:  # torch raises assorted types for garbage input; none may escape as a traceback
        raise NotACheckpointError(f"'{name}' is {_what_it_is(path)}") from None
    return _network_state(obj, name)


def _special_file(path: str) -> str | None:
    """What a path that is not a regular file is ("a character device"), else None."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _is_torch_zip(path: str) -> bool:
    """A zip archive laid out as torch.save writes it (one folder holding data.pkl)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/data.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# First bytes of files people mistake for checkpoints: (magic, offset, what the file is)
_SIGNATURES = ((b"ftyp", 4, "an MP4/QuickTime video"), (b"\xff\xd8\xff", 0, "a JPEG image"),
               (b"\x89PNG", 0, "a PNG image"), (b"\x1f\x8b", 0, "a gzip archive"),
               (b"%PDF", 0, "a PDF document"), (b"\x7fELF", 0, "a program"))


def _what_it_is(path: str) -> str:
    """The end of "'x' is ...": what a file that torch cannot load holds, as far as its
    first bytes or its archive listing tell."""
    try:
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                names = archive.getnames()[:3]
            listing = f" of {', '.join(names)}" if names else ""
            return f"a tar archive{listing}, not a PyTorch checkpoint"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()[:3]
            return f"a zip archive of {', '.join(names)}, not a PyTorch checkpoint"
        with open(path, "rb") as file:
            head = file.read(4096)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, ValueError):
        return "not a PyTorch checkpoint"
    for magic, offset, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return f"{what}, not a PyTorch checkpoint"
    try:
        if head and b"\0" not in head:
            head.decode("utf-8")
            return "a text file, not a PyTorch checkpoint"
    except UnicodeDecodeError:
        pass
    return "not a PyTorch checkpoint"


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


# Bounds on what a file may claim, checked before anything is built: far beyond every released
# model (L: depths 3-9, dims up to 384, head 512, 64 bins, 18 joints), far below what could
# exhaust memory, which the file's own size bounds once these hold (see _check_storage).
MAX_BLOCKS_PER_STAGE = 64
MAX_WIDTH = 4096
MAX_JOINTS = 256
MAX_DEPTH_BINS = 1024
MAX_ABS_WEIGHT = 1e6   # trained weights and BatchNorm statistics are many orders below this


def _dim(state: dict[str, torch.Tensor], key: str, ndim: int, name: str, limit: int = MAX_WIDTH) -> int:
    """Output channels of a weight that must have `ndim` dimensions, within `limit`."""
    tensor = state[key]
    if tensor.dim() != ndim:
        raise InconsistentShapesError(
            f"checkpoint '{name}' has inconsistent shapes: {key} has {tensor.dim()} dimensions where "
            f"ConvNeXtPose has {ndim}")
    value = int(tensor.shape[0])
    if not 1 <= value <= limit:
        raise InconsistentShapesError(
            f"checkpoint '{name}' claims {value} channels for {key}, outside 1..{limit}")
    return value


def infer_config(state: dict[str, torch.Tensor], name: str = "checkpoint") -> ConvNeXtPoseConfig:
    """Stage depths, dims, head width, depth bins and joint count, read off the tensor shapes,
    each checked against bounds so that no claim in the file can make building the network
    run away with time or memory."""
    required = ["backbone.downsample_layers.0.0.weight", "head.deconv_layers_1.pwconv.weight",
                "head.final_layer.weight"] + [f"backbone.downsample_layers.{i}.1.weight" for i in (1, 2, 3)]
    missing = [key for key in required if key not in state]
    if missing:
        raise NotConvNeXtPoseError(
            f"'{name}' is not a ConvNeXtPose state dict: it lacks {missing[0]}"
            + (f" and {len(missing) - 1} more ConvNeXtPose entries" if len(missing) > 1 else ""))
    dims = (_dim(state, "backbone.downsample_layers.0.0.weight", 4, name),
            *(_dim(state, f"backbone.downsample_layers.{i}.1.weight", 4, name) for i in (1, 2, 3)))
    depths = []
    for stage in range(4):
        pattern = re.compile(rf"backbone\.stages\.{stage}\.(\d+)\.dwconv\.weight$")
        blocks = sorted(int(m.group(1)) for key in state if (m := pattern.match(key)))
        if not blocks:
            raise NotConvNeXtPoseError(
                f"'{name}' is not a ConvNeXtPose state dict: it has no blocks in backbone stage {stage}")
        if blocks != list(range(len(blocks))) or len(blocks) > MAX_BLOCKS_PER_STAGE:
            raise InconsistentShapesError(
                f"checkpoint '{name}' has inconsistent shapes: backbone stage {stage} numbers its blocks "
                f"up to {blocks[-1]} but holds {len(blocks)} (at most {MAX_BLOCKS_PER_STAGE}, numbered from 0)")
        depths.append(len(blocks))
    head_width = _dim(state, "head.deconv_layers_1.pwconv.weight", 4, name)
    outputs = _dim(state, "head.final_layer.weight", 4, name, MAX_JOINTS * MAX_DEPTH_BINS)
    joints, depth_bins = _split_outputs(outputs, name)
    if joints > MAX_JOINTS or depth_bins > MAX_DEPTH_BINS:
        raise InconsistentShapesError(
            f"checkpoint '{name}' claims {joints} joints x {depth_bins} depth bins, beyond "
            f"{MAX_JOINTS} x {MAX_DEPTH_BINS}")
    return ConvNeXtPoseConfig(tuple(depths), tuple(dims), head_width, depth_bins, joints)


def _check_storage(state: dict[str, torch.Tensor], path: str, name: str) -> None:
    """Every tensor is a plain dense array backed by bytes really in the file: no stride-0 or
    overlapping views claiming more elements than their storage holds, and all of them
    together no larger than the file (so what they claim cannot exceed what was read)."""
    total = 0
    for key, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise InconsistentShapesError(f"checkpoint '{name}' stores {key} in an unsupported layout")
        if any(size > 1 and stride == 0 for size, stride in zip(tensor.shape, tensor.stride())) \
                or not tensor.is_contiguous():
            raise InconsistentShapesError(
                f"checkpoint '{name}' is malformed: {key} is a view repeating its data "
                f"(shape {tuple(tensor.shape)}, strides {tuple(tensor.stride())}), not stored weights")
        nbytes = tensor.numel() * tensor.element_size()
        if tensor.storage_offset() * tensor.element_size() + nbytes > tensor.untyped_storage().nbytes():
            raise InconsistentShapesError(f"checkpoint '{name}' is malformed: {key} claims more data than it holds")
        total += nbytes
    size = os.path.getsize(path)
    if total > size:
        raise InconsistentShapesError(
            f"checkpoint '{name}' is malformed: its tensors claim {total} bytes but the file has {size}")


def _check_values(state: dict[str, torch.Tensor], name: str) -> None:
    """Weights a network can compute with: finite and of sane magnitude (NaN, infinities or
    3e38 make every joint NaN; so does data stored in the wrong byte order)."""
    for key, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        values = tensor.detach().float()
        if not bool(torch.isfinite(values).all()):
            raise CorruptCheckpointError(f"checkpoint '{name}' is damaged: {key} holds NaN or infinite values")
        if float(values.abs().max()) > MAX_ABS_WEIGHT:
            raise CorruptCheckpointError(
                f"checkpoint '{name}' is damaged: {key} holds values as large as "
                f"{float(values.abs().max()):.3g} (stored in another byte order, or not weights)")


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
    `device="auto"` picks CUDA when it is available. Everything the file claims is checked
    (structure, sizes against the file's real size, values) before any memory is committed."""
    path = os.fspath(path)
    name = os.path.basename(path)
    state = read_state_dict(path)
    _check_storage(state, path, name)
    config = infer_config(state, name)
    with torch.device("meta"):   # names and shapes only: its initialization touches no memory
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
    _check_values(state, name)
    # in the architecture's own dtypes, as copying into its parameters would have cast them
    model.load_state_dict({key: state[key].to(tensor.dtype) for key, tensor in expected.items()},
                          strict=True, assign=True)
    return model.to(resolve_device(device)).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA device is available")
    return device

