"""What a batch did, one row per video, in OUT/batch.csv: read back to resume, rewritten
(atomically) after every video so that even a killed batch leaves an accurate one.

    input,status,frames,seconds,fps,outputs,settings,input_stamp,error
    /data/videos/a/clip1.mp4,ok,300,12.41,24.17,a/clip1_pose.mp4;a/clip1_pose.json,9c1e04b7a2f3,1048576:1764140640123456789,
    /data/videos/broken.mp4,failed,0,0.02,0.0,,9c1e04b7a2f3,3000:1764140641000000000,cannot open video '...': ...

status: ok | skipped (finished by an earlier run; its figures are from then) | failed |
interrupted (Ctrl-C: its outputs hold the frames done so far, and it is redone on resume) |
pending (not started before Ctrl-C). outputs: paths relative to the manifest's folder, separated
by ';' (a ';' or '%' in a path is written %3B or %25). settings: a digest of what the video was
processed with (the processing options and the model file); input_stamp: the video's size and
modification time (ns) when it was given out. A finished video whose settings or input_stamp
differ from this run's is not skipped as done: the batch asks for --force to redo it.
Manifests of earlier versions (without settings and input_stamp) are read; their finished videos
are skipped as before.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .outputs.atomic import write_bytes_atomically

MANIFEST_NAME = "batch.csv"
COLUMNS = ("input", "status", "frames", "seconds", "fps", "outputs", "settings", "input_stamp", "error")
EARLIER_COLUMNS = ("input", "status", "frames", "seconds", "fps", "outputs", "error")
FINISHED = ("ok", "skipped")
STATUSES = ("ok", "skipped", "failed", "interrupted", "pending")


@dataclass
class VideoResult:
    """One video's outcome, as a worker reports it and the manifest keeps it."""
    input: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)   # absolute paths
    error: str = ""
    settings: str = ""      # made_with() of the batch that processed it ("" in earlier manifests)
    input_stamp: str = ""   # input_stamp() of the video when it was given out
    fatal: bool = False   # the worker itself cannot run (the model failed to load): stop the batch

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class NotAManifest(UserError):
    """OUT/batch.csv is something else: the user's own file (replaceable with --force) or a
    folder (never)."""

    def __init__(self, message: str, replaceable: bool = True):
        super().__init__(message)
        self.replaceable = replaceable


def read_manifest(out_dir: Path) -> dict[str, VideoResult]:
    """The rows of an earlier run's manifest by input path; {} when there is none. Raises
    NotAManifest when OUT/batch.csv is not one (a folder, another CSV, not UTF-8 text)."""
    path = out_dir / MANIFEST_NAME
    if not os.path.lexists(path):
        return {}
    if not path.is_file():
        raise NotAManifest(f"'{path}' is not a file, and the batch writes its manifest there: move it away "
                           "or choose another --out-dir.", replaceable=False)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except UnicodeDecodeError:
        raise NotAManifest(f"'{path}' is not a batch manifest (it is not UTF-8 text)") from None
    except (OSError, csv.Error) as error:
        raise NotAManifest(f"cannot read the manifest '{path}': "
                           f"{getattr(error, 'strerror', None) or error}", replaceable=False) from None
    if not table or tuple(table[0]) not in (COLUMNS, EARLIER_COLUMNS):
        raise NotAManifest(f"'{path}' is not a batch manifest (its first line is not "
                           f"{','.join(COLUMNS)})")
    header = tuple(table[0])   # an earlier version's has no settings and input_stamp columns
    rows: dict[str, VideoResult] = {}
    for values in table[1:]:
        row = dict(zip(header, values))
        try:
            rows[row["input"]] = VideoResult(
                input=row["input"], status=row["status"], frames=int(row["frames"] or 0),
                seconds=float(row["seconds"] or 0.0),
                outputs=[str(out_dir / _unescape(p)) for p in (row["outputs"] or "").split(";") if p],
                error=row.get("error") or "", settings=row.get("settings") or "",
                input_stamp=row.get("input_stamp") or "")
        except (KeyError, ValueError, TypeError):
            continue   # a row damaged by hand: that video is simply done again
    return rows


def is_finished(previous: VideoResult | None, expected_outputs: list[str]) -> bool:
    """An earlier run finished this video with these very outputs, and they are all in place."""
    return (previous is not None and previous.status in FINISHED
            and sorted(previous.outputs) == sorted(expected_outputs)
            and all(Path(p).is_file() for p in expected_outputs))


def made_with(settings) -> str:
    """A digest of what a batch processes its videos with: every processing setting (the
    Settings' fields, less the input and outputs, which are each video's own) and the model
    file's (settings.pose.model) size and modification time. Two runs with the same digest make
    the same outputs of the same video."""
    text = repr(settings)
    path = Path(settings.pose.model)
    if path.is_absolute() and path.is_file():   # a checkpoint (the fallback's models ship with the code)
        text += f"|{input_stamp(path)}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def input_stamp(video: str | Path) -> str:
    """The file's size and modification time: a stamp that changes when the file does ("" when
    it cannot be read)."""
    try:
        stat = os.stat(video)
    except OSError:
        return ""
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def changed_since(previous: VideoResult, settings: str, stamp: str) -> str | None:
    """What differs from the run that finished this video: "settings", "input", or None (the
    same, or not known: a manifest of an earlier version, or a video gone since, whose results
    are kept)."""
    if previous.settings and previous.settings != settings:
        return "settings"
    if previous.input_stamp and stamp and previous.input_stamp != stamp:
        return "input"
    return None


def write_manifest(out_dir: Path, results: list[VideoResult]) -> Path:
    """Write every row, whole or not at all (app/outputs/atomic.py). A failure (a full disk) is
    a UserError saying so in one line; the old manifest stays."""
    path = out_dir / MANIFEST_NAME
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for r in results:
        outputs = ";".join(_escape(os.path.relpath(p, out_dir)) for p in r.outputs)
        writer.writerow([r.input, r.status, r.frames, f"{r.seconds:.2f}", f"{r.fps:.2f}",
                         outputs, r.settings, r.input_stamp, " ".join(r.error.split())])
    try:
        write_bytes_atomically(path, text.getvalue().encode("utf-8"))
    except OSError as error:
        raise UserError(f"cannot write the manifest '{path}': {error.strerror or error}.") from None
    return path


def _escape(path: str) -> str:
    """A path as the outputs field holds it: ';' separates the paths."""
    return path.replace("%", "%25").replace(";", "%3B")


def _unescape(text: str) -> str:
    return re.sub(r"%(25|3B)", lambda m: "%" if m.group(1) == "25" else ";", text)
