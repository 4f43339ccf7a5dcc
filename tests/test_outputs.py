"""Outputs (app/outputs/): playable H.264 video, images, exact JSON/CSV/NPZ exports, complete
files after any interruption, nothing left behind when nothing was written, output paths
checked before the first frame."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.errors import UserError
from app.formats import (EXPORT_EXTENSIONS, READABLE_IMAGE_EXTENSIONS, READABLE_VIDEO_EXTENSIONS,
                         WRITABLE_IMAGE_EXTENSIONS, WRITABLE_VIDEO_EXTENSIONS)
from app.outputs import (CSV_COLUMNS, CSV_STILLS_COLUMNS, CsvExporter, ExportMeta, FileSink, ImageSink,
                         JsonExporter, NpzExporter, PhotoFrames, SinkGroup, VideoSink, check_extension,
                         check_output_path, check_plot_path, make_exporter, make_media_sink,
                         output_kind_for, photo_names, photo_stems)
from app.settings import DEFAULT_FOV_DEG, CameraSettings
from app.skeleton import BONES, JOINT_NAMES
from app.types import Box, Frame, FrameResult, Person
from support import DATA, ROOT


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    image = cv2.imread(str(DATA / "group.jpg"))
    assert image is not None
    return image


def pan(group: np.ndarray, n: int, w: int = 321, h: int = 201, fps: float = 12.5) -> list:
    """FrameResults over real image content: a pan across the group photo. Odd size on purpose."""
    return [FrameResult(Frame(i, i / fps, np.ascontiguousarray(group[30:30 + h, i * 10:i * 10 + w])))
            for i in range(n)]


def decode_all(path: Path) -> tuple[list, cv2.VideoCapture]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    return frames, capture


def leftovers(folder: Path) -> list:
    """Temporary files a sink may have left (hidden .part files)."""
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


def fourcc(capture: cv2.VideoCapture) -> str:
    return int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")


# --------------------------------------------------------------------------------------------
# Video

def test_video_is_h264_faststart_with_every_frame_and_the_fps(tmp_path, group):
    results = pan(group, 15)
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, fps=12.5)
    for r in results:
        sink.write(r, None)
    sink.close()
    frames, capture = decode_all(path)
    assert len(frames) == 15
    assert frames[0].shape == (202, 322, 3)   # padded to even for yuv420p
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
    assert fourcc(capture).lower() in ("h264", "avc1")
    data = path.read_bytes()
    assert b"avc1" in data[:4096]
    assert data.index(b"moov") < data.index(b"mdat"), "index first (+faststart)"
    # Content survives (lossy, so compare loosely) and the padding is black.
    for decoded, r in zip(frames, results):
        assert np.mean(np.abs(decoded[:201, :321].astype(int) - r.frame.image.astype(int))) < 8
    assert leftovers(tmp_path) == []


def test_video_uses_composed_image_and_resizes_to_the_first_size(tmp_path, group):
    path = tmp_path / "composed.mp4"
    sink = VideoSink(path, fps=10)
    frame = Frame(0, 0.0, group)
    sink.write(FrameResult(frame), np.hstack([group, group]))          # 1280x392 composed
    sink.write(FrameResult(Frame(1, 0.1, group)), group[:200, :300])  # other size: resized
    sink.write(FrameResult(Frame(2, 0.2, group)), None)               # no composed: the frame
    sink.close()
    frames, _ = decode_all(path)
    assert len(frames) == 3 and frames[0].shape == (392, 1280, 3)


def test_video_interrupted_by_exception_keeps_frames_so_far(tmp_path, group):
    path = tmp_path / "cut.mp4"
    sink = VideoSink(path, fps=25)
    with pytest.raises(KeyboardInterrupt):
        try:
            for r in pan(group, 20):
                if r.frame.index == 7:
                    raise KeyboardInterrupt   # as if Ctrl-C arrived in the detector
                sink.write(r, None)
        finally:
            sink.close()
    sink.close()   # twice is fine
    frames, _ = decode_all(path)
    assert len(frames) == 7
    assert leftovers(tmp_path) == []


def test_video_zero_frames_leaves_nothing(tmp_path):
    for name in ("none.mp4", "none.avi"):
        sink = VideoSink(tmp_path / name, fps=30)
        sink.close()
    assert list(tmp_path.iterdir()) == []


def test_target_is_replaced_only_on_close(tmp_path, group):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous run")
    sink = VideoSink(path, fps=10)
    for r in pan(group, 3):
        sink.write(r, None)
        assert path.read_bytes() == b"previous run"   # never a half-written target
    sink.close()
    assert len(decode_all(path)[0]) == 3


def encoder_processes() -> list[int]:
    """Linux: this process's ffmpeg children (the H.264 encoders of the video sinks)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and "ffmpeg" in Path(command).name:
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the encoder through /proc (Linux)")
def test_video_encoder_failure_removes_the_temp_file(tmp_path, group):
    path = tmp_path / "broken.mp4"
    sink = VideoSink(path, fps=10)
    results = pan(group, 30)
    sink.write(results[0], None)
    encoders = encoder_processes()
    assert len(encoders) == 1
    os.kill(encoders[0], signal.SIGKILL)   # the encoder dies (disk full, crash...)
    with pytest.raises(UserError, match="encoder"):
        for r in results[1:]:
            sink.write(r, None)
    sink.close()
    assert list(tmp_path.iterdir()) == []
    assert encoder_processes() == []   # reaped, not left a zombie


def test_avi_is_mjpg(tmp_path, group):
    path = tmp_path / "out.avi"
    with VideoSink(path, fps=15) as sink:
        for r in pan(group, 6):
            sink.write(r, None)
    frames, capture = decode_all(path)
    assert len(frames) == 6 and fourcc(capture) == "MJPG"
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15)


def test_mp4v_fallback_without_ffmpeg(tmp_path, group, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)   # the package is not installed
    path = tmp_path / "fallback.mp4"
    with VideoSink(path, fps=20) as sink:
        for r in pan(group, 5):
            sink.write(r, None)
    assert "imageio-ffmpeg is not installed" in caplog.text
    frames, capture = decode_all(path)
    assert len(frames) == 5 and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(20)
    data = path.read_bytes()
    assert b"mp4v" in data and b"avc1" not in data   # MPEG-4 part 2 in the sample entry, not H.264


def test_follow_time_plays_live_input_in_real_time(tmp_path, group):
    path = tmp_path / "live.mp4"
    image = group[:200, :320]
    sink = VideoSink(path, fps=10, follow_time=True)
    for index, t in enumerate([0.0, 0.3, 0.31, 1.0]):
        sink.write(FrameResult(Frame(index, t, image)), None)
    sink.close()
    assert sink.frames_written == 4
    assert len(decode_all(path)[0]) == 11   # slots 0..10 at 10 fps, gaps filled, nothing dropped


def test_ctrl_c_in_terminal_leaves_complete_files(tmp_path):
    """A real SIGINT to the whole process group, as a terminal sends it: the encoder survives
    (own session), close() in `finally` finishes both files, and both hold the same frames
    (SinkGroup lets Ctrl-C land only between frames)."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import cv2
        from app.outputs import VideoSink, JsonExporter, ExportMeta, SinkGroup
        from app.types import Frame, FrameResult
        image = cv2.imread({str(DATA / 'group.jpg')!r})
        meta = ExportMeta(model="test", input="group.jpg", fps=25.0, focal=500.0)
        sinks = SinkGroup([VideoSink({str(tmp_path / 'v.mp4')!r}, 25.0),
                           JsonExporter({str(tmp_path / 'j.json')!r}, meta)])
        try:
            for i in range(100000):
                sinks.write(FrameResult(Frame(i, i / 25.0, image)), None)
                if i == 9:
                    print("ready", flush=True)
                time.sleep(0.01)
        except KeyboardInterrupt:
            pass
        finally:
            sinks.close()
            print("closed", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.killpg(child.pid, signal.SIGINT)   # the whole group, like Ctrl-C in a terminal
    out, _ = child.communicate(timeout=30)
    assert out.split()[-1] == "closed"
    data = json.loads((tmp_path / "j.json").read_text())
    written = len(data["frames"])
    assert written >= 10
    assert [f["index"] for f in data["frames"]] == list(range(written))
    frames, _ = decode_all(tmp_path / "v.mp4")
    assert len(frames) == written
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Images

def test_image_file_gets_the_last_composed_image(tmp_path, group):
    path = tmp_path / "out.png"
    sink = ImageSink(path)
    results = pan(group, 3)
    for r in results:
        sink.write(r, r.frame.image[::-1])
    assert not path.exists()
    sink.close()
    np.testing.assert_array_equal(cv2.imread(str(path)), results[-1].frame.image[::-1])


def test_image_folder_gets_one_image_per_frame(tmp_path, group):
    folder = tmp_path / "annotated"
    results = pan(group, 3)
    with ImageSink(folder) as sink:
        for r in results:
            sink.write(r, None)
    assert sorted(p.name for p in folder.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    for r in results:   # each frame's own picture (JPEG, so compared loosely)
        decoded = cv2.imread(str(folder / f"{r.frame.index:06d}.jpg"))
        assert np.mean(np.abs(decoded.astype(int) - r.frame.image.astype(int))) < 8
    named = ImageSink(tmp_path / "named", name_for_index=lambda i: f"photo{i}")
    named.write(pan(group, 1)[0], None)
    named.close()
    assert [p.name for p in (tmp_path / "named").iterdir()] == ["photo0.jpg"]


def test_image_folder_written_again_holds_this_runs_frames_only(tmp_path, group):
    """A folder an earlier, longer run wrote 5 frames into (written again only with --force):
    after a 3-frame run it holds those 3 frames, not 3 new and 2 stale ones; files of other
    names stay."""
    folder = tmp_path / "annotated"
    with ImageSink(folder) as sink:
        for r in pan(group, 5):
            sink.write(r, None)
    (folder / "notes.txt").write_text("the user's")
    results = pan(group, 3)
    with ImageSink(folder) as sink:
        for r in results:
            sink.write(r, r.frame.image[::-1])   # this run's frames: upside down
    assert sorted(p.name for p in folder.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg", "notes.txt"]
    for r in results:
        decoded = cv2.imread(str(folder / f"{r.frame.index:06d}.jpg"))
        assert np.mean(np.abs(decoded.astype(int) - r.frame.image[::-1].astype(int))) < 8


def test_photo_stems_never_share_a_file():
    photos = [Path(n) for n in ("a/photo.jpg", "a/photo.png", "a/home.jpg", "a/Group.JPG",
                                "a/group.png", "a/x.jpg", "a/x.png", "a/x_jpg.png")]
    assert photo_stems(photos) == {
        Path("a/photo.jpg"): "photo_jpg_pose", Path("a/photo.png"): "photo_png_pose",
        Path("a/home.jpg"): "home_pose",
        Path("a/Group.JPG"): "Group_JPG_pose", Path("a/group.png"): "group_png_pose",
        Path("a/x.jpg"): "x_jpg_pose", Path("a/x.png"): "x_png_pose", Path("a/x_jpg.png"): "x_jpg_2_pose"}


def test_photos_sharing_a_name_each_keep_their_annotated_copy(tmp_path):
    """photo.jpg and photo.png in one folder of unrelated photos: two annotated copies, each
    of its own photo (one used to overwrite the other)."""
    from app.cli import main
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    (photos / "photo.jpg").write_bytes((DATA / "group.jpg").read_bytes())
    cv2.imwrite(str(photos / "photo.png"), cv2.imread(str(DATA / "messi5.jpg")))
    assert main(["--input", str(photos), "--no-display", "--no-progress", "--model", "blazepose",
                 "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo_jpg_pose.jpg", "photo_png_pose.jpg"]
    for name, original in (("photo_jpg_pose.jpg", "group.jpg"), ("photo_png_pose.jpg", "messi5.jpg")):
        # the annotated copy is the photo with the 3D panel beside it: same height
        assert cv2.imread(str(out / name)).shape[0] == cv2.imread(str(DATA / original)).shape[0]


def test_image_zero_frames_leaves_nothing(tmp_path):
    ImageSink(tmp_path / "x.jpg").close()
    ImageSink(tmp_path / "folder").close()
    assert list(tmp_path.iterdir()) == []


def test_sink_group_feeds_and_closes_every_output(tmp_path, group):
    results = pan(group, 4)
    sinks = SinkGroup()
    sinks.add(JsonExporter(tmp_path / "j.json", META))
    assert not sinks.needs_image
    video = sinks.add(VideoSink(tmp_path / "v.mp4", fps=12.5))
    never = sinks.add(NpzExporter(tmp_path / "never.npz", META))
    assert sinks.needs_image
    never.close()   # closed early: writing to it is a bug...
    for r in results:
        with pytest.raises(RuntimeError):
            sinks.write(r, None)
    sinks.close()   # ...that must not stop the other outputs
    sinks.close()
    assert sinks.files == [str(tmp_path / "j.json"), str(tmp_path / "v.mp4")]
    assert video.frames_written == 4
    assert len(json.loads((tmp_path / "j.json").read_text())["frames"]) == 4
    assert len(decode_all(tmp_path / "v.mp4")[0]) == 4


def test_ctrl_c_between_two_outputs_still_reaches_both(tmp_path, group):
    """A real SIGINT landing just as the second output starts on a frame (between two outputs'
    writes): the interrupt waits until every output has that frame, so the video and the
    exports never disagree by one."""
    import os
    import signal

    class InterruptedAsItStarts(JsonExporter):
        def write(self, result, composed=None):
            if result.frame.index == 1:
                os.kill(os.getpid(), signal.SIGINT)
            super().write(result, composed)

    results = pan(group, 3)
    sinks = SinkGroup([JsonExporter(tmp_path / "a.json", META), InterruptedAsItStarts(tmp_path / "b.json", META)])
    sinks.write(results[0], None)
    with pytest.raises(KeyboardInterrupt):
        sinks.write(results[1], None)
    sinks.close()
    for name in ("a.json", "b.json"):
        assert [f["index"] for f in json.loads((tmp_path / name).read_text())["frames"]] == [0, 1], name


def test_make_media_sink(tmp_path):
    assert isinstance(make_media_sink(tmp_path / "a.mp4", 30), VideoSink)
    assert isinstance(make_media_sink(tmp_path / "a.jpg", 30), ImageSink)
    assert isinstance(make_media_sink(tmp_path / "frames", 30), ImageSink)
    with pytest.raises(UserError, match=r"^unknown image format '\.mkv'"):
        make_media_sink(tmp_path / "a.mkv", 30)   # read, never written


# --------------------------------------------------------------------------------------------
# Exports

META = ExportMeta(model="ConvNeXtPose-TINY", input="tests/data/group.jpg", fps=12.5, focal=612.5)


def export_all(path: Path, results: list) -> None:
    """Write every result through the exporter the path's extension picks, and close it."""
    with make_exporter(path, META) as sink:
        for r in results:
            sink.write(r, None)


def sample_results(n_frames: int = 5, seed: int = 0) -> list:
    """Frames with 0..2 people holding arbitrary float32 values; frame 2 is empty."""
    rng = np.random.default_rng(seed)
    image = np.zeros((8, 8, 3), np.uint8)
    results = []
    for i in range(n_frames):
        people = []
        for k in range(0 if i == 2 else 1 + i % 2):
            people.append(Person(
                box=Box(float(rng.uniform(0, 600)), float(rng.uniform(0, 300)), 80.5, 200.25,
                        score=float(rng.uniform(0.5, 1))),
                joints_2d=rng.uniform(0, 640, (18, 2)).astype(np.float32),
                joints_3d=rng.normal(0, 400, (18, 3)).astype(np.float32),
                confidence=rng.uniform(0, 1, 18).astype(np.float32),
                # one person of frame 3 has no known placement
                root_cam=None if (i, k) == (3, 1) else rng.normal(0, 3000, 3).astype(np.float32),
                track_id=k + 1))
        results.append(FrameResult(Frame(i, i / 12.5, image), people))
    return results


def assert_json_matches(data: dict, results: list) -> None:
    assert list(data) == ["meta", "frames"]
    assert data["meta"] == {"model": "ConvNeXtPose-TINY", "joints": list(JOINT_NAMES),
                            "skeleton": [list(b) for b in BONES], "units": "mm",
                            "input": "tests/data/group.jpg", "fps": 12.5, "focal": 612.5}
    assert len(data["frames"]) == len(results)
    for frame, r in zip(data["frames"], results):
        assert list(frame) == ["index", "time", "people"]
        assert frame["index"] == r.frame.index and frame["time"] == r.frame.time
        assert len(frame["people"]) == len(r.people)
        for got, person in zip(frame["people"], r.people):
            assert list(got) == ["id", "bbox", "score", "pose_score", "root_3d", "joints_2d",
                                 "joints_3d", "confidence"]
            assert got["id"] == person.track_id
            assert got["bbox"] == list(person.box.as_xywh())
            assert got["score"] == person.box.score
            assert np.float32(got["pose_score"]) == np.float32(person.confidence.mean())
            assert_root_3d(got["root_3d"], person)
            for key in ("joints_2d", "joints_3d", "confidence"):   # exact float32 round trip
                np.testing.assert_array_equal(np.array(got[key], np.float32), getattr(person, key))


def assert_root_3d(got, person) -> None:
    """root_3d is the pelvis in camera mm exactly as the 3D view placed it; missing when unknown."""
    got = np.array([np.nan if v is None or v == "" else v for v in got], np.float32)
    if person.root_cam is None:
        assert np.isnan(got).all()
    else:
        np.testing.assert_array_equal(got, person.root_cam)


def test_json_round_trip_is_exact(tmp_path):
    results = sample_results()
    path = tmp_path / "joints.json"
    export_all(path, results)
    data = json.loads(path.read_text())
    assert_json_matches(data, results)
    assert data["frames"][2]["people"] == []


def test_json_interrupted_is_complete(tmp_path):
    results = sample_results(8)
    path = tmp_path / "joints.json"
    sink = JsonExporter(path, META)
    with pytest.raises(RuntimeError):
        try:
            for r in results:
                if r.frame.index == 5:
                    raise RuntimeError("the pose model failed")
                sink.write(r, None)
        finally:
            sink.close()
    assert_json_matches(json.loads(path.read_text()), results[:5])
    assert leftovers(tmp_path) == []


def test_bad_person_data_does_not_corrupt_the_export(tmp_path):
    results = sample_results(4)
    bad = FrameResult(Frame(9, 0.9, results[0].frame.image), [Person(
        Box(0, 0, 1, 1), np.zeros((3, 2), np.float32), np.zeros((18, 3), np.float32),
        np.zeros(18, np.float32))])
    path = tmp_path / "joints.csv"
    sink = CsvExporter(path, META)
    sink.write(results[0], None)
    with pytest.raises(IndexError):
        sink.write(bad, None)        # fails while rendering, before touching the file
    for r in results[1:]:
        sink.write(r, None)
    sink.close()
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == 18 * sum(len(r.people) for r in results)


def under_file_size_limit(script: str, limit_bytes: int = 4096) -> str:
    """Run `script` in a Python process whose files cannot grow past limit_bytes (`ulimit -f`),
    so a write fails for real (EFBIG) part-way; its stdout."""
    prologue = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from app.errors import UserError
        from app.outputs import ExportMeta, JsonExporter, NpzExporter, SinkGroup
        from app.types import Box, Frame, FrameResult, Person
        META = ExportMeta(model="test", input="x.mp4", fps=25.0, focal=500.0)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    """)
    done = subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(script)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(os.name != "posix", reason="a file size limit (ulimit -f) is POSIX")
def test_export_write_failure_removes_the_temp_file(tmp_path):
    """A write the file system refuses half-way through an export (here the file size limit):
    one sentence naming the output, no temporary file left, and the file an earlier run left
    at the target untouched."""
    path = tmp_path / "joints.json"
    path.write_text('{"earlier": true}')
    said = under_file_size_limit(f"""
        sink = JsonExporter({str(path)!r}, META)
        image = np.zeros((8, 8, 3), np.uint8)
        try:
            for i in range(1000):   # about 40 bytes each
                sink.write(FrameResult(Frame(i, i / 25.0, image)), None)
        except UserError as error:
            print(error)
        sink.close()
    """)
    assert re.fullmatch(r"cannot write '.*joints\.json': file too large \(what was there before is "
                        r"unchanged\)\.\n", said), said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joints.json"]
    assert json.loads(path.read_text()) == {"earlier": True}


def test_csv_round_trip_is_exact(tmp_path):
    results = sample_results()
    path = tmp_path / "joints.csv"
    export_all(path, results)
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = [(r, p, j) for r in results for p in r.people for j in range(18)]
    assert len(rows) == len(expected)
    for row, (r, person, j) in zip(rows, expected):
        assert int(row["frame"]) == r.frame.index and float(row["time"]) == r.frame.time
        assert int(row["id"]) == person.track_id
        assert int(row["joint_index"]) == j and row["joint"] == JOINT_NAMES[j]
        got = np.array([row[k] for k in ("x_2d", "y_2d")], np.float32)
        np.testing.assert_array_equal(got, person.joints_2d[j])
        got = np.array([row[k] for k in ("x_3d", "y_3d", "z_3d")], np.float32)
        np.testing.assert_array_equal(got, person.joints_3d[j])
        assert np.float32(row["confidence"]) == person.confidence[j]
        assert [float(row[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")] == \
            list(person.box.as_xywh())
        assert float(row["score"]) == person.box.score
        assert np.float32(row["pose_score"]) == np.float32(person.confidence.mean())
        assert_root_3d([row[k] for k in ("root_x", "root_y", "root_z")], person)


def test_npz_round_trip_is_exact(tmp_path):
    results = sample_results()
    path = tmp_path / "joints.npz"
    export_all(path, results)
    with np.load(path, allow_pickle=False) as data:
        people = [(r, p) for r in results for p in r.people]
        np.testing.assert_array_equal(data["frame_index"], [r.frame.index for r in results])
        np.testing.assert_array_equal(data["frame_time"], [r.frame.time for r in results])
        np.testing.assert_array_equal(data["person_frame"], [r.frame.index for r, _ in people])
        np.testing.assert_array_equal(data["person_id"], [p.track_id for _, p in people])
        np.testing.assert_array_equal(data["bbox"], [p.box.as_xywh() for _, p in people])
        np.testing.assert_array_equal(data["score"], [p.box.score for _, p in people])
        np.testing.assert_array_equal(data["pose_score"], [p.confidence.mean() for _, p in people])
        for got, (_, p) in zip(data["root_3d"], people):
            assert_root_3d(got, p)
        for key in ("joints_2d", "joints_3d", "confidence"):
            assert data[key].dtype == np.float32
            np.testing.assert_array_equal(data[key], [getattr(p, key) for _, p in people])
        assert list(data["joint_names"]) == list(JOINT_NAMES)
        np.testing.assert_array_equal(data["skeleton"], BONES)
        assert json.loads(str(data["meta_json"])) == META.to_dict()
        assert "frame_photo" not in data and "frame_focal" not in data   # stills only


def test_npz_without_people_has_empty_arrays(tmp_path):
    path = tmp_path / "empty.npz"
    with NpzExporter(path, META) as sink:
        sink.write(FrameResult(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8))), None)
    with np.load(path, allow_pickle=False) as data:
        assert data["joints_3d"].shape == (0, 18, 3) and data["frame_index"].tolist() == [0]


@pytest.mark.parametrize("name", ["j.json", "j.csv", "j.npz"])
def test_exports_with_zero_frames_leave_nothing(tmp_path, name):
    make_exporter(tmp_path / name, META).close()
    assert list(tmp_path.iterdir()) == []


def test_unknown_export_format():
    with pytest.raises(UserError, match=r"^unknown export format '\.xyz': use \.json, \.csv or \.npz\.$"):
        make_exporter("out.xyz", META)


def test_write_after_close_is_a_bug(tmp_path):
    sink = JsonExporter(tmp_path / "j.json", META)
    sink.close()
    with pytest.raises(RuntimeError):
        sink.write(sample_results(1)[0], None)


def test_ctrl_c_during_a_write_is_delivered_after_it(tmp_path):
    """SIGINT arriving in the middle of writing a frame: the frame is finished first, and the
    sink takes the next frame (the interrupt did not fail it)."""

    class Slow(FileSink):
        emitted: list = []

        def _render(self, result, composed):
            return result.frame.index

        def _emit(self, payload):
            if not self.emitted:
                os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C right now, mid-write
                time.sleep(0.05)
            self.emitted.append(payload)

    first, second = sample_results(2)
    sink = Slow(tmp_path / "x.bin")
    with pytest.raises(KeyboardInterrupt):
        sink.write(first, None)
    assert sink.emitted == [0] and sink.frames_written == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    sink.write(second, None)
    assert sink.emitted == [0, 1] and sink.frames_written == 2
    sink.close()


# --------------------------------------------------------------------------------------------
# Exports of a folder of unrelated photos ("stills"): each frame names its photo and its focal

def read_stills_export(path: Path) -> tuple[dict, list[dict]]:
    """(meta, per-frame [{"index", "time", "photo", "focal"}]) from any export format: what a
    reader of the file sees, decoded the way each format writes it (JSON null, CSV empty cell,
    NPZ NaN for a missing time). CSV lists only frames with people in them."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        for frame in data["frames"]:
            assert list(frame)[:5] == ["index", "time", "photo", "focal", "people"]
        return data["meta"], [{k: f[k] for k in ("index", "time", "photo", "focal")} for f in data["frames"]]
    if path.suffix == ".csv":
        text = path.read_text()
        assert text.splitlines()[0] == ",".join(CSV_STILLS_COLUMNS)
        frames: dict[int, dict] = {}
        for row in csv.DictReader(io.StringIO(text)):
            frame = {"index": int(row["frame"]), "time": None if row["time"] == "" else float(row["time"]),
                     "photo": row["photo"], "focal": float(row["focal"])}
            assert frames.setdefault(frame["index"], frame) == frame, "every row of a frame agrees"
        return None, list(frames.values())
    with np.load(path, allow_pickle=False) as data:
        assert data["frame_photo"].dtype.kind == "U" and data["frame_focal"].dtype == np.float64
        frames = [{"index": int(i), "time": None if np.isnan(t) else float(t), "photo": str(p), "focal": float(f)}
                  for i, t, p, f in zip(data["frame_index"], data["frame_time"], data["frame_photo"],
                                        data["frame_focal"])]
        return json.loads(str(data["meta_json"])), frames


def default_focal(width: int, height: int) -> float:
    """The focal length (px) a photo of this size is lifted to 3D with, no --focal or --fov
    given: the default horizontal field of view across its width."""
    focal = CameraSettings().camera(width, height).fx
    assert focal == pytest.approx((width / 2) / np.tan(np.radians(DEFAULT_FOV_DEG) / 2))
    return float(focal)


@pytest.mark.parametrize("ext", ["json", "csv", "npz"])
def test_stills_exports_name_each_photo_and_its_focal(tmp_path, ext):
    """Exporters given PhotoFrames: per frame the photo's name and the focal of the frame's
    size; no fps, no frame times (null, empty, NaN); the rest as for a video."""
    sizes = [(640, 480), (300, 500), (1024, 768)]
    names = ["b.jpg", "a photo, with a comma.png", "c.JPG"]
    results = sample_results(3)
    for r, (w, h) in zip(results, sizes):
        r.frame.image = np.zeros((h, w, 3), np.uint8)
        r.people = r.people or sample_results(1)[0].people   # CSV rows for every frame
    meta = ExportMeta(model="m", input="photos", fps=None, focal=None,
                      stills=PhotoFrames(photo_of=names.__getitem__, focal_for=default_focal))
    path = tmp_path / f"joints.{ext}"
    with make_exporter(path, meta) as sink:
        for r in results:
            sink.write(r, None)
    got_meta, frames = read_stills_export(path)
    assert frames == [{"index": i, "time": None, "photo": names[i], "focal": default_focal(*sizes[i])}
                      for i in range(3)]
    if got_meta is not None:
        assert got_meta["fps"] is None and got_meta["focal"] is None
    if ext == "json":   # "null", never NaN
        assert "NaN" not in path.read_text() and '"fps": null' in path.read_text()
    if ext == "csv":    # the per-person columns follow photo and focal, as for a video
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        person = results[0].people[0]
        assert [int(rows[0]["id"]), rows[0]["joint"]] == [person.track_id, JOINT_NAMES[0]]
        np.testing.assert_array_equal(np.array([rows[0][k] for k in ("x_3d", "y_3d", "z_3d")], np.float32),
                                      person.joints_3d[0])


def test_export_meta_is_either_a_video_or_stills():
    stills = PhotoFrames(photo_of=str, focal_for=lambda w, h: 500.0)
    with pytest.raises(ValueError):
        ExportMeta(model="m", input="x", fps=30.0, focal=500.0, stills=stills)
    with pytest.raises(ValueError):
        ExportMeta(model="m", input="x", fps=None, focal=None)


def test_photo_names_are_relative_to_the_folder():
    folder = Path("/data/photos")
    paths = [folder / "a.jpg", folder / "b.PNG"]
    assert photo_names(paths) == {paths[0]: "a.jpg", paths[1]: "b.PNG"}
    nested = [folder / "a.jpg", folder / "trip" / "b.jpg"]
    assert photo_names(nested) == {nested[0]: "a.jpg", nested[1]: "trip/b.jpg"}
    assert photo_names([Path("x/a.jpg")]) == {Path("x/a.jpg"): "a.jpg"}


@pytest.fixture(scope="module")
def stills_folder(tmp_path_factory) -> tuple[Path, list[tuple[str, int, int]]]:
    """A folder of three real photos of different sizes, not numbered alike (so "stills"):
    [(name, width, height)] in the order the folder is read (by name)."""
    folder = tmp_path_factory.mktemp("stills") / "photos"
    folder.mkdir()
    made = []
    for source, name, width in (("group.jpg", "skiers.jpg", 480), ("messi5.jpg", "player.png", 548),
                                ("basketball1.jpg", "court.jpg", 320)):
        image = cv2.imread(str(DATA / source))
        height = round(image.shape[0] * width / image.shape[1])
        assert cv2.imwrite(str(folder / name), cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
        made.append((name, width, height))
    return folder, sorted(made)


@pytest.fixture(scope="module")
def stills_exports(stills_folder, tmp_path_factory) -> dict[str, Path]:
    """The photos exported through the command, once per format."""
    from app.cli import main
    folder, _ = stills_folder
    out = tmp_path_factory.mktemp("stills_exports")
    paths = {ext: out / f"joints.{ext}" for ext in ("json", "csv", "npz")}
    for path in paths.values():
        assert main(["--input", str(folder), "--no-display", "--no-progress", "--model", "blazepose",
                     "--export", str(path)]) == 0
    return paths


@pytest.mark.parametrize("ext", ["json", "csv", "npz"])
def test_a_folder_of_photos_exports_which_photo_and_which_focal(stills_folder, stills_exports, ext):
    """run_demo.py --input photos/ --export joints.EXT: each frame names its photo (in the
    folder's order) and the focal its width gives with the default field of view; no made-up
    fps or frame times."""
    _, photos = stills_folder
    assert len({w for _, w, _ in photos}) == len(photos), "the photos differ in width"
    meta, frames = read_stills_export(stills_exports[ext])
    expected = [{"index": i, "time": None, "photo": name, "focal": default_focal(w, h)}
                for i, (name, w, h) in enumerate(photos)]
    if ext == "csv":   # rows only for photos with people: the same frames as the JSON's
        people = json.loads(stills_exports["json"].read_text())["frames"]
        expected = [e for e, f in zip(expected, people) if f["people"]]
        assert len(expected) >= 2
    assert frames == expected
    if meta is not None:
        assert meta["fps"] is None and meta["focal"] is None
        assert meta["input"] == str(stills_folder[0])


# --------------------------------------------------------------------------------------------
# Output paths checked before the first frame

def test_check_output_path_accepts_good_paths(tmp_path):
    assert check_output_path(str(tmp_path / "a.mp4"), "video") == tmp_path / "a.mp4"
    assert check_output_path(str(tmp_path / "a.JSON"), "export") == tmp_path / "a.JSON"
    assert check_output_path(str(tmp_path / "a.png"), "image") == tmp_path / "a.png"
    assert check_output_path(str(tmp_path / "frames"), "image") == tmp_path / "frames"
    assert check_output_path(str(tmp_path), "image") == tmp_path   # existing folder
    assert list(tmp_path.iterdir()) == []   # the write test left nothing behind


@pytest.mark.parametrize("path, kind, message", [
    ("out.xyz", "export", "unknown export format '.xyz'"),
    ("out", "export", "unknown export format"),
    ("out.mkv2", "video", "unknown video format"),
    ("out.gifx", "image", "unknown image format"),
    ("no/such/folder/out.mp4", "video", "does not exist"),
    ("/proc/out.json", "export", "cannot write to folder"),
])
def test_check_output_path_rejects(path, kind, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # relative names must not meet the caller's own files
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        check_output_path(path, kind)


@pytest.mark.parametrize("path, kind, message", [
    ("out.gif", "plot", "unknown plot format '.gif': use .png, .pdf, .svg or .jpg."),
    ("./plot", "plot", "unknown plot format './plot': use .png, .pdf, .svg or .jpg."),
    ("out.mkv", "video", "unknown video format '.mkv': use .mp4, .mov, .m4v or .avi."),
    ("out", "export", "unknown export format 'out': use .json, .csv or .npz."),
    ("out.ppm", "image", "unknown image format '.ppm': use .jpg, .png, .bmp, .webp or .tif, or a "
                         "folder name without an extension."),
])
def test_one_extension_check_for_every_output(path, kind, message):
    """check_extension holds each kind's choices and its sentence; --plot uses it too."""
    with pytest.raises(UserError, match="^" + re.escape(message) + "$"):
        check_extension(path, kind)


def test_plot_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_plot_path("p.svg") == Path("p.svg")
    assert list(tmp_path.iterdir()) == []   # the write test left nothing behind
    for path in ("no/such/folder/p.png", "p.png/x.png"):
        with pytest.raises(UserError, match=f"^cannot write the plot '{path}': its folder does "
                                            r"not exist or is not writable\.$"):
            check_plot_path(path)
    (tmp_path / "shots.png").mkdir()
    with pytest.raises(UserError, match="^--plot 'shots.png' is a folder: give a file name inside it.$"):
        check_plot_path("shots.png")
    with pytest.raises(UserError, match="^unknown plot format '.gif'"):
        check_plot_path("p.gif")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to mount a file system")
def test_plot_path_on_a_read_only_file_system(tmp_path):
    """A folder on a file system mounted read-only: refused before the run, for every output."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(UserError, match="its folder does not exist or is not writable"):
            check_plot_path(str(mount / "p.png"))
        with pytest.raises(UserError, match="Read-only file system"):
            check_output_path(str(mount / "o.json"), "export")
    finally:
        subprocess.run(["umount", str(mount)])


def test_check_extension_answers_the_extension_in_lower_case():
    assert [check_extension(path, kind) for path, kind in [
        ("p.SVG", "plot"), ("v.MOV", "video"), ("e.Npz", "export"), ("i.jpeg", "image"),
        ("frames", "image")]] == [".svg", ".mov", ".npz", ".jpeg", ""]


def test_an_output_that_exists_is_replaced_only_with_force(tmp_path):
    from app.outputs import check_not_replacing
    mine = tmp_path / "mine.json"
    mine.write_text("the user's")
    with pytest.raises(UserError, match=r"^--export '.*mine.json' exists already: pass --force to replace it"):
        check_not_replacing("--export", str(mine), force=False)
    check_not_replacing("--export", str(mine), force=True)
    check_not_replacing("--export", str(tmp_path / "new.json"), force=False)   # nothing there: fine
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / ".frame.part-1-0000abcd.jpg").write_bytes(b"")   # a killed run's temporary is not the user's
    check_not_replacing("--output", str(frames), force=False)
    (frames / "000000.jpg").write_bytes(b"the user's")
    with pytest.raises(UserError, match="is a folder that holds files already: pass --force"):
        check_not_replacing("--output", str(frames), force=False)
    check_not_replacing("--output", str(frames), force=True)
    # what cannot be replaced whatever --force says is left to check_output_path, which says why:
    # a folder at a file's name, a file at a folder output's name
    (tmp_path / "shots.jpg").mkdir()
    (tmp_path / "shots.jpg" / "a.jpg").write_bytes(b"the user's")
    check_not_replacing("--output", str(tmp_path / "shots.jpg"), force=False)
    with pytest.raises(UserError, match="is a folder: give a file name inside it"):
        check_output_path(str(tmp_path / "shots.jpg"), "image")
    (tmp_path / "frames_out").write_text("the user's")
    check_not_replacing("--output", str(tmp_path / "frames_out"), force=False)
    with pytest.raises(UserError, match="exists and is not a folder"):
        check_output_path(str(tmp_path / "frames_out"), "image")


def test_check_output_path_rejects_folder_and_file_parent(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        check_output_path(str(tmp_path), "video")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_output_path(str(tmp_path / "file.txt" / "out.json"), "export")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_check_output_path_rejects_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot write"):
            check_output_path(str(folder / "out.mp4"), "video")
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(os.name != "posix", reason="a file size limit (ulimit -f) is POSIX")
def test_a_file_left_by_an_earlier_run_is_not_reported_as_written(tmp_path):
    """When this run's export fails to finish (an NPZ is written whole at close, here past the
    file size limit), the file already at the path (an earlier run's) stays untouched and is
    not listed as written; the output that did finish is."""
    path, other = tmp_path / "joints.npz", tmp_path / "joints.json"
    path.write_bytes(b"an earlier run's export")
    said = under_file_size_limit(f"""
        # one person: the JSON (about 1.8 kB) fits, the NPZ (about 3.7 kB: 14 arrays) does not
        rng = np.random.default_rng(0)
        group = SinkGroup([NpzExporter({str(path)!r}, META), JsonExporter({str(other)!r}, META)])
        person = Person(Box(10, 20, 80, 200, score=0.9),
                        rng.uniform(0, 640, (18, 2)).astype(np.float32),
                        rng.normal(0, 400, (18, 3)).astype(np.float32),
                        rng.uniform(0, 1, 18).astype(np.float32), track_id=1)
        group.write(FrameResult(Frame(0, 0.0, np.zeros((8, 8, 3), np.uint8)), [person]))
        try:
            group.close()
        except UserError as error:
            print(error)
        print(group.files)
    """, limit_bytes=2800)
    assert said.splitlines() == [f"cannot write '{path}': file too large (what was there before is "
                                 "unchanged).", repr([str(other)])]
    assert path.read_bytes() == b"an earlier run's export"
    assert len(json.loads(other.read_text())["frames"]) == 1
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# What is read and what is written

def test_what_is_written_can_be_read_back():
    """Every format the outputs write is one the sources open (a written video can be
    processed again); exports are not inputs."""
    assert set(WRITABLE_VIDEO_EXTENSIONS) <= READABLE_VIDEO_EXTENSIONS
    assert set(WRITABLE_IMAGE_EXTENSIONS) <= READABLE_IMAGE_EXTENSIONS
    assert not set(EXPORT_EXTENSIONS) & (READABLE_VIDEO_EXTENSIONS | READABLE_IMAGE_EXTENSIONS)


@pytest.mark.parametrize("output, input_kind, expected", [
    ("out.mp4", "video", "video"), ("frames", "video", "image"), ("out.PNG", "image", "image"),
    ("photos", "stills", "image"),
    ("out.mkv", "video", "cannot write a video to 'out.mkv': for a video, camera or sequence of "
                         "frames use .mp4, .mov, .m4v or .avi, or a folder name"),   # read, not written
    ("out.ppm", "image", "cannot write an image to 'out.ppm': for one picture use .jpg, .png, "
                         ".bmp, .webp or .tif."),
    ("out.jpg", "stills", "cannot write several unrelated photos to 'out.jpg'"),
])
def test_output_kind_suits_the_input(output, input_kind, expected):
    if expected in ("video", "image"):
        assert output_kind_for(output, input_kind) == expected
    else:
        with pytest.raises(UserError, match="^" + re.escape(expected)):
            output_kind_for(output, input_kind)
