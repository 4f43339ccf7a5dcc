"""Joint exports, streamed as frames arrive: JSON (one frame per line), CSV (one row per person,
frame and joint), NPZ (arrays, written at close). Floats are written as the shortest text that
reads back to the very same float32, so an export round-trips exactly.

Photos (a folder of unrelated ones, each processed on its own at its own size, or a single
picture) are exported differently in three ways, the same in every format: each frame names its
photo and the focal length used for it (the intrinsics follow each photo's size), and nothing
claims a frame rate (see PhotoFrames). Videos, cameras, streams and numbered frames are exported
with a frame rate and one focal length."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from app.skeleton import BONES, JOINT_NAMES
from app.types import Frame, FrameResult, Person

from .atomic import FileSink


def photo_names(photos: Sequence[Path]) -> dict[Path, str]:
    """Each photo's file name relative to the folder that holds them all, with "/" on every
    system: "a.jpg" for the photos of one folder ("trip/a.jpg" for one in a sub-folder)."""
    if not photos:
        return {}
    try:
        folder = os.path.commonpath([str(Path(p).parent) for p in photos])
        return {p: Path(p).relative_to(folder).as_posix() for p in photos}
    except ValueError:   # absolute and relative paths mixed, or other drives: the bare names
        return {p: Path(p).name for p in photos}


@dataclass(frozen=True)
class PhotoFrames:
    """What a stills export adds to each frame: the photo it was made from and the focal length
    (px) its joints were lifted to 3D with. The camera's intrinsics are made for each frame's
    size (CameraSettings.camera(width, height)), so photos of different widths have different
    focal lengths under one --fov; meta's single "focal" cannot say that, so it is null and
    each frame says its own.

    Photos have no frame rate: their frame "time" (index / a nominal 30 fps) and a meta "fps"
    would be invented numbers that look like measurements, so a stills export writes them as
    missing, the way each format writes a missing value (JSON null, CSV empty, NPZ NaN). The
    keys themselves stay, so a reader finds the same fields as for a video."""
    photo_of: Callable[[int], str]             # Frame.index -> file name, as photo_names gives
    focal_for: Callable[[int, int], float]     # (width, height) -> focal length in pixels

    def of(self, frame: Frame) -> tuple[str, float]:
        """(photo, focal) for this frame."""
        height, width = frame.image.shape[:2]
        return str(self.photo_of(int(frame.index))), float(self.focal_for(width, height))


@dataclass(frozen=True)
class ExportMeta:
    """The "meta" block of every export; `stills` (not part of the block) for a folder of
    unrelated photos, whose fps and focal are then None (null): see PhotoFrames."""
    model: str                 # e.g. "ConvNeXtPose-L"
    input: str                 # the source's description
    fps: float | None          # None for stills: photos have no frame rate
    focal: float | None        # focal length in pixels used to lift joints to 3D; None for
    #                            stills, whose frames each give their own
    joints: tuple[str, ...] = JOINT_NAMES
    skeleton: tuple[tuple[int, int], ...] = BONES
    units: str = "mm"
    stills: PhotoFrames | None = None

    def __post_init__(self):
        if (self.stills is None) != (self.fps is not None and self.focal is not None):
            raise ValueError("ExportMeta: fps and focal are given for a video, and None for "
                             "stills (each frame then gives its photo and focal)")

    def to_dict(self) -> dict:
        return {"model": self.model, "joints": list(self.joints),
                "skeleton": [[int(i), int(j)] for i, j in self.skeleton], "units": self.units,
                "input": self.input, "fps": None if self.fps is None else float(self.fps),
                "focal": None if self.focal is None else float(self.focal)}

    def frame_time(self, frame: Frame) -> float | None:
        """The frame's time in seconds; None for stills (see PhotoFrames)."""
        return None if self.stills is not None else float(frame.time)


def _exact_floats(values: np.ndarray) -> list:
    """Nested lists of Python floats that print as the shortest decimal which reads back to
    the very same float32 (float64 stays as is): exact round trip, compact text. Non-finite
    values become None (JSON null)."""
    a = np.asarray(values)
    if a.dtype == np.float32:
        flat = [float(str(v)) for v in a.ravel()]   # numpy's str is the shortest float32 repr
    else:
        flat = [float(v) for v in a.astype(np.float64).ravel()]
    flat = [v if np.isfinite(v) else None for v in flat]
    return np.array(flat, dtype=object).reshape(a.shape).tolist() if a.ndim > 1 else flat


def _score(person: Person) -> float:
    """Exports' "score" is the detection/track score of the box, not the mean joint
    confidence (that one is recoverable from "confidence")."""
    return float(person.box.score)


def _root_3d(person: Person) -> np.ndarray:
    """The pelvis in camera coordinates (mm), where the 3D view places the person; NaN when
    unknown."""
    if person.root_cam is None:
        return np.full(3, np.nan, np.float32)
    return np.asarray(person.root_cam, np.float32).reshape(3)


def _person_json(person: Person) -> dict:
    return {
        "id": int(person.track_id),
        "bbox": [float(v) for v in person.box.as_xywh()],
        "score": _score(person),
        "pose_score": float(str(np.float32(person.pose_score))),
        "root_3d": _exact_floats(_root_3d(person)),
        "joints_2d": _exact_floats(person.joints_2d),
        "joints_3d": _exact_floats(person.joints_3d),
        "confidence": _exact_floats(person.confidence),
    }


class JsonExporter(FileSink):
    """{"meta": {...}, "frames": [{"index", "time", "people": [...]}, ...]}; for stills
    {"index", "time": null, "photo", "focal", "people"} (see PhotoFrames).

    Streamed: one frame per line, appended as it arrives, so memory stays flat over long runs;
    close() writes the closing brackets and moves the file into place. Frames with nobody in
    them are kept (people: [])."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self._file: io.TextIOWrapper | None = None

    def _render(self, result: FrameResult, composed: np.ndarray | None) -> str:
        frame = {"index": int(result.frame.index), "time": self.meta.frame_time(result.frame)}
        if self.meta.stills is not None:
            frame["photo"], frame["focal"] = self.meta.stills.of(result.frame)
        frame["people"] = [_person_json(p) for p in result.people]
        if result.floor is not None:
            frame["floor"] = {"pitch_deg": round(float(np.degrees(result.floor.pitch_rad)), 3),
                              "height_mm": round(float(result.floor.height_mm), 1)}
        return json.dumps(frame, separators=(",", ":"), allow_nan=False)

    def _emit(self, text: str) -> None:
        if self._file is None:
            self._file = open(self._new_temp(), "w", encoding="utf-8")
            self._file.write('{"meta":' + json.dumps(self.meta.to_dict(), allow_nan=False) + ',\n"frames":[\n')
        else:
            text = ",\n" + text
        self._file.write(text)   # one write per frame: the file never holds half a frame
        self._file.flush()

    def _finish(self) -> None:
        self._file.write("\n]}\n")
        self._file.close()

    def _abandon(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):   # e.g. the disk is still full
                self._file.close()


CSV_COLUMNS = ("frame", "time", "id", "joint_index", "joint", "x_2d", "y_2d", "x_3d", "y_3d",
               "z_3d", "confidence", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "score",
               "pose_score", "root_x", "root_y", "root_z")
# Stills: the photo's file name and its focal length (px) follow the (empty) time: see PhotoFrames.
CSV_STILLS_COLUMNS = CSV_COLUMNS[:2] + ("photo", "focal") + CSV_COLUMNS[2:]


def _csv_number(value) -> str:
    """Shortest exact text for float32 (numpy's str), repr for float64; empty when missing."""
    if value is None:
        return ""
    if isinstance(value, np.floating):
        return str(value) if np.isfinite(value) else ""
    value = float(value)
    return repr(value) if np.isfinite(value) else ""


class CsvExporter(FileSink):
    """One row per person, frame and joint, with a header (CSV_COLUMNS; CSV_STILLS_COLUMNS for
    stills, see PhotoFrames); frames without people add no row. Streamed like the JSON export."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self.columns = CSV_STILLS_COLUMNS if meta.stills is not None else CSV_COLUMNS
        self._file: io.TextIOWrapper | None = None

    def _render(self, result: FrameResult, composed: np.ndarray | None) -> str:
        buffer = io.StringIO()
        rows = csv.writer(buffer, lineterminator="\n")
        frame = result.frame
        context = [frame.index, _csv_number(self.meta.frame_time(frame))]
        if self.meta.stills is not None:
            photo, focal = self.meta.stills.of(frame)
            context += [photo, _csv_number(focal)]
        for person in result.people:
            box = [_csv_number(v) for v in person.box.as_xywh()]
            score = _csv_number(_score(person))
            pose_score = _csv_number(np.float32(person.pose_score))
            root = [_csv_number(v) for v in _root_3d(person)]
            for j, name in enumerate(self.meta.joints):
                rows.writerow([
                    *context, person.track_id, j, name,
                    *(_csv_number(v) for v in person.joints_2d[j][:2]),
                    *(_csv_number(v) for v in person.joints_3d[j][:3]),
                    _csv_number(person.confidence[j]), *box, score, pose_score, *root])
        return buffer.getvalue()

    def _emit(self, rows: str) -> None:
        if self._file is None:
            self._file = open(self._new_temp(), "w", encoding="utf-8", newline="")
            self._file.write(",".join(self.columns) + "\n")
        self._file.write(rows)   # one write per frame
        self._file.flush()

    def _finish(self) -> None:
        self._file.close()

    def _abandon(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):   # e.g. the disk is still full
                self._file.close()


class NpzExporter(FileSink):
    """Compressed .npz, loadable with np.load(path, allow_pickle=False). P = person rows over
    all frames, F = frames, J = joints:

        frame_index (F,) int64, frame_time (F,) float64   every frame, also empty ones
            (frame_time NaN for stills), and for stills only (see PhotoFrames):
        frame_photo (F,) str       the photo's file name
        frame_focal (F,) float64   its focal length in pixels
        person_frame (P,) int64    Frame.index of each person row
        person_id (P,) int64, bbox (P, 4) float64 [x, y, w, h], score (P,) float64
        pose_score (P,) float32, root_3d (P, 3) float32 mm (NaN when unknown)
        joints_2d (P, J, 2), joints_3d (P, J, 3), confidence (P, J)   float32
        joint_names (J,) str, skeleton (B, 2) int64, meta_json () str: the JSON meta block

    NPZ cannot be appended to, so rows are kept in memory (about 0.5 kB per person and frame)
    and the file is written by close()."""

    def __init__(self, path: str | os.PathLike, meta: ExportMeta):
        super().__init__(path)
        self.meta = meta
        self._frames: list[tuple[int, float, str, float]] = []   # index, time, photo, focal
        self._people: list[tuple[int, Person]] = []

    def _render(self, result: FrameResult, composed: np.ndarray | None):
        index = int(result.frame.index)
        time = self.meta.frame_time(result.frame)
        photo, focal = self.meta.stills.of(result.frame) if self.meta.stills is not None else ("", np.nan)
        # Copy the arrays now: a tracker may update them in place after this call.
        people = [(index, Person(box=p.box, joints_2d=np.array(p.joints_2d, np.float32),
                                 joints_3d=np.array(p.joints_3d, np.float32),
                                 confidence=np.array(p.confidence, np.float32),
                                 root_cam=_root_3d(p).copy(), track_id=p.track_id)) for p in result.people]
        return (index, np.nan if time is None else time, photo, focal), people

    def _emit(self, payload) -> None:
        frame, people = payload
        self._frames.append(frame)
        self._people.extend(people)

    def _finish(self) -> None:
        joints = len(self.meta.joints)
        rows = [p for _, p in self._people]
        arrays = {
            "frame_index": np.array([f[0] for f in self._frames], np.int64),
            "frame_time": np.array([f[1] for f in self._frames], np.float64),
            "person_frame": np.array([i for i, _ in self._people], np.int64),
            "person_id": np.array([p.track_id for p in rows], np.int64),
            "bbox": np.array([p.box.as_xywh() for p in rows], np.float64).reshape(-1, 4),
            "score": np.array([_score(p) for p in rows], np.float64),
            "pose_score": np.array([p.pose_score for p in rows], np.float32),
            "root_3d": np.array([p.root_cam for p in rows], np.float32).reshape(-1, 3),
            "joints_2d": np.array([p.joints_2d[:, :2] for p in rows], np.float32).reshape(-1, joints, 2),
            "joints_3d": np.array([p.joints_3d[:, :3] for p in rows], np.float32).reshape(-1, joints, 3),
            "confidence": np.array([p.confidence for p in rows], np.float32).reshape(-1, joints),
            "joint_names": np.array(self.meta.joints, dtype=str),
            "skeleton": np.array(self.meta.skeleton, np.int64).reshape(-1, 2),
            "meta_json": np.array(json.dumps(self.meta.to_dict())),
        }
        if self.meta.stills is not None:   # plain unicode and float arrays: no pickle needed
            arrays["frame_photo"] = np.array([f[2] for f in self._frames], dtype=str)
            arrays["frame_focal"] = np.array([f[3] for f in self._frames], np.float64)
        # Built in memory, then written: a zip writer that fails half-way (a full disk) would
        # complain again when garbage-collected. Memory: the rows are in memory already.
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        with open(self._new_temp(), "wb") as f:
            f.write(buffer.getbuffer())


EXPORTERS: dict[str, type[FileSink]] = {".json": JsonExporter, ".csv": CsvExporter, ".npz": NpzExporter}
