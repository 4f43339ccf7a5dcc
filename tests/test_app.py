"""The application end to end: real photos and short videos made from them, through the CLI."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from app.backends import find_checkpoint
from app.cli import main
from app.settings import CameraSettings
from app.skeleton import BONES, JOINT_INDEX, JOINT_NAMES

from support import (DATA, ROOT, SHARED_CONVNEXTPOSE, BlankVideo, FakeCamera, drifting_clip, frame_number,
                     video_frames, video_properties)

TINY = str(DATA / "ConvNeXtPose_TINY.tar")
J = JOINT_INDEX


def bone_length(joints, a, b):
    return float(np.linalg.norm(np.asarray(joints[J[a]]) - np.asarray(joints[J[b]])))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return drifting_clip(tmp_path_factory.mktemp("clip") / "skiers.mp4")


# ---- the fallback on a real photo ----

def test_fallback_on_a_real_photo_gives_plausible_3d_joints(tmp_path, capsys):
    out, export = tmp_path / "group_pose.jpg", tmp_path / "group_pose.json"
    assert main(["--input", str(DATA / "group.jpg"), "--model", "blazepose", "--no-display",
                 "--output", str(out), "--export", str(export)]) == 0
    data = json.loads(export.read_text())
    assert data["meta"]["model"] == "BlazePose GHUM (fallback)"
    assert data["meta"]["joints"] == list(JOINT_NAMES)
    assert data["meta"]["skeleton"] == [list(b) for b in BONES] and data["meta"]["units"] == "mm"
    # a picture has no frame rate: no made-up fps or time; the frame names its photo and focal
    height, width = cv2.imread(str(DATA / "group.jpg")).shape[:2]
    assert data["meta"]["fps"] is None and data["meta"]["focal"] is None
    assert {k: data["frames"][0][k] for k in ("index", "time", "photo")} == {"index": 0, "time": None,
                                                                             "photo": "group.jpg"}
    assert data["frames"][0]["focal"] == pytest.approx(CameraSettings().camera(width, height).fx)
    people = data["frames"][0]["people"]
    assert len(people) >= 3, "the tiled detector finds at least 3 of the 5 skiers"
    assert len({p["id"] for p in people}) == len(people)
    for person in people:
        joints = np.array(person["joints_3d"])
        assert joints.shape == (18, 3) and np.allclose(joints[J["Pelvis"]], 0, atol=1e-3)
        assert len(person["joints_2d"]) == 18 and len(person["confidence"]) == 18
        # bone lengths in human ranges (mm), averaged left and right
        thigh = (bone_length(joints, "R_Hip", "R_Knee") + bone_length(joints, "L_Hip", "L_Knee")) / 2
        shin = (bone_length(joints, "R_Knee", "R_Ankle") + bone_length(joints, "L_Knee", "L_Ankle")) / 2
        shoulders = bone_length(joints, "L_Shoulder", "R_Shoulder")
        assert 250 < thigh < 600 and 250 < shin < 600 and 200 < shoulders < 550
        assert joints[J["Head"], 1] < joints[J["Pelvis"], 1], "head above pelvis (y down)"
    image = cv2.imread(str(out))
    photo = cv2.imread(str(DATA / "group.jpg"))
    assert image.shape[0] == photo.shape[0] and image.shape[1] > photo.shape[1], "video beside the 3D panel"


# ---- the ConvNeXtPose path ----

def test_convnextpose_video_end_to_end(tmp_path, clip):
    out, export = tmp_path / "annotated.mp4", tmp_path / "joints.json"
    assert main(["--input", str(clip), "--model", TINY, "--no-display", "--output", str(out),
                 "--export", str(export), "--focal", "900"]) == 0
    frames, size, fps = video_properties(out)
    assert frames == 12 and fps == pytest.approx(20.0, abs=0.01)
    photo = cv2.imread(str(DATA / "group.jpg"))
    assert size[1] == photo.shape[0] and size[0] >= 2 * photo.shape[1] - 2
    data = json.loads(export.read_text())
    assert data["meta"]["model"] == "ConvNeXtPose (custom)"
    assert data["meta"]["focal"] == 900.0 and data["meta"]["fps"] == pytest.approx(20.0)
    assert [f["index"] for f in data["frames"]] == list(range(12))
    assert data["frames"][3]["time"] == pytest.approx(3 / 20.0)
    assert any(f["people"] for f in data["frames"])
    for frame in data["frames"]:
        for person in frame["people"]:
            assert np.array(person["joints_3d"]).shape == (18, 3)
            assert all(0.0 <= c <= 1.0 for c in person["confidence"])


def test_xs_release_checkpoint_is_named_in_the_export(tmp_path):
    xs = SHARED_CONVNEXTPOSE / "ConvNeXtPose_XS.tar"
    if not xs.exists():
        pytest.skip(f"{xs} is not here (the large conformance files live in ../shared)")
    export = tmp_path / "xs.json"
    assert main(["--input", str(DATA / "group.jpg"), "--model", str(xs), "--no-display",
                 "--export", str(export)]) == 0
    assert json.loads(export.read_text())["meta"]["model"] == "ConvNeXtPose-XS"


def test_weights_folder_prefers_l_then_m_s_xs(tmp_path):
    assert find_checkpoint(tmp_path) is None
    for name in ("ConvNeXtPose_XS.tar", "ConvNeXtPose_S.pth", "zzz_custom.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert find_checkpoint(tmp_path).name == "ConvNeXtPose_S.pth"
    (tmp_path / "ConvNeXtPose_L.tar").write_bytes(b"x")
    assert find_checkpoint(tmp_path).name == "ConvNeXtPose_L.tar"


def test_exports_agree_across_formats(tmp_path, clip):
    paths = {ext: tmp_path / f"joints.{ext}" for ext in ("json", "csv", "npz")}
    for path in paths.values():
        assert main(["--input", str(clip), "--model", TINY, "--no-display", "--export", str(path),
                     "--max-frames", "6", "--no-smooth"]) == 0
    frames = json.loads(paths["json"].read_text())["frames"]
    assert len(frames) == 6
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    people_rows = [(f["index"], p) for f in frames for p in f["people"]]
    assert len(rows) == 18 * len(people_rows)
    for k, (index, person) in enumerate(people_rows):
        for j in range(18):
            row = rows[18 * k + j]
            assert int(row["frame"]) == index and int(row["id"]) == person["id"]
            assert float(row["x_3d"]) == pytest.approx(person["joints_3d"][j][0], abs=1e-3)
            assert float(row["y_2d"]) == pytest.approx(person["joints_2d"][j][1], abs=1e-3)
    npz = np.load(paths["npz"], allow_pickle=False)
    assert len(npz["person_id"]) == len(people_rows)
    np.testing.assert_allclose(npz["joints_3d"], [p["joints_3d"] for _, p in people_rows], atol=1e-3)


def _frame_colour_bar_columns(image) -> int:
    """Columns of a plot holding the viridis colour bar of frame numbers that the trajectory plot
    has (app/plot.py): its yellow end (RGB 253, 231, 37) above its dark purple end (68, 1, 84)."""
    def near(rgb):
        return np.abs(image.astype(int) - np.array(rgb[::-1])).max(axis=2) <= 12
    yellow, purple = near((253, 231, 37)), near((68, 1, 84))
    columns = 0
    for x in range(image.shape[1]):
        top, bottom = np.flatnonzero(yellow[:, x]), np.flatnonzero(purple[:, x])
        columns += len(top) >= 3 and len(bottom) >= 3 and bottom.min() > top.max()
    return columns


def test_plot_of_a_joint_trajectory(tmp_path, clip):
    """--plot-joint turns the --plot figure from the last frame's skeletons into the named
    joint's path over the run, with a colour bar of frame numbers; another joint, another path."""
    plots = {}
    for name, extra in (("R_Wrist", ["--plot-joint", "R_Wrist"]), ("L_Ankle", ["--plot-joint", "L_Ankle"]),
                        ("skeletons", [])):
        plot = tmp_path / f"{name}.png"
        assert main(["--input", str(clip), "--model", TINY, "--no-display", "--max-frames", "5",
                     "--plot", str(plot)] + extra) == 0
        plots[name] = cv2.imread(str(plot))
        assert plots[name] is not None and plots[name].shape[0] > 100
    assert _frame_colour_bar_columns(plots["R_Wrist"]) >= 5
    assert _frame_colour_bar_columns(plots["skeletons"]) == 0, "the skeleton plot has no frame colour bar"
    # below the titles (which name the joints): the wrist's paths are not the ankle's
    wrist, ankle = plots["R_Wrist"], plots["L_Ankle"]
    assert wrist.shape == ankle.shape
    below_title = slice(wrist.shape[0] // 4, None)
    changed = int((np.abs(wrist[below_title].astype(int) - ankle[below_title]).max(axis=2) > 60).sum())
    assert changed > 500, changed


class _CountedRenders:
    """Counts the compositions of every SceneRenderer (app/view.py) made while it is installed."""

    def __init__(self, monkeypatch):
        from app.view import SceneRenderer
        self.calls = 0
        render = SceneRenderer.render

        def counted(scene, *args, **kwargs):
            self.calls += 1
            return render(scene, *args, **kwargs)
        monkeypatch.setattr(SceneRenderer, "render", counted)


def test_benchmark_prints_json_last(tmp_path, clip, capsys, monkeypatch, detector):
    renders = _CountedRenders(monkeypatch)
    assert main(["--input", str(clip), "--model", TINY, "--benchmark", "--max-frames", "8"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["frames"] == 8 and report["fps"] > 0
    assert set(report["stages_ms"]) == {"read", "detect", "pose", "model", "track", "render", "write"}
    stages = report["stages_ms"]
    assert stages["pose"] > 0 and 0 < stages["model"] <= stages["pose"]
    # nothing shown or written: no picture is composed (it used to be, ~10 ms a frame for L)
    assert renders.calls == 0
    assert report["device"] == "cpu" and report["model"] == "ConvNeXtPose (custom)"
    # launch (of this test process: tests/test_startup.py times a fresh one) to first frame, and
    # the rate against what the model alone would allow (its arithmetic: tests/test_run_report.py)
    assert report["startup_s"]["to_first_frame"] > 0
    efficiency = report["efficiency"]
    assert efficiency["model_ms"] == pytest.approx(stages["model"], abs=0.01)
    # one inferring thread: the model's time is a share of the run's, never more
    assert 0 < efficiency["ratio"] <= 1.0
    after = efficiency["after_first_frame"]
    assert set(after) == {"ratio", "fps", "model_ms"} and min(after.values()) > 0
    # what the detection plan searched: the first frame the whole sweep, each later frame only a
    # slice of it (a sweep is spread over several frames), so the seven later frames together
    # visit fewer tiles than one more sweep holds
    detection = report["detection"]
    sweep = len(detector.tiles(*video_properties(clip)[1]))
    assert detection["frames"] == 8 and detection["whole_frame"] >= 1
    assert sweep <= detection["tiles_searched"] <= detection["tiles_visited"] < 2 * sweep
    # the pose network alone, plain float32 eager vs the path that ran, timed in the same run
    network = report["pose_network"]
    assert network["batch"] >= 1 and network["fp32_eager_ms"] > 0 and network["selected_ms"] > 0
    assert network["compute_path"] == "fp32" and network["max_deviation"] < 0.05


def test_benchmark_with_an_output_composes_every_frame(tmp_path, clip, capsys, monkeypatch):
    renders = _CountedRenders(monkeypatch)
    out = tmp_path / "out.mp4"
    assert main(["--input", str(clip), "--model", TINY, "--benchmark", "--max-frames", "4",
                 "--output", str(out)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 4
    assert renders.calls == 4
    # every frame written is the composition: the video frame on the left (its overlays cover
    # a small part of it), the 3D panel beside it at the same height
    written, shot = list(video_frames(out)), list(video_frames(clip))[:4]
    assert len(written) == 4
    height, width = shot[0].shape[:2]
    for image, frame in zip(written, shot):
        assert image.shape[0] == height and image.shape[1] >= 2 * width - 2
        assert np.median(np.abs(image[:, :width].astype(int) - frame)) < 10
        panel = image[:, width:2 * width - 2]
        assert np.median(np.abs(panel.astype(int) - frame[:, :width - 2])) > 50, "the panel is not the video"
        assert panel.std() > 10, "the panel is drawn (its floor grid and people), not left blank"


# ---- bad input: one clear line, exit code 2, no traceback, no file left behind ----

def _bad(args, capsys, expect):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expect in lines[0], err
    assert "Traceback" not in err


def test_missing_input(tmp_path, capsys):
    _bad(["--input", str(tmp_path / "nope.mp4"), "--no-display", "--model", "blazepose"], capsys, "does not exist")


def test_corrupt_video(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(4096))
    out = tmp_path / "out.mp4"
    _bad(["--input", str(bad), "--no-display", "--output", str(out), "--model", "blazepose"], capsys, "broken.mp4")
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_bf16_on_hardware_without_it(tmp_path, capsys, monkeypatch):
    """--precision bf16 where the device has no native bf16: one line naming the flag."""
    import models.optimize
    monkeypatch.setattr(models.optimize, "available_precisions", lambda device: ["fp32"])
    out = tmp_path / "out.json"
    _bad(["--input", str(DATA / "group.jpg"), "--no-display", "--model", TINY, "--precision", "bf16",
          "--export", str(out)], capsys, "--precision bf16")
    assert list(tmp_path.iterdir()) == []


def test_camera_that_is_not_there(capsys):
    _bad(["--input", "9", "--no-display", "--model", "blazepose"], capsys, "camera")


def test_unreadable_file_type(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    _bad(["--input", str(notes), "--no-display", "--model", "blazepose"], capsys, "notes.txt")


def test_unwritable_output_and_unknown_export(tmp_path, capsys):
    photo = str(DATA / "group.jpg")
    _bad(["--input", photo, "--no-display", "--output", str(tmp_path / "no" / "such" / "x.jpg")], capsys, "does not exist")
    _bad(["--input", photo, "--no-display", "--export", str(tmp_path / "joints.xml")], capsys, "unknown export format")
    assert list(tmp_path.iterdir()) == []


def test_bad_and_malicious_model_files(tmp_path, capsys):
    photo = str(DATA / "group.jpg")
    junk = tmp_path / "junk.pth"
    junk.write_text("not weights")
    export = tmp_path / "joints.json"
    _bad(["--input", photo, "--no-display", "--model", str(junk), "--export", str(export)], capsys, "junk.pth")
    _bad(["--input", photo, "--no-display", "--model", str(tmp_path / "missing.tar")], capsys, "does not exist")
    victim = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"\x80\x04\x95" + _evil_pickle_body(victim))
    _bad(["--input", photo, "--no-display", "--model", str(evil)], capsys, "refused")
    assert not victim.exists() and not export.exists()


def _evil_pickle_body(victim):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(victim), "w"))
    return pickle.dumps({"network": Payload()})[3:]


def test_bad_options(capsys):
    _bad(["--input", str(DATA / "group.jpg"), "--max-frames", "0"], capsys, "--max-frames")
    _bad(["--input", str(DATA / "group.jpg"), "--fov", "0"], capsys, "--fov")


def test_real_cli_process_reports_one_line(tmp_path):
    """The real entry point, as a user runs it: no traceback, exit code 2."""
    result = subprocess.run([sys.executable, str(ROOT / "run_demo.py"), "--input", str(tmp_path / "x.avi")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_ctrl_c_keeps_every_frame_written(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the video and the JSON hold
    every frame processed so far, and the exit code says it was interrupted."""
    clip = drifting_clip(tmp_path / "long.mp4", frames=400)
    out, export = tmp_path / "annotated.mp4", tmp_path / "joints.json"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_demo.py"), "--input", str(clip), "--model", TINY,
         "--no-display", "--output", str(out), "--export", str(export), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline and not any(p.name.startswith(".") for p in tmp_path.iterdir()):
        time.sleep(0.2)   # the sinks' hidden temporary files appear with the first frame
    time.sleep(2.0)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    data = json.loads(export.read_text())
    written = len(data["frames"])
    assert 0 < written < 400
    assert [f["index"] for f in data["frames"]] == list(range(written))
    frames, _, _ = video_properties(out)
    assert frames == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_live_camera_input_processes_the_newest_frames(tmp_path, monkeypatch):
    """A camera faster than the processing: each frame the run takes is the camera's newest, so
    the frame numbers painted by the camera skip ahead (a queue of every frame would give 1, 2,
    3, ...), never go back and never repeat."""
    from app import sources

    taken = []   # the camera's number of each frame the run takes, in order

    class Recorded(sources.LiveSource):
        def __iter__(self):
            for frame in super().__iter__():
                taken.append(frame_number(frame.image))
                yield frame

    camera = FakeCamera(cv2.imread(str(DATA / "group.jpg")), fps=50.0)
    monkeypatch.setattr(sources, "open_source", lambda spec, **kw: Recorded(camera, "camera 0"))
    export, out = tmp_path / "live.json", tmp_path / "live.mp4"
    assert main(["--input", "0", "--model", TINY, "--no-display", "--max-frames", "6",
                 "--export", str(export), "--output", str(out)]) == 0
    frames = json.loads(export.read_text())["frames"]
    assert [f["index"] for f in frames] == list(range(6))
    times = [f["time"] for f in frames]
    assert all(b > a for a, b in zip(times, times[1:])), "wall-clock times increase"
    assert len(taken) == 6 and taken == sorted(set(taken)), taken
    # the camera went on while the models warmed up, and while the first frame was searched
    # whole (tens of camera frames at 50 fps): the frames taken are the newest, not the next
    assert taken[0] > 1 and taken[-1] - taken[0] > 5, taken
    assert camera.released.is_set()
    assert video_properties(out)[0] >= 6


def test_benchmark_of_a_live_source_reports_latency(monkeypatch, capsys):
    from app import sources

    camera = FakeCamera(cv2.imread(str(DATA / "group.jpg")), fps=50.0)
    monkeypatch.setattr(sources, "open_source", lambda spec, **kw: sources.LiveSource(camera, "camera 0"))
    assert main(["--input", "0", "--model", TINY, "--benchmark", "--max-frames", "5"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    latency = report["latency_ms"]
    assert set(latency) == {"mean", "p95", "processing_mean", "beyond_processing_p95", "frame_interval"}
    assert latency["frame_interval"] == pytest.approx(20.0)      # the camera's 50 fps
    assert 0 < latency["processing_mean"] <= latency["mean"]      # waiting is never negative
    # every frame the camera delivered was either processed or dropped (while the models warmed
    # up, at least, the camera went on)
    assert report["frames_dropped"] == camera.delivered - report["frames"] > 0


def test_a_failing_output_stops_every_thread_while_decoding_is_slow():
    """The writer fails while the decoder is slower than inference: run() re-raises, and the
    inference thread has ended by then (it used to wait forever on the empty frame queue and
    be left running while the backend was closed under it)."""
    import threading
    from types import SimpleNamespace

    from app.frame_loop import FrameLoop
    from app.settings import CameraSettings
    from app.types import FrameResult

    class FullDisk:
        needs_image = False

        def write(self, result, composed):
            raise OSError("disk full")

        def close(self):
            pass

    loop = FrameLoop(CameraSettings(), BlankVideo(delay_s=0.3), detector=None, backend=SimpleNamespace(name="x", device="cpu"),
                     tracker=None, scene=None, viewer=None, sinks=FullDisk())
    loop.process = lambda frame, read_ms=0.0: FrameResult(frame, [], {})
    with pytest.raises(OSError, match="disk full"):
        loop.run()
    assert [t.name for t in threading.enumerate() if t.name == "infer"] == []


def test_a_stop_signal_during_a_write_counts_the_frame_it_let_finish():
    """A SIGTERM arriving while a frame is being written waits for that frame (it goes into
    every output), and the summary counts it: the summary once said 6 frames for a 7-frame
    file when the signal came between writing a frame and counting it."""
    import os
    import signal
    from types import SimpleNamespace

    from app import signals
    from app.frame_loop import FrameLoop
    from app.settings import CameraSettings
    from app.outputs import SinkGroup
    from app.types import FrameResult

    class Recorder:
        needs_image = False
        committed = True
        path = "recorded"

        def __init__(self):
            self.written = []
            self.signum = signal.SIGTERM

        def write(self, result, composed):
            self.written.append(result.frame.index)
            if len(self.written) == 3:
                os.kill(os.getpid(), self.signum)   # arrives in the middle of the frame
                time.sleep(0.05)

        def close(self):
            pass

    recorder = Recorder()
    sinks = SinkGroup()
    sinks.add(recorder)
    loop = FrameLoop(CameraSettings(), BlankVideo(), detector=None, backend=SimpleNamespace(name="x", device="cpu"),
                     tracker=None, scene=None, viewer=None, sinks=sinks)
    loop.process = lambda frame, read_ms=0.0: FrameResult(frame, [], {})
    before = {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS}
    with signals.handled():
        with pytest.raises(signals.Interrupted) as stop:
            loop.run()
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert recorder.written == [0, 1, 2]
    assert loop.summary.frames == 3
    # In-process use gets its handlers back: what this process starts later must not inherit
    # ignored signals (a batch started by a later test ignored Ctrl-C).
    assert {sig: signal.getsignal(sig) for sig in signals.STOP_SIGNALS} == before

    # The same loop used as a library, with Python's own Ctrl-C handler: a Ctrl-C during a
    # write also waits for the frame, then ends the run as a KeyboardInterrupt.
    recorder.written.clear()
    recorder.signum = signal.SIGINT
    sinks = SinkGroup()
    sinks.add(recorder)
    loop = FrameLoop(CameraSettings(), BlankVideo(), detector=None, backend=SimpleNamespace(name="x", device="cpu"),
                     tracker=None, scene=None, viewer=None, sinks=sinks)
    loop.process = lambda frame, read_ms=0.0: FrameResult(frame, [], {})
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert recorder.written == [0, 1, 2] and loop.summary.frames == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- output kinds and folders ----

@pytest.mark.parametrize("input_name, output, expect", [
    ("pedestrians.mp4", "v.jpg", ".mp4, .mov, .m4v or .avi, or a folder name"),
    ("pedestrians.mp4", "v.mkv", ".mp4, .mov, .m4v or .avi, or a folder name"),
    ("group.jpg", "g.mp4", "for one picture use .jpg, .png"),
])
def test_an_output_of_the_wrong_kind_is_refused_naming_the_right_ones(tmp_path, capsys, input_name, output, expect):
    _bad(["--input", str(DATA / input_name), "--no-display", "--model", "blazepose",
          "--output", str(tmp_path / output)], capsys, expect)
    assert list(tmp_path.iterdir()) == []


def test_a_video_written_as_a_folder_of_frames(tmp_path, capsys):
    out = tmp_path / "frames"
    assert main(["--input", str(DATA / "pedestrians.mp4"), "--no-display", "--no-progress",
                 "--model", "blazepose", "--max-frames", "3", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_a_folder_of_unrelated_photos_is_stills_each_on_its_own(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("messi5.jpg", "group.jpg", "home.jpg"):
        (photos / name).write_bytes((DATA / name).read_bytes())
    out, export = tmp_path / "out", tmp_path / "joints.json"
    assert main(["--input", str(photos), "--no-display", "--no-progress", "--model", "blazepose",
                 "--output", str(out), "--export", str(export)]) == 0
    err = capsys.readouterr().err
    assert "each is processed on its own" in err
    assert sorted(p.name for p in out.iterdir()) == ["group_pose.jpg", "home_pose.jpg", "messi5_pose.jpg"]
    for name in ("group", "home", "messi5"):    # each at its own size, not stretched to the first's
        assert cv2.imread(str(out / f"{name}_pose.jpg")).shape[0] == cv2.imread(str(DATA / f"{name}.jpg")).shape[0]
    frames = json.loads(export.read_text())["frames"]
    # each photo on its own: the same people as when it is processed alone (Messi was missed
    # when the photos were tracked as one video)
    for frame, name in zip(frames[2:], ("messi5",)):
        alone = tmp_path / f"{name}.json"
        assert main(["--input", str(DATA / f"{name}.jpg"), "--no-display", "--model", "blazepose",
                     "--export", str(alone)]) == 0
        people_alone = json.loads(alone.read_text())["frames"][0]["people"]
        assert len(frame["people"]) == len(people_alone)
        for got, want in zip(frame["people"], people_alone):
            assert got["id"] == want["id"]
            np.testing.assert_allclose(got["joints_2d"], want["joints_2d"], atol=1e-3)
    assert len(frames[2]["people"]) >= 1          # Messi is found
    # unrelated photos make no video
    _bad(["--input", str(photos), "--no-display", "--model", "blazepose", "--output", str(tmp_path / "p.mp4")],
         capsys, "give a folder name")


def test_a_folder_of_numbered_frames_of_one_size_is_a_video(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(DATA / "pedestrians.mp4"))
    for i in range(4):
        cv2.imwrite(str(frames / f"frame_{i:03d}.png"), capture.read()[1])
    capture.release()
    out = tmp_path / "frames.mp4"
    assert main(["--input", str(frames), "--no-display", "--no-progress", "--model", "blazepose",
                 "--output", str(out)]) == 0
    assert "processed as a video" in capsys.readouterr().err
    assert video_properties(out)[0] == 4
    # one photo of another size makes the folder stills
    cv2.imwrite(str(frames / "frame_004.png"), cv2.imread(str(DATA / "messi5.jpg")))
    _bad(["--input", str(frames), "--no-display", "--model", "blazepose", "--output", str(tmp_path / "f2.mp4")],
         capsys, "give a folder name")


# ---- progress ----

def _run_in_a_terminal(args, cwd):
    """The command with stderr on a pseudo-terminal, as a user sees it; what it drew there."""
    import fcntl
    import pty
    import struct
    import termios
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))   # 100 columns
    process = subprocess.Popen([sys.executable, str(ROOT / "run_demo.py"), *args], cwd=cwd,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:   # the terminal's other end closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_a_file_run_on_a_terminal_shows_a_progress_bar_and_a_log_file_gets_none(tmp_path):
    args = ["-i", str(DATA / "pedestrians.mp4"), "--no-display", "--model", "blazepose",
            "--max-frames", "6", "-e", "o.json"]
    code, drawn = _run_in_a_terminal(args, tmp_path)
    assert code == 0, drawn
    assert "processing: 100%" in drawn and "6/6" in drawn, drawn   # the bar reached its end
    assert drawn.rstrip().splitlines()[-1].startswith("Processed 6 frames")
    (tmp_path / "o.json").unlink()
    logged = subprocess.run([sys.executable, str(ROOT / "run_demo.py"), *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert logged.returncode == 0, logged.stderr
    assert "\r" not in logged.stderr and "processing" not in logged.stderr


# ---- settings ----

def test_numbered_frames_of_another_size_are_said_before_a_video_output_is_refused(tmp_path, capsys):
    """Numbered frames with one of another size are photos, not a video: the run says which
    frame, then refuses the .mp4 that only a video can have."""
    photo = cv2.imread(str(DATA / "group.jpg"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"frame_{i:03d}.png"), photo[:240, i * 20:i * 20 + 320])
    cv2.imwrite(str(frames / "frame_002.png"), photo[:200, :300])
    assert main(["--input", str(frames), "--output", str(tmp_path / "x.mp4"), "--no-display",
                 "--model", "blazepose"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-2] == (f"Folder '{frames}': 'frame_002.png' is 300x200 where the frames before it "
                         "('frame_000.png' on) are 320x240: numbered frames of different sizes are not one "
                         "sequence; its 4 photos are each processed on their own."), lines
    assert lines[-1].startswith("error: cannot write several unrelated photos to 'x.mp4'"), lines


def test_force_replaces_an_earlier_result(tmp_path):
    """Without --force an existing output is refused (tests/test_adversarial.py); with it, the
    earlier file is replaced by the new result."""
    out = tmp_path / "o.json"
    out.write_text('{"earlier run": true}')
    assert main(["--input", str(DATA / "group.jpg"), "--no-display", "--model", "blazepose", "-e", str(out)]) == 2
    assert out.read_text() == '{"earlier run": true}'
    assert main(["--input", str(DATA / "group.jpg"), "--no-display", "--model", "blazepose", "-e", str(out),
                 "--force"]) == 0
    assert len(json.loads(out.read_text())["frames"][0]["people"]) == 5


@pytest.mark.parametrize("args, expect", [
    (["--max-frames", "0"], "--max-frames must be at least 1"),
    (["--focal", "nan"], "--focal must be a positive number of pixels"),
    (["--fov", "0"], "--fov must be between 1 and 179 degrees"),
    (["--detect-every", "0"], "--detect-every must be at least 1"),
    (["--joint-threshold", "1.5"], "--joint-threshold must be between 0 and 1"),
    (["--plot-joint", "R_Wrist"], "--plot-joint needs --plot PATH"),
    (["--plot", "p.png", "--plot-joint", "Tail"], "unknown joint 'Tail' for --plot-joint"),
])
def test_settings_are_checked_before_anything_opens(tmp_path, capsys, args, expect):
    _bad(["--input", str(tmp_path / "missing.mp4"), "--no-display", *args], capsys, expect)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, warning", [
    (["--device", "cuda", "--precision", "fp16"], "--device cuda and --precision fp16: the BlazePose fallback "
                                                  "runs on the CPU in float32 (these options are ConvNeXtPose's)."),
    (["--precision", "bf16"], "--precision bf16: the BlazePose fallback runs on the CPU in float32"),
    (["--loop"], "--loop restarts video files; '" + str(DATA / "group.jpg") + "' is a picture: it is not restarted."),
])
def test_settings_the_run_cannot_follow_are_said(capsys, args, warning):
    """Asked for and not done: said in a warning (the run itself goes on: nothing is wrong with
    the input), never silently dropped."""
    assert main(["--input", str(DATA / "group.jpg"), "--no-display", "--model", "blazepose", *args]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("warning: ") and warning in line for line in lines), lines


@pytest.mark.parametrize("args, expect", [
    (["--focal", "abc"], "argument --focal: invalid float value: 'abc' (run_demo.py --help lists the options)."),
    (["--max-frames", "1.5"], "argument --max-frames: invalid int value: '1.5'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
])
def test_options_the_parser_refuses_are_one_line_too(tmp_path, capsys, args, expect):
    """Not argparse's usage block and "run_demo.py: error:" line: the command's one line."""
    assert main(["--input", str(tmp_path / "missing.mp4"), "--no-display", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], lines


def test_batch_options_the_parser_refuses_are_one_line(capsys):
    from app.batch import main as batch_main
    assert batch_main([]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: the following arguments are required: INPUT, --out-dir/-o "
                     "(run_demo.py batch --help lists the options)."]


@pytest.mark.parametrize("reader, expect", [
    ("closed", "cannot write the report to standard output: its reader has closed it."),
    ("/dev/full", "cannot write the report to standard output: no space left on device."),
    ("none", "--benchmark prints its report on standard output, which is closed."),   # `>&-`
])
def test_benchmark_report_that_cannot_be_written_is_one_line(tmp_path, reader, expect):
    """`... --benchmark | head -c 0`, or stdout on a full disk: one line on stderr, exit 2,
    no traceback (print() raised BrokenPipeError or OSError)."""
    command = [sys.executable, str(ROOT / "run_demo.py"), "--input", str(DATA / "group.jpg"),
               "--model", "blazepose", "--benchmark"]
    if reader == "none":   # refused before anything runs
        done = subprocess.run(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=120, pass_fds=(),
                              preexec_fn=lambda: os.close(1))
        stderr, code = done.stderr, done.returncode
    elif reader == "closed":
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True)
        process.stdout.close()   # the reader goes away before the report
        stderr = process.stderr.read()
        code = process.wait(timeout=120)
    else:
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full here")
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, cwd=tmp_path, stdout=full, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, timeout=120)
        stderr, code = done.stderr, done.returncode
    assert code == 2, stderr
    assert stderr.strip().splitlines()[-1] == f"error: {expect}", stderr
    assert "Traceback" not in stderr


def test_the_joint_threshold_changes_the_drawing_not_the_joints(tmp_path):
    """--joint-threshold 1 hides every joint of the annotated picture; the exported joints,
    each with its confidence, are the same as with the default."""
    for name, extra in (("default", []), ("none", ["--joint-threshold", "1"])):
        assert main(["--input", str(DATA / "group.jpg"), "--no-display", "--model", "blazepose",
                     "--output", str(tmp_path / f"{name}.png"), "--export", str(tmp_path / f"{name}.json")]
                    + extra) == 0
    default, hidden = (json.loads((tmp_path / f"{n}.json").read_text())["frames"] for n in ("default", "none"))
    assert default == hidden
    width = cv2.imread(str(DATA / "group.jpg")).shape[1]
    default, hidden = (cv2.imread(str(tmp_path / f"{n}.png")).astype(int) for n in ("default", "none"))
    # the video half: the skeletons drawn over the photo, or not; the 3D panel beside it: the same
    assert int((np.abs(default[:, :width] - hidden[:, :width]).max(axis=2) > 60).sum()) > 2000
    assert np.array_equal(default[:, width:], hidden[:, width:])
