"""Input sources: every kind opens, yields the right frames, and bad input fails at open time."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.errors import UserError
from app.sources import (READ_AHEAD_FRAMES, ImageFilesSource, LiveSource, VideoFileSource,
                         redact_url, open_source)
from support import DATA, FakeCamera, frame_number, video_frames, write_video

GROUP = DATA / "group.jpg"               # real photo, 640x392, five people
PEDESTRIANS = DATA / "pedestrians.mp4"   # 30 real frames of OpenCV's vtest.avi, 384x288, 10 fps


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    image = cv2.imread(str(GROUP))
    assert image is not None
    return image


def pan_crops(group: np.ndarray, n: int, w: int = 320, h: int = 240, step: int = 12) -> list:
    """n different real-image frames: a camera panning right over the group photo."""
    return [np.ascontiguousarray(group[40:40 + h, i * step:i * step + w]) for i in range(n)]


def closest(image: np.ndarray, candidates: list) -> int:
    diffs = [np.mean(np.abs(image.astype(np.int16) - c.astype(np.int16))) for c in candidates]
    return int(np.argmin(diffs))


# --------------------------------------------------------------------------------------------
# Good inputs

def test_single_image(group):
    with open_source(str(GROUP)) as source:
        assert source.is_still and not source.is_live
        assert source.size == (640, 392)
        assert source.frame_count == 1
        assert source.fps > 0
        assert source.description == str(GROUP)
        frames = list(source)
    assert len(frames) == 1
    assert frames[0].index == 0 and frames[0].time == 0.0
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (392, 640, 3)
    np.testing.assert_array_equal(frames[0].image, group)


def test_folder_sorted_by_name_and_non_images_skipped(tmp_path, group):
    crops = pan_crops(group, 4)
    # Natural order: frame2 before frame10; the text file and a hidden file are ignored.
    names = ["frame1.png", "frame2.png", "frame10.png", "frame11.PNG"]
    for name, crop in zip(names, crops):
        cv2.imwrite(str(tmp_path / name), crop)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "subfolder").mkdir()
    with open_source(str(tmp_path), still_fps=5.0) as source:
        # numbered frames of one size: a sequence, read as a video
        assert source.mode == "sequence" and not source.is_still and source.frame_count == 4
        assert source.size == (320, 240)
        frames = list(source)
        assert [source.path_of(f.index).name for f in frames] == names
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.time for f in frames] == [0.0, 0.2, 0.4, 0.6000000000000001] or \
        np.allclose([f.time for f in frames], [0, 0.2, 0.4, 0.6])
    for frame, crop in zip(frames, crops):   # PNG is lossless: exact pixels, in order
        np.testing.assert_array_equal(frame.image, crop)


def test_folder_iterated_again_continues_the_indices(tmp_path, group):
    for i, crop in enumerate(pan_crops(group, 3)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), crop)
    with open_source(str(tmp_path)) as source:
        first = next(iter(source))
        rest = list(source)
        assert [f.index for f in [first, *rest]] == [0, 1, 2]
        assert [source.path_of(f.index).name for f in rest] == ["1.png", "2.png"]


def test_folder_skips_an_undecodable_image(tmp_path, group):
    crops = pan_crops(group, 3)
    cv2.imwrite(str(tmp_path / "a.png"), crops[0])
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    cv2.imwrite(str(tmp_path / "c.png"), crops[2])
    with open_source(str(tmp_path)) as source:
        frames = list(source)
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[1].image, crops[2])


def test_folder_frame_after_an_undecodable_one_keeps_its_number(tmp_path, group):
    """A numbered frame that cannot be decoded leaves a gap: each frame's index is its file's
    position in the sequence (frame_006.png is index 6, not 5), and its time follows from it."""
    crops = pan_crops(group, 10)
    for i, crop in enumerate(crops):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), crop)
    (tmp_path / "frame_005.png").write_bytes((tmp_path / "frame_005.png").read_bytes()[:300])   # cut short
    with open_source(str(tmp_path), still_fps=10.0) as source:
        assert source.mode == "sequence"
        frames = list(source)
        names = [source.path_of(f.index).name for f in frames]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert names == [f"frame_{i:03d}.png" for i in [0, 1, 2, 3, 4, 6, 7, 8, 9]]
    assert np.allclose([f.time for f in frames], [f.index / 10.0 for f in frames])
    for frame in frames:   # PNG is lossless: each frame is the picture of its own file
        np.testing.assert_array_equal(frame.image, crops[frame.index])


def test_folder_whose_first_frames_cannot_be_decoded_starts_at_the_first_that_can(tmp_path, group):
    crops = pan_crops(group, 4)
    for i, crop in enumerate(crops):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), crop)
    (tmp_path / "f0.png").write_bytes(b"\x89PNG broken")
    with open_source(str(tmp_path)) as source:
        frames = list(source)
        assert [source.path_of(f.index).name for f in frames] == ["f1.png", "f2.png", "f3.png"]
    assert [f.index for f in frames] == [1, 2, 3]
    np.testing.assert_array_equal(frames[0].image, crops[1])


def test_numbered_frames_of_another_size_say_which_file(tmp_path, group):
    """One frame of another size makes numbered frames unrelated photos ("stills"); the source
    says which file, and both sizes (the run announces it: tests/test_app.py)."""
    for i, crop in enumerate(pan_crops(group, 5)):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), crop)
    cv2.imwrite(str(tmp_path / "frame_003.png"), group[:200, :300])
    with open_source(str(tmp_path)) as source:
        assert source.mode == "stills" and source.is_still
        assert source.not_a_sequence == ("'frame_003.png' is 300x200 where the frames before it ('frame_000.png' "
                                         "on) are 320x240: numbered frames of different sizes are not one sequence")


def _damage(source: Path, target: Path, fraction: float, size: int) -> Path:
    """A copy of `source` with `size` bytes at `fraction` of its length overwritten with random
    ones (a fixed seed), its length kept."""
    data = source.read_bytes()
    at = int(len(data) * fraction)
    noise = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(data[:at] + noise + data[at + size:])
    return target


def _damaged_frames(path: Path, count: int) -> tuple[list, list[int]]:
    """The frames of a video of `count` frames damaged in the middle, checked: indices increase,
    a gap as long as what was lost lies inside (the end still decodes), times follow the
    indices. The frames, and the positions missing."""
    with open_source(str(path)) as source:
        frames = list(source)
        lost = source.frames_unreadable
        fps = source.fps
    indices = [f.index for f in frames]
    assert lost >= 1, "the damage makes some frames undecodable"
    assert len(frames) + lost == count
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == count - 1, indices
    missing = sorted(set(range(count)) - set(indices))
    assert len(missing) == lost, (indices, lost)
    assert np.allclose([f.time for f in frames], np.array(indices) / fps)
    return frames, missing


def test_damaged_video_frames_keep_their_position_in_the_file(tmp_path):
    """pedestrians.mp4 (MPEG-4 part 2, a keyframe every 12 frames) with 6 KB of random bytes in
    its middle: the frames that cannot be decoded leave a gap, and every frame after it is
    numbered by its position in the file, not by how many frames decoded before it."""
    good = list(video_frames(PEDESTRIANS))
    assert len(good) == 30
    frames, missing = _damaged_frames(_damage(PEDESTRIANS, tmp_path / "damaged.mp4", 0.5, 6000), 30)
    for frame in frames:   # a frame identical to one of the file is that one
        same = [i for i, image in enumerate(good) if np.array_equal(frame.image, image)]
        assert not same or frame.index in same, (frame.index, same)
    after = [f.index for f in frames if f.index > missing[-1] and np.array_equal(f.image, good[f.index])]
    assert len(after) >= 3, "from the next keyframe on, frames decode exactly, each at its own index"


def test_frames_lost_before_a_stop_are_counted_without_reading_to_the_end(tmp_path):
    """--max-frames past a damaged stretch stops the run before the decoder reaches the end:
    the frames lost among those processed are still counted (they are in the gap)."""
    damaged = _damage(PEDESTRIANS, tmp_path / "damaged.mp4", 0.5, 6000)
    with open_source(str(damaged)) as whole:
        indices = [f.index for f in whole]
    missing = sorted(set(range(30)) - set(indices))
    stop_after = indices.index(next(i for i in indices if i > missing[-1])) + 1   # the first frame after the gap
    with open_source(str(damaged)) as source:
        iterator = iter(source)
        for _ in range(stop_after):
            next(iterator)
        assert source.frames_unreadable == len(missing)


def test_damaged_h264_frames_come_in_order_at_their_position(tmp_path):
    """H.264 with B-frames (x264's default), damaged in the middle: resuming, the decoder hands
    some frames out of order and OpenCV's frame counter only counts what decoded; the frames
    still come in order, each at its position in the file (the frame of the undamaged file it
    resembles most), with a gap for what was lost."""
    import imageio_ffmpeg   # a requirement (requirements.txt)
    clip = tmp_path / "h264.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(PEDESTRIANS), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", "-g", "10", str(clip)], check=True, timeout=60)
    good = [image.astype(np.int16) for image in video_frames(clip)]
    assert len(good) == 30
    frames, _ = _damaged_frames(_damage(clip, tmp_path / "damaged.mp4", 0.6, 6000), 30)
    for frame in frames:
        diffs = [np.mean(np.abs(frame.image.astype(np.int16) - image)) for image in good]
        assert int(np.argmin(diffs)) == frame.index, (frame.index, int(np.argmin(diffs)))


class ScriptedVideo:
    """cv2.VideoCapture's reading interface over a script: each entry is a frame's position (read
    succeeds, the frame shows that number, CAP_PROP_POS_MSEC its timestamp at `fps`, unless
    `timestamps` is False: 0, as for a stream without them), a (position, ms) pair (a timestamp
    of its own: a variable frame rate), or None (read fails)."""

    def __init__(self, script: list, count: int, fps: float = 25.0, timestamps: bool = True):
        self.script, self.count, self.fps, self.timestamps = list(script), count, fps, timestamps
        self.ms = 0.0

    def read(self):
        if not self.script:
            return False, None
        position = self.script.pop(0)
        if position is None:
            self.ms = 0.0   # as OpenCV reports after a failed read
            return False, None
        position, ms = position if isinstance(position, tuple) else (position, position * 1000.0 / self.fps)
        self.ms = ms if self.timestamps else 0.0
        image = np.zeros((8, 8, 3), np.uint8)
        image[0, 0] = (position % 256, position // 256, 0)
        return True, image

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_COUNT: float(self.count),
                cv2.CAP_PROP_POS_MSEC: self.ms}.get(prop, 0.0)

    def release(self):
        pass


def _positions(capture) -> tuple[list[tuple[int, int]], int]:
    source = VideoFileSource(capture, "scripted.mp4")
    frames = list(source)
    return [(f.index, frame_number(f.image)) for f in frames], source.frames_unreadable


def test_video_positions_after_damage_come_from_the_timestamps():
    # 2 and 3 lost in one failed read; 9 handed out early; 5 handed out too late to go back in
    # order (dropped, counted as lost); 18 and 19 lost at the end
    script = [0, 1, None, 4, 9, 6, 7, 8, 10, 11, 5, 12, 13, 14, 15, 16, 17, None, None]
    placed, lost = _positions(ScriptedVideo(script, count=20))
    assert placed == [(i, i) for i in [0, 1, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    assert lost == 5
    # a clean video is counted, whatever its timestamps say (a variable frame rate keeps its numbers)
    placed, lost = _positions(ScriptedVideo([0, 1, 3, 4, 6], count=5))
    assert [index for index, _ in placed] == [0, 1, 2, 3, 4] and lost == 0
    # a variable frame rate (frames 15 and 52 ms apart, 30 fps announced) damaged at frame 6:
    # every frame that decodes is kept, in order, and the numbering is counted again soon after
    times = np.cumsum([0.0] + [15.0 if i % 2 else 52.0 for i in range(29)])
    script = [(i, times[i]) if i != 6 else None for i in range(30)]
    placed, lost = _positions(ScriptedVideo(script, count=30, fps=30.0))
    shown = [number for _, number in placed]
    positions = [index for index, _ in placed]
    assert shown == [i for i in range(30) if i != 6] and lost == 1
    assert positions[:6] == list(range(6)) and all(b > a for a, b in zip(positions, positions[1:]))
    assert positions[-10:] == list(range(positions[-10], positions[-10] + 10))   # counted again
    # without timestamps, each failed read counts as one lost frame
    placed, lost = _positions(ScriptedVideo([0, 1, None, None, 4, 5, None, 7], count=8, timestamps=False))
    assert placed == [(i, i) for i in [0, 1, 4, 5, 7]] and lost == 3


def test_real_video_every_frame_in_order():
    with open_source(str(PEDESTRIANS)) as source:
        assert not source.is_live and not source.is_still
        assert source.fps == pytest.approx(10.0)
        assert source.frame_count == 30
        assert source.size == (384, 288)
        frames = list(source)
    assert [f.index for f in frames] == list(range(30))
    assert np.allclose([f.time for f in frames], np.arange(30) / 10.0)
    # Same pixels, same order as an independent decode.
    capture = cv2.VideoCapture(str(PEDESTRIANS))
    for frame in frames:
        ok, expected = capture.read()
        assert ok
        np.testing.assert_array_equal(frame.image, expected)
    assert not capture.read()[0]


def test_made_video_keeps_order_count_and_fps(tmp_path, group):
    crops = pan_crops(group, 24)
    path = write_video(tmp_path / "pan.mp4", crops, fps=12.5)
    with open_source(str(path)) as source:
        assert source.fps == pytest.approx(12.5)
        assert source.frame_count == 24
        frames = list(source)
    assert len(frames) == 24
    assert [closest(f.image, crops) for f in frames] == list(range(24))
    assert frames[5].time == pytest.approx(5 / 12.5)


def test_video_damaged_in_the_middle_ends_cleanly(tmp_path, group):
    path = write_video(tmp_path / "pan.avi", pan_crops(group, 20), fps=15, fourcc="MJPG")
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with open_source(str(cut)) as source:
        frames = list(source)   # no exception: the stream just ends
        assert 0 < len(frames) < 20
        assert source.frames_unreadable > 0


def _thread_named(name: str, before: set[threading.Thread]) -> threading.Thread:
    """The thread of that name started since `before` (threading.enumerate() then): one of
    another test on the same file, not yet ended, is not this source's."""
    threads = [t for t in threading.enumerate() if t.name == name and t not in before]
    assert len(threads) == 1, [t.name for t in threading.enumerate()]
    return threads[0]


def test_video_close_mid_iteration_ends_the_decoder():
    """Closed while its read-ahead thread waits on a full queue: the thread ends, a second
    close is harmless, and the iteration is over."""
    before = set(threading.enumerate())
    source = open_source(str(PEDESTRIANS))
    iterator = iter(source)
    for _ in range(3):
        next(iterator)
    decoder = _thread_named(f"decode {source.description}", before)
    source.close()
    source.close()
    decoder.join(timeout=30)   # only so that a decoder left blocked fails the test, not hangs it
    assert not decoder.is_alive()
    assert list(iterator) == []


# --------------------------------------------------------------------------------------------
# Bad inputs: one UserError at open time

def test_missing_path():
    with pytest.raises(UserError, match="does not exist"):
        open_source("no/such/clip.mp4")


def test_text_file(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hello, this is not a video\n" * 20)
    with pytest.raises(UserError, match="text file"):
        open_source(str(path))
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    with pytest.raises(UserError):
        open_source(str(empty))


def test_random_bytes_with_unknown_extension(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError):
        open_source(str(path))


def test_random_bytes_named_mp4(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="x.mp4"):
        open_source(str(path))


def test_corrupt_image(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(GROUP.read_bytes()[:200])
    with pytest.raises(UserError, match="cannot decode image"):
        open_source(str(path))


@pytest.mark.parametrize("keep_bytes", [0, 1500, 40000])
def test_truncated_video(tmp_path, keep_bytes):
    # The clip keeps its index (moov) at the end, as most cameras write: a cut file cannot open.
    path = tmp_path / "cut.mp4"
    path.write_bytes(PEDESTRIANS.read_bytes()[:keep_bytes])
    with pytest.raises(UserError):
        open_source(str(path))


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(UserError, match="holds no image"):
        open_source(str(tmp_path))
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(UserError, match="holds no image"):
        open_source(str(tmp_path))
    # a folder of videos: one run takes one; the sentence points to the batch command
    (tmp_path / "clip.mp4").write_bytes(PEDESTRIANS.read_bytes())
    with pytest.raises(UserError, match=r"holds videos, not images: .* run_demo.py batch '.*' --out-dir DIR"):
        open_source(str(tmp_path))


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/dev/video7"),
                    reason="a Linux machine without a camera 7")
def test_missing_camera_is_refused_before_opencv_tries_it():
    """On Linux a missing camera N is refused because /dev/videoN does not exist, without asking
    OpenCV (which tries for seconds, and prints its own warnings)."""
    with pytest.raises(UserError, match=r"^no camera with index 7 \(there is no /dev/video7\)\.$"):
        open_source("7")


def test_stream_url_password_is_hidden():
    assert redact_url("rtsp://admin:secret@10.0.0.2:554/live") == "rtsp://admin:***@10.0.0.2:554/live"
    assert redact_url("http://host/video.mjpg") == "http://host/video.mjpg"
    # The host stays as written: case kept, an IPv6 address keeps its brackets.
    assert redact_url("rtsp://u:p@[fe80::1]:554/x") == "rtsp://u:***@[fe80::1]:554/x"
    assert redact_url("rtsp://u:p@Cam.Local/x") == "rtsp://u:***@Cam.Local/x"


# --------------------------------------------------------------------------------------------
# Live sources with an injected capture

class SteppedCamera:
    """A camera that sends a frame only when the test lets it: `send(n)` lets n more frames
    through and returns once the source's reader has taken them all (it is back, waiting for the
    next). Frame k (from 1) has k painted in, as FakeCamera's (`frame_number`). The first frame
    is let through from the start, for the source's open."""

    def __init__(self):
        self._cond = threading.Condition()
        self._allowed, self._sent, self._waiting, self._ended = 1, 0, False, False
        self.released = threading.Event()

    def read(self):
        with self._cond:
            self._waiting = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._sent < self._allowed or self._ended)
            self._waiting = False
            if self._sent >= self._allowed:
                return False, None
            self._sent += 1
            image = np.zeros((48, 64, 3), np.uint8)
            image[0, 0] = (self._sent % 256, self._sent // 256, 0)
            return True, image

    def send(self, count: int) -> None:
        with self._cond:
            self._allowed += count
            self._cond.notify_all()
            # taken when the reader has come back for one more: a generous wait against hanging
            assert self._cond.wait_for(lambda: self._sent == self._allowed and self._waiting, 30)

    def unplug(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def get(self, prop):
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released.set()


def test_camera_yields_newest_frame_and_drops_older_ones():
    """Frames that arrive while the consumer is busy are dropped: the next frame it gets is the
    newest (a queue of every frame would give the next one instead)."""
    camera = SteppedCamera()
    source = LiveSource(camera, "camera 0")
    assert source.is_live and source.frame_count is None and source.size == (64, 48)
    assert source.fps == 25.0
    frames = iter(source)
    first = next(frames)                # frame 1, read for the open
    assert (frame_number(first.image), first.index) == (1, 0)
    camera.send(5)                      # frames 2 to 6 while the consumer is busy
    newest = next(frames)
    assert (frame_number(newest.image), newest.index) == (6, 1)
    assert source.frames_dropped == 4
    camera.send(1)                      # a consumer in step with the camera misses nothing
    assert frame_number(next(frames).image) == 7
    camera.send(3)
    assert frame_number(next(frames).image) == 10
    assert source.frames_dropped == 4 + 2
    camera.unplug()
    assert list(frames) == [], "nothing is yielded twice"
    source.close()
    assert camera.released.is_set()


def test_camera_read_in_real_time_by_a_slow_consumer():
    """The same with a camera that sends in real time: frames in order, none twice, the last
    one never lost, and every frame the camera sent either yielded or counted as dropped."""
    camera = FakeCamera(count=60, period=0.005)
    source = LiveSource(camera, "camera 0")
    seen = []
    for frame in source:
        seen.append(frame_number(frame.image))
        time.sleep(0.03)   # a slow consumer: about six camera frames per yielded one
    source.close()
    assert seen == sorted(set(seen)), "frames must be new and in order, never repeated"
    assert seen[-1] == 60
    assert source.frames_dropped == 60 - len(seen)
    assert camera.released.wait(30)


class StampedCamera(FakeCamera):
    """FakeCamera noting the time.monotonic() at which each read() returned, failed ones too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.returned = []

    def read(self):
        answer = super().read()
        self.returned.append(time.monotonic())
        return answer


def test_camera_fast_consumer_gets_each_frame_once():
    camera = StampedCamera(count=12, period=0.03)
    with LiveSource(camera, "camera 0") as source:
        frames = list(source)
    assert [frame_number(f.image) for f in frames] == list(range(1, 13))
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].time == 0.0
    assert all(b.time > a.time for a, b in zip(frames, frames[1:]))
    # time is wall time since the first frame arrived, whatever the camera claims (25 fps):
    # frame i arrived after the camera's read i returned and before its read i + 1 did
    r = camera.returned
    for i, frame in enumerate(frames[1:], 1):
        assert r[i] - r[1] <= frame.time <= r[i + 1] - r[0]


def test_camera_reported_fps_falls_back_to_30():
    with LiveSource(FakeCamera(count=3, period=0.001, fps=0.0), "camera 0") as source:
        assert source.fps == 30.0


def test_camera_without_picture_fails_at_open():
    camera = FakeCamera(count=1, period=0.0, first_delay=0.6)
    with pytest.raises(UserError, match="no picture"):
        LiveSource(camera, "camera 3", first_frame_timeout=0.2)


def test_video_read_ahead_is_bounded_and_keeps_every_frame():
    camera = FakeCamera(count=40, period=0.0)
    source = VideoFileSource(camera, "fake.mp4")
    iterator = iter(source)
    first = next(iterator)
    time.sleep(0.3)   # the consumer stalls; the decoder may only run a bounded way ahead
    assert camera.delivered <= 1 + READ_AHEAD_FRAMES + 1
    rest = list(iterator)
    assert [frame_number(f.image) for f in [first, *rest]] == list(range(1, 41))
    assert source.fps == 25.0
    source.close()
    assert camera.released.is_set()


def test_image_source_without_decodable_files(tmp_path):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"nope")
    with pytest.raises(UserError):
        ImageFilesSource([bad, bad], str(tmp_path))


def test_http_stream_is_live(tmp_path, group):
    """A stream URL through FFmpeg, served locally: read on the live thread, newest frames.
    MJPG in AVI because it can be read front to back (this server does no range requests)."""
    import functools
    import http.server

    write_video(tmp_path / "live.avi", pan_crops(group, 20), fps=15, fourcc="MJPG")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.avi"
        with open_source(url) as source:
            assert source.is_live and source.description == url
            assert source.size == (320, 240) and source.fps == pytest.approx(15)
            frames = list(source)
        assert 1 <= len(frames) <= 20
        assert [f.index for f in frames] == list(range(len(frames)))
    finally:
        server.shutdown()


# --------------------------------------------------------------------------------------------
# Live stream URLs reconnect after a drop

class MjpegServer:
    """An IP camera's MJPEG feed on 127.0.0.1: multipart/x-mixed-replace with one JPEG per part
    and no Content-Length for the whole response, so FFmpeg (its mpjpeg demuxer, picked from
    the content type) sees a live stream of unknown length: CAP_PROP_FRAME_COUNT < 0.

    Connection k sends `plan[k]` frames then closes the socket (a drop); connections beyond the
    plan get "503 Service Unavailable" (a camera that stays away). Frame i is crop i, so the
    consumer can tell which connection a frame came from."""

    BOUNDARY = "frameboundary"

    def __init__(self, crops: list, plan: list[int], period: float = 0.02):
        import http.server

        self.parts = [cv2.imencode(".jpg", crop)[1].tobytes() for crop in crops]
        self.plan, self.period = plan, period
        self.connections = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.serve(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.server.server_address[1]}/video.mjpg"

    def serve(self, handler) -> None:
        connection = self.connections
        self.connections += 1
        if connection >= len(self.plan):
            handler.send_error(503)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={self.BOUNDARY}")
        handler.end_headers()
        first = sum(self.plan[:connection])
        for i in range(first, first + self.plan[connection]):
            part = self.parts[i]
            handler.wfile.write(f"--{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                f"Content-Length: {len(part)}\r\n\r\n".encode() + part + b"\r\n")
            handler.wfile.flush()
            time.sleep(self.period)
        handler.close_connection = True   # the drop: the handler returns, the socket closes

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast_reconnect(monkeypatch):
    """Three quick reconnection attempts instead of the user-facing backoff."""
    from app.sources import live
    monkeypatch.setattr(live, "STREAM_RECONNECT_DELAYS_S", (0.05, 0.1, 0.1))


def test_mjpeg_stream_reconnects_after_a_drop(group, caplog, fast_reconnect):
    crops = pan_crops(group, 20)
    server = MjpegServer(crops, plan=[5, 15])   # drops after 5 frames, then 15 more, then 503
    caplog.set_level("INFO", logger="app.sources")
    try:
        url = server.url("admin:secret@")
        with open_source(url) as source:
            assert source.is_live and source.size == (320, 240)
            frames = list(source)   # ends once the second connection drops and retries fail
    finally:
        server.close()
    assert server.connections == 2 + 3      # two served, three refused attempts
    assert len(frames) > 5, "frames must keep coming after the drop"
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.time > a.time for a, b in zip(frames, frames[1:]))
    shown = [closest(f.image, crops) for f in frames]
    assert shown == sorted(set(shown)), "newest-frame order, none repeated"
    assert max(shown) >= 10, f"frames from the second connection are yielded: {shown}"
    messages = [r.getMessage() for r in caplog.records
                if r.name == "app.sources.live" and r.levelname == "WARNING"]
    redacted = server.url("admin:***@")
    assert messages == [
        f"stream '{redacted}' dropped; reconnecting (up to 3 attempts)",
        f"stream '{redacted}' reconnected (attempt 1 of 3)",
        f"stream '{redacted}' dropped; reconnecting (up to 3 attempts)",
        f"stream '{redacted}' gave up after 3 attempts to reconnect",
    ]
    assert "secret" not in caplog.text


def test_mjpeg_stream_gives_up_when_the_camera_stays_away(group, caplog, fast_reconnect):
    server = MjpegServer(pan_crops(group, 5), plan=[5])
    try:
        with open_source(server.url()) as source:
            frames = list(source)
    finally:
        server.close()
    assert 1 <= len(frames) <= 5
    assert server.connections == 1 + 3
    assert f"stream '{server.url()}' gave up after 3 attempts to reconnect" in caplog.text


def test_reconnect_releases_the_dead_capture_first_and_accepts_a_new_size(monkeypatch):
    from app.sources import live
    monkeypatch.setattr(live, "STREAM_RECONNECT_DELAYS_S", (0.01, 0.01))
    first = FakeCamera(count=4, period=0.005)
    second = FakeCamera(np.zeros((60, 80, 3), np.uint8), count=6, period=0.005, first=4)
    reopened = []

    def reopen():
        assert first.released.is_set(), "the dead capture is released before reopening"
        if reopened:
            return None
        reopened.append(threading.current_thread().name)
        return second

    with LiveSource(first, "rtsp://cam/live", reopen=reopen) as source:
        frames = list(source)
        assert source.size == (64, 48)   # the size at open
    assert reopened == ["reader rtsp://cam/live"]   # reopened on the reader thread
    numbers = [frame_number(f.image) for f in frames]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 10   # on across the reconnect
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.image.shape == ((48, 64, 3) if n <= 4 else (60, 80, 3))
               for n, f in zip(numbers, frames))
    assert second.released.is_set()


def test_close_interrupts_the_reconnection_backoff(monkeypatch):
    from app.sources import live
    monkeypatch.setattr(live, "STREAM_RECONNECT_DELAYS_S", (600.0,))
    dead = FakeCamera(count=2, period=0.005)
    reopen_calls = []
    before = set(threading.enumerate())
    source = LiveSource(dead, "rtsp://cam/live", reopen=lambda: reopen_calls.append(1))
    # The reader releases the dead capture right before it waits to reopen.
    assert dead.released.wait(30)
    reader = _thread_named("reader rtsp://cam/live", before)
    source.close()
    reader.join(timeout=30)   # far less than the wait for reopening: ended by close(), not by it
    assert not reader.is_alive()
    assert len(list(source)) <= 2 and reopen_calls == []
