"""Output paths checked before the first frame, so a typo does not cost a whole run: the kind
of output that suits the input, a known extension for that kind, a folder that exists and takes
a file, and no output that is the input or another output (--plot included). The one place
where output extensions are checked: the sink factories (app/outputs/__init__.py) use
check_extension too."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from app.errors import UserError
from app.formats import (EXPORT_EXTENSIONS, PLOT_EXTENSIONS, WRITABLE_IMAGE_EXTENSIONS,
                         WRITABLE_VIDEO_EXTENSIONS)

OutputKind = Literal["video", "image", "export", "plot"]

_VIDEO_CHOICES = ".mp4, .mov, .m4v or .avi"
_IMAGE_CHOICES = ".jpg, .png, .bmp, .webp or .tif"


def output_kind_for(path: str | os.PathLike, input_kind: str) -> OutputKind:
    """The kind of --output that suits the input, or a UserError naming the right choices.

    input_kind "video" (a video, a camera, a stream, numbered frames): a video file, or a folder
    name for one image per frame; "image" (one picture): an image file; "stills" (unrelated
    photos): a folder name, one NAME_pose image per photo."""
    target = Path(str(path).strip()).expanduser()
    ext = target.suffix.lower()
    if input_kind == "video":
        if ext in WRITABLE_VIDEO_EXTENSIONS:
            return "video"
        if not ext:
            return "image"
        raise UserError(f"cannot write a video to '{target.name}': for a video, camera or "
                        f"sequence of frames use {_VIDEO_CHOICES}, or a folder name (no "
                        "extension) for one image per frame.")
    if input_kind == "image":
        if ext in WRITABLE_IMAGE_EXTENSIONS:
            return "image"
        raise UserError(f"cannot write an image to '{target.name}': for one picture use "
                        f"{_IMAGE_CHOICES}.")
    if input_kind == "stills":
        if not ext:
            return "image"
        raise UserError(f"cannot write several unrelated photos to '{target.name}': give a folder "
                        "name (no extension); each photo is written there as NAME_pose.jpg.")
    raise ValueError(f"unknown input kind {input_kind!r}")


def check_extension(path: str | os.PathLike, kind: OutputKind) -> str:
    """The path's extension (lower case) when it suits the kind, else a UserError naming the
    choices. "video": .mp4/.mov/.m4v/.avi; "image": an image extension, or none (a folder, one
    image per frame); "export": .json/.csv/.npz; "plot": a figure matplotlib writes."""
    target = Path(str(path).strip()).expanduser()
    ext = target.suffix.lower()
    if kind == "export":
        if ext not in EXPORT_EXTENSIONS:
            raise UserError(f"unknown export format '{ext or target.name}': use .json, .csv or "
                            ".npz.")
    elif kind == "video":
        if ext not in WRITABLE_VIDEO_EXTENSIONS:
            raise UserError(f"unknown video format '{ext or target.name}': use {_VIDEO_CHOICES}.")
    elif kind == "image":
        if ext and ext not in WRITABLE_IMAGE_EXTENSIONS:
            raise UserError(f"unknown image format '{ext}': use {_IMAGE_CHOICES}, or a folder "
                            "name without an extension.")
    elif kind == "plot":
        if ext not in PLOT_EXTENSIONS:
            raise UserError(f"unknown plot format '{ext or path}': use .png, .pdf, .svg or .jpg.")
    else:
        raise ValueError(f"unknown output kind {kind!r}")
    return ext


def check_output_path(path: str | os.PathLike, kind: OutputKind) -> Path:
    """Validate an output path before any frame is processed: its extension for the kind (see
    check_extension), and a folder that exists and takes a new file. An image output without
    an extension is a folder of images (one per frame), which may exist already.
    Returns the path; raises UserError with one sentence."""
    text = str(path).strip()
    if not text:
        raise UserError(f"the {kind} output path is empty.")
    target = Path(text).expanduser()
    if target.is_dir() and kind != "image":
        raise UserError(f"output '{target}' is a folder: give a file name inside it.")
    ext = check_extension(path, kind)
    as_folder = kind == "image" and not ext

    if as_folder and target.is_dir():
        _check_writable_folder(target, target)
        return target
    if target.is_dir():   # an image output named like a file, e.g. "shots.jpg/"
        raise UserError(f"output '{target}' is a folder: give a file name inside it.")
    if as_folder and target.exists():
        raise UserError(f"image output '{target}' exists and is not a folder.")
    _check_writable_folder(target.parent if str(target.parent) else Path("."), target)
    return target


def check_plot_path(path: str) -> Path:
    """Validate the --plot path (a figure matplotlib writes at the end of the run): its
    extension, and a folder that takes a new file. Raises UserError with one sentence."""
    check_extension(path, "plot")
    if Path(path).expanduser().is_dir():
        raise UserError(f"--plot '{path}' is a folder: give a file name inside it.")
    folder = Path(os.path.abspath(path)).parent
    if not folder.is_dir() or _cannot_create_in(folder) is not None:
        raise UserError(f"cannot write the plot '{path}': its folder does not exist or is not writable.")
    return Path(path)


def _check_writable_folder(folder: Path, target: Path) -> None:
    if not folder.exists():
        raise UserError(f"cannot write '{target}': folder '{folder}' does not exist.")
    if not folder.is_dir():
        raise UserError(f"cannot write '{target}': '{folder}' is not a folder.")
    error = _cannot_create_in(folder)
    if error is not None:
        raise UserError(f"cannot write to folder '{folder}': {error.strerror or error}.")


def _cannot_create_in(folder: Path) -> OSError | None:
    """Why a new file cannot be created in the folder, or None when it can. A file is really
    created (and removed): os.access is wrong on some file systems and for root."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return exc
    return None


def check_not_replacing(option: str, path: str, force: bool) -> None:
    """Refuse, unless `force` (--force), an output whose path holds something already: a file,
    or a folder output (of images) that holds files. Nothing the user has is replaced without
    being asked; with --force, a file is replaced once the new one is complete, and a folder's
    files of the same names are."""
    if force:
        return
    target = Path(str(path).strip()).expanduser()
    if not target.suffix:   # a folder of images; a file or a folder where it does not fit: check_output_path
        if target.is_dir() and any(not entry.name.startswith(".") for entry in target.iterdir()):
            raise UserError(f"{option} '{path}' is a folder that holds files already: pass --force to "
                            "write into it (files of the same names are replaced, and a video's numbered "
                            "frames NNNNNN.jpg that this run does not write again are removed), or choose "
                            "another name.")
    elif (target.exists() and not target.is_dir()) or target.is_symlink():
        raise UserError(f"{option} '{path}' exists already: pass --force to replace it, or choose "
                        "another name.")


def check_outputs_distinct(input_spec: str, outputs: dict[str, str | None],
                           input_path: Path | None) -> None:
    """Refuse, before anything is processed, an output that is the input itself (however it is
    spelled: another relative path, a symlink, a hard link, a file:// URL; an image-folder output
    that is the input folder) and two outputs that are one file. outputs: option name -> path or
    None; input_path: the local file the input names (app.sources.input_path), None for a camera
    or stream."""
    named = {option: Path(str(path).strip()).expanduser() for option, path in outputs.items() if path}
    source = input_path
    if source is not None and source.exists():
        for option, target in named.items():
            if _same_file(source, target):
                what = "folder" if source.is_dir() else "file"
                raise UserError(f"{option} '{target}' is the input {what} '{input_spec}': writing it "
                                "would destroy the input; choose another name.")
    options = list(named)
    for i, first in enumerate(options):
        for second in options[i + 1:]:
            if _same_file(named[first], named[second]):
                raise UserError(f"{first} and {second} name the same file '{named[second]}': give "
                                "each output its own name.")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same spelling once resolved (./x/../y, symlinks),
    or the same inode (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them does not exist yet: then they are not the same file
        return False
