"""What a run writes: annotated video or images, joint exports (JSON/CSV/NPZ), all fed by the
frame loop through one SinkGroup, each file complete or absent whatever ends the run.

    atomic.py   temporary file beside the target, commit or discard, stale temporaries, FileSink
    paths.py    output paths checked before the first frame (kind, extension, folder, distinct)
    video.py    H.264 through ffmpeg, or OpenCV's MJPG/mp4v: VideoSink
    images.py   one annotated image, or a folder of them: ImageSink
    exports.py  JsonExporter, CsvExporter, NpzExporter, their ExportMeta (PhotoFrames for stills)
    group.py    SinkGroup: every output of a run, fed and closed together
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from app.formats import WRITABLE_VIDEO_EXTENSIONS

from .atomic import FileSink, remove_stale_temporaries
from .exports import (CSV_COLUMNS, CSV_STILLS_COLUMNS, EXPORTERS, CsvExporter, ExportMeta, JsonExporter,
                      NpzExporter, PhotoFrames, photo_names)
from .group import SinkGroup
from .images import ImageSink, photo_stems
from .paths import (OutputKind, check_extension, check_not_replacing, check_output_path,
                    check_outputs_distinct, check_plot_path, output_kind_for)
from .video import VideoSink

__all__ = [
    "CSV_COLUMNS", "CSV_STILLS_COLUMNS", "CsvExporter", "ExportMeta", "FileSink", "ImageSink", "JsonExporter",
    "NpzExporter", "OutputKind", "PhotoFrames", "SinkGroup", "VideoSink", "check_extension", "check_output_path",
    "check_not_replacing", "check_outputs_distinct", "check_plot_path", "make_exporter", "make_media_sink",
    "output_kind_for", "photo_names", "photo_stems", "remove_stale_temporaries",
]


def make_media_sink(path: str | os.PathLike, fps: float, *, follow_time: bool = False,
                    name_for_index: Callable[[int], str] | None = None) -> VideoSink | ImageSink:
    """VideoSink for a video extension, ImageSink for an image extension or a folder name.
    follow_time: for live input, so the video plays in real time (see VideoSink);
    name_for_index: file stems in a folder output (see ImageSink)."""
    if Path(path).suffix.lower() in WRITABLE_VIDEO_EXTENSIONS:
        return VideoSink(path, fps, follow_time=follow_time)
    check_extension(path, "image")   # anything but an image extension or none is refused here
    return ImageSink(path, name_for_index=name_for_index)


def make_exporter(path: str | os.PathLike, meta: ExportMeta) -> FileSink:
    """The exporter for the path's extension (.json, .csv or .npz)."""
    return EXPORTERS[check_extension(path, "export")](path, meta)
