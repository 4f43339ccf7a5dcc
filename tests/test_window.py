"""The interactive window: keys and mouse through the pure controls, and the REAL OpenCV window
under Xvfb (screenshots, keys and drags sent with xdotool, the close button via WM_DELETE_WINDOW).

Run as a script (`python tests/test_window.py --child DIR`) it is the window process the tests
drive: it shows frames of a standing person and prints every action with the view state.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import queue
import random
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT_DIR = Path(__file__).resolve().parents[1]
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.errors import UserError  # noqa: E402
from app.render3d import Panel3D  # noqa: E402
from app.skeleton import SIDE_COLOURS_BGR  # noqa: E402
from app.view import Rect  # noqa: E402
from app.window import Action, ViewerControls, key_to_action, wheel_delta  # noqa: E402
from support import standing_person  # noqa: E402

TITLE = "ConvNeXtPose Live test"


# --- pure key and mouse handling ---------------------------------------------------------------

def test_key_codes_map_to_actions():
    assert key_to_action(ord("q")) is Action.QUIT and key_to_action(27) is Action.QUIT
    assert key_to_action(ord("Q")) is Action.QUIT
    assert key_to_action(ord(" ")) is Action.PAUSE
    assert key_to_action(ord("r")) is Action.RESET_VIEW
    assert key_to_action(ord("a")) is Action.AUTO_ROTATE
    assert key_to_action(ord("c")) is Action.CENTRE
    assert key_to_action(ord("s")) is Action.SCREENSHOT
    assert key_to_action(ord("h")) is Action.HELP
    assert key_to_action(-1) is Action.NONE and key_to_action(ord("z")) is Action.NONE
    assert key_to_action(65361) is Action.ORBIT_LEFT          # X11 keysym via waitKeyEx
    assert key_to_action(0x1000014) is Action.ORBIT_RIGHT     # Qt key code
    assert key_to_action(0x100000 | ord("s")) is Action.SCREENSHOT   # modifier bits above the byte


def test_controls_apply_every_key(tmp_path, caplog):
    caplog.set_level("INFO", logger="app")
    panel = Panel3D(640, 480)
    c = ViewerControls(panel, screenshot_dir=tmp_path)
    assert c.handle_key(ord(" ")) is Action.PAUSE and c.paused
    c.handle_key(ord(" "))
    assert not c.paused
    c.handle_key(ord("h"))
    assert c.show_help
    c.handle_key(ord("a"))
    c.tick(0.5)
    assert c.auto_rotate and panel.state.azimuth_deg == pytest.approx(10.0)
    c.handle_key(ord("c"))
    assert panel.state.centred
    c.handle_key(65362)
    c.handle_key(ord("+"))
    assert panel.state.elevation_deg > 12 and panel.state.zoom < 1
    c.handle_key(ord("r"))
    assert panel.state.azimuth_deg == 0 and panel.state.zoom == 1 and not c.auto_rotate
    assert panel.state.centred            # reset changes the view, not the mode
    assert c.handle_key(ord("s")) is Action.SCREENSHOT and c.last_screenshot is None   # nothing shown yet
    c.last_image = panel.render([standing_person()])
    c.handle_key(ord("s"))
    assert c.last_screenshot is not None and c.last_screenshot.parent == tmp_path
    assert cv2.imread(str(c.last_screenshot)).shape == (480, 640, 3)
    assert any(str(c.last_screenshot.resolve()) in r.getMessage() for r in caplog.records)
    c.handle_key(27)
    assert c.quit


def test_mouse_orbits_and_zooms_only_over_the_panel():
    panel = Panel3D(640, 480)
    c = ViewerControls(panel)
    rect = Rect(640, 0, 640, 480)
    c.on_mouse(cv2.EVENT_LBUTTONDOWN, 100, 100, cv2.EVENT_FLAG_LBUTTON, rect)      # over the video
    c.on_mouse(cv2.EVENT_MOUSEMOVE, 200, 100, cv2.EVENT_FLAG_LBUTTON, rect)
    assert panel.state.azimuth_deg == 0
    c.on_mouse(cv2.EVENT_LBUTTONDOWN, 900, 200, cv2.EVENT_FLAG_LBUTTON, rect)
    c.on_mouse(cv2.EVENT_MOUSEMOVE, 950, 230, cv2.EVENT_FLAG_LBUTTON, rect)
    c.on_mouse(cv2.EVENT_LBUTTONUP, 950, 230, 0, rect)
    assert panel.state.azimuth_deg == pytest.approx(-20.0)
    assert panel.state.elevation_deg == pytest.approx(12.0 + 12.0)
    c.on_mouse(cv2.EVENT_MOUSEWHEEL, 300, 100, 120 << 16, rect)                   # over the video
    assert panel.state.zoom == 1
    assert wheel_delta(120 << 16) == 120 and wheel_delta((-120 & 0xFFFF) << 16) == -120
    c.on_mouse(cv2.EVENT_MOUSEWHEEL, 900, 100, 120 << 16, rect)
    assert panel.state.zoom == pytest.approx(0.9)
    c.on_mouse(cv2.EVENT_MOUSEWHEEL, 900, 100, (-240 & 0xFFFF) << 16, rect)
    assert panel.state.zoom == pytest.approx(0.9 / 0.81)


def test_no_display_is_a_user_error(monkeypatch):
    from app.view import SceneRenderer
    from app.window import Viewer

    if not sys.platform.startswith("linux"):
        pytest.skip("the display probe is for X11")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(UserError, match="--no-display"):
        Viewer(TITLE, SceneRenderer())
    if ctypes.util.find_library("X11"):
        monkeypatch.setenv("DISPLAY", ":9876")              # nobody listens there
        with pytest.raises(UserError, match="--no-display"):
            Viewer(TITLE, SceneRenderer())


# --- the real window under Xvfb ------------------------------------------------------------------

@pytest.fixture(scope="module")
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb imagemagick xdotool)")
    # Xvfb claims a display number by creating its lock file atomically and exits at once when
    # another server holds it; with -displayfd it writes the number when it accepts
    # connections. (Choosing a free-looking number and waiting for its socket raced with other
    # test runs on the machine: both tests then talked to one server.) -noreset: the server
    # must not reset, refusing connections, when the last client leaves between two tests.
    # Random high numbers keep clear of :0 and of numbers other tools pick first.
    rng = random.Random()
    for _ in range(20):
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(["Xvfb", f":{rng.randrange(100, 2000)}", "-displayfd", str(write_fd), "-noreset",
                                 "-screen", "0", "1600x900x24", "-nolisten", "tcp"],
                                pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        number = b""
        deadline = time.monotonic() + 20
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while not number.endswith(b"\n") and time.monotonic() < deadline:
                if select.select([pipe], [], [], 0.1)[0]:
                    chunk = pipe.read(16)
                    if not chunk:
                        break           # Xvfb exited: the number was taken
                    number += chunk
        if number.strip().isdigit() and proc.poll() is None:
            break
        proc.kill()
        proc.wait(5)
    else:
        pytest.skip("Xvfb did not start")
    yield f":{int(number)}"
    proc.terminate()
    proc.wait(5)


class Child:
    """The window process; its stdout lines arrive on a queue."""

    def __init__(self, display: str, outdir: Path, seconds: float):
        env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(ROOT_DIR))
        env.pop("QT_QPA_PLATFORM", None)
        self.display = display
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", str(outdir), str(seconds)],
                                     env=env, cwd=outdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.remaps = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.log.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}; got: {self.log[-20:]}")

    def x(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=dict(os.environ, DISPLAY=self.display), check=True, timeout=10)

    def key(self, name: str) -> None:
        # Callers wait for the child's ACTION line before the next key: keys that arrive in
        # the same HighGUI poll would merge.
        self.x("key", name)

    def remap(self) -> None:
        """Unmap and map the window again, as minimising and restoring it would. Works around a
        race in Qt's xcb platform seen under heavy load with Xvfb (no window manager): now and
        then a new window is mapped but never painted (it stays black for good while the app
        keeps showing frames; its image rect is right); a fresh map makes Qt paint it."""
        env = dict(os.environ, DISPLAY=self.display)
        ids = subprocess.run(["xdotool", "search", "--name", TITLE], env=env, capture_output=True,
                             text=True, timeout=10).stdout.split()
        for win in ids:
            subprocess.run(["xdotool", "windowunmap", "--sync", win], env=env, timeout=10, check=False)
            subprocess.run(["xdotool", "windowmap", "--sync", win], env=env, timeout=10, check=False)
            subprocess.run(["xdotool", "windowfocus", win], env=env, timeout=10, check=False)
        self.remaps += 1

    def screenshot(self, path: Path) -> np.ndarray:
        subprocess.run(["import", "-window", "root", str(path)], env=dict(os.environ, DISPLAY=self.display),
                       check=True, timeout=20)
        img = cv2.imread(str(path))
        assert img is not None
        return img

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def _colour_count(img: np.ndarray, colour, tol: int = 30) -> int:
    return int((np.abs(img.astype(int) - np.array(colour)).max(axis=2) <= tol).sum())


def _field(line: str, name: str) -> float:
    return float(next(part.split("=", 1)[1] for part in line.split() if part.startswith(name + "=")))


def _window_geometry(child: Child) -> tuple[int, int]:
    out = subprocess.run(["xdotool", "search", "--sync", "--name", TITLE, "getwindowgeometry", "--shell"],
                         env=dict(os.environ, DISPLAY=child.display), capture_output=True, text=True, timeout=10)
    vals = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    return int(vals.get("X", 0)), int(vals.get("Y", 0))


def _send_wm_delete(display: str, title: str) -> bool:
    """What a window manager does when the user clicks the close button."""
    lib = ctypes.util.find_library("X11")
    if lib is None or shutil.which("xdotool") is None:
        return False
    win = int(subprocess.run(["xdotool", "search", "--name", title], env=dict(os.environ, DISPLAY=display),
                             capture_output=True, text=True, timeout=10).stdout.split()[0])
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                    ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5), ("pad", ctypes.c_long * 24)]

    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        return False
    ev = ClientMessage(type=33, send_event=1, display=dpy, window=win, format=32,
                       message_type=x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0))
    ev.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
    x11.XSendEvent(dpy, win, 0, 0, ctypes.byref(ev))
    x11.XFlush(dpy)
    x11.XCloseDisplay(dpy)
    return True


def _poll(what: str, take, ok, timeout: float = 15.0):
    """Take screenshots until `ok(shot)` holds; generous timeout for a loaded CI machine. The
    last screenshot is kept for the failure message's sake."""
    deadline = time.monotonic() + timeout
    while True:
        shot = take()
        if ok(shot):
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout:.0f} s)")
        time.sleep(0.05)


def test_real_window_draws_skeleton_and_answers_keys_and_mouse(xvfb, tmp_path):
    has_xdotool = shutil.which("xdotool") is not None
    if shutil.which("import") is None:
        pytest.skip("ImageMagick's import is not installed (apt-get install imagemagick)")
    child = Child(xvfb, tmp_path, seconds=60.0 if has_xdotool else 6.0)
    try:
        child.wait_for("READY", timeout=20)
        x0, y0 = _window_geometry(child) if has_xdotool else (0, 0)

        black_since = [None]

        def window() -> np.ndarray:
            shot = child.screenshot(tmp_path / "root.png")[y0:y0 + 480, x0:x0 + 1280]
            if shot.any() or not has_xdotool:
                black_since[0] = None
            elif black_since[0] is None:
                black_since[0] = time.monotonic()
            elif time.monotonic() - black_since[0] > 1.0:    # not a moment's recreation: never painted
                child.remap()
                black_since[0] = None
            return shot

        def skeleton_shown(shot: np.ndarray) -> bool:
            return (shot.shape[:2] == (480, 1280)
                    and all(_colour_count(shot[:, 640:], c) > 40 for c in SIDE_COLOURS_BGR.values())
                    and _colour_count(shot[:, :640], SIDE_COLOURS_BGR["left"]) > 40)    # and on the video

        _poll("the skeleton's side colours never showed in the 3D panel and on the video", window, skeleton_shown)
        if not has_xdotool:
            assert child.proc.wait(20) == 0
            pytest.skip("xdotool is not installed: keys and mouse were not sent to the real window")

        child.x("search", "--name", TITLE, "windowfocus", "--sync")
        child.key("a")
        assert "auto_rotate=True" in child.wait_for("ACTION auto-rotate")
        child.key("a")
        child.wait_for("ACTION auto-rotate")
        child.key("c")
        assert "centred=True" in child.wait_for("ACTION centre")
        child.key("h")
        assert "help=True" in child.wait_for("ACTION help")
        child.key("h")
        child.wait_for("ACTION help")
        child.key("s")
        saved = Path(child.wait_for("screenshot saved:").split(":", 1)[1].strip())
        assert saved.parent == tmp_path and cv2.imread(str(saved)).shape == (480, 1280, 3)

        # Paused: frames stop (the swaying people stand still on the video), but a drag on the
        # 3D panel still redraws it.
        child.key("space")
        line = child.wait_for("ACTION pause")
        assert "paused=True" in line
        az_paused = _field(line, "az")
        shots = [window()]

        def still(shot: np.ndarray) -> bool:
            shots.append(shot)
            return np.array_equal(shots[-2], shots[-1]) and skeleton_shown(shot)

        before = _poll("the window kept changing while paused", window, still)
        child.x("mousemove", str(x0 + 900), str(y0 + 240), "mousedown", "1")
        for step in range(1, 6):
            child.x("mousemove", str(x0 + 900 + 25 * step), str(y0 + 240 + 5 * step))
        child.x("mouseup", "1")
        turned = _poll("the panel did not redraw while paused", window,
                       lambda shot: np.abs(shot[:, 640:].astype(int) - before[:, 640:]).sum() > 10000)
        assert np.array_equal(turned[:, :600], before[:, :600]), "the paused video changed"
        # Wheel over the panel zooms the 3D view; OpenCV's own Qt magnification of the whole
        # window is undone, so the video half (with its HUD) looks exactly as before while the
        # panel shows the nearer view.
        shots[:] = [window()]
        after = _poll("the panel kept changing after the drag", window, still)
        child.x("mousemove", str(x0 + 900), str(y0 + 240), "click", "4")
        assert "zoom=0.900" in child.wait_for("WHEEL")

        def unmagnified_and_zoomed(shot: np.ndarray) -> bool:
            return (np.array_equal(shot[:, :600], before[:, :600])
                    and np.abs(shot[:, 640:].astype(int) - after[:, 640:]).sum() > 10000
                    and skeleton_shown(shot))

        try:
            _poll("", window, unmagnified_and_zoomed)
        except AssertionError:
            cv2.imwrite(str(tmp_path / "before.png"), before)
            cv2.imwrite(str(tmp_path / "after.png"), after)
            raise AssertionError("the window itself zoomed (or the 3D view did not): see "
                                 f"{tmp_path}/root.png, before.png, after.png") from None
        child.key("space")
        line = child.wait_for("ACTION pause")
        assert "paused=False" in line and "zoom=0.900" in line
        # 125 px of drag at 0.4 degrees per pixel, grab-and-turn (right drag -> azimuth down).
        assert _field(line, "az") - az_paused == pytest.approx(-50.0, abs=0.2)
        child.key("r")
        assert "az=0.0" in child.wait_for("ACTION reset view")
        child.key("q")
        child.wait_for("ACTION quit")
        state = json.loads(child.wait_for("STATE")[len("STATE "):])
        assert child.proc.wait(10) == 0
        assert state["centred"] and not state["paused"] and state["frames"] > 5
        assert state["qt_zoom_resets"] >= 1           # the wheel did magnify Qt's view, and it was undone
        if child.remaps:
            print(f"note: the window was remapped {child.remaps} time(s): Qt left it unpainted")
    finally:
        child.stop()


def test_closing_the_window_quits(xvfb, tmp_path):
    if shutil.which("xdotool") is None or ctypes.util.find_library("X11") is None:
        pytest.skip("needs xdotool and libX11 to press the close button")
    child = Child(xvfb, tmp_path, seconds=30.0)
    try:
        child.wait_for("READY", timeout=20)
        assert _send_wm_delete(xvfb, TITLE)
        state = json.loads(child.wait_for("STATE", timeout=10)[len("STATE "):])
        assert child.proc.wait(10) == 0 and state["frames"] < 600
    finally:
        child.stop()


# --- the child process -----------------------------------------------------------------------------

def _child_main(outdir: str, seconds: float) -> int:
    from app.types import Frame, FrameResult
    from app.view import SceneInfo, SceneRenderer
    from app.window import Viewer

    scene = SceneRenderer()
    viewer = Viewer(TITLE, scene, screenshot_dir=outdir)
    controls = viewer.controls
    apply = controls.apply

    def logged_apply(action):
        apply(action)
        s = scene.panel.state
        print(f"ACTION {action.value} az={s.azimuth_deg:.1f} zoom={s.zoom:.3f} centred={s.centred} "
              f"paused={controls.paused} auto_rotate={controls.auto_rotate} help={controls.show_help}", flush=True)

    controls.apply = logged_apply
    on_mouse = controls.on_mouse

    def logged_on_mouse(event, x, y, flags, rect):
        on_mouse(event, x, y, flags, rect)
        if event in (cv2.EVENT_MOUSEWHEEL, cv2.EVENT_MOUSEHWHEEL):
            print(f"WHEEL zoom={scene.panel.state.zoom:.3f}", flush=True)

    controls.on_mouse = logged_on_mouse
    video = np.full((480, 640, 3), (96, 88, 80), np.uint8)
    start, frames = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        sway = 40.0 * np.sin(frames / 15.0)
        people = [standing_person((-700 + sway, 200, 3200), 1), standing_person((800, 250, 4000), 2, yaw_deg=25)]
        result = FrameResult(Frame(frames, frames / 30.0, video), people, {"detect": 9.0, "pose": 31.0, "render": 1.5})
        if not viewer.present(result, SceneInfo("ConvNeXtPose-S (test)", "cpu", 30.0)):
            break
        frames += 1
        if frames == 1:
            print("READY", flush=True)
        time.sleep(0.01)
    viewer.close()
    s = scene.panel.state
    print("STATE " + json.dumps({"frames": frames, "centred": s.centred, "paused": controls.paused,
                                 "azimuth": s.azimuth_deg, "zoom": s.zoom,
                                 "qt_zoom_resets": viewer.qt_zoom_resets}), flush=True)
    return 0


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "--child":
    from app.reporting import reporting
    with reporting():   # the window's own lines ("screenshot saved: ...") as the command shows them
        sys.exit(_child_main(sys.argv[2], float(sys.argv[3])))


# --- playback at the file's own rate ------------------------------------------------------------

def test_pacer_plays_a_file_at_its_frame_rate_and_never_rushes_to_catch_up():
    from app.window import Pacer
    pacer = Pacer()
    fps = 10.0
    now, shown = 100.0, []
    for i in range(10):
        now += 0.02                      # processing takes 20 ms: faster than the file
        now += pacer.wait_s(i / fps, now)
        shown.append(now)
    np.testing.assert_allclose(np.diff(shown), 0.1, atol=1e-9)     # 10 fps, not 50
    # late by a second (slow processing): shown at once, then paced from there, no burst
    late = shown[-1] + 1.1
    assert pacer.wait_s(1.0, late) == 0.0
    assert pacer.wait_s(1.1, late + 0.02) == pytest.approx(0.08)
    # a loop restart (time goes back) starts the clock again
    assert pacer.wait_s(0.0, late + 5.0) == 0.0


def test_key_f_and_the_fast_flag_switch_between_frame_rate_and_as_fast_as_possible(tmp_path):
    from app.cli import parse_settings
    controls = ViewerControls(Panel3D(), screenshot_dir=tmp_path)
    assert controls.realtime
    assert controls.handle_key(ord("f")) is Action.FAST and not controls.realtime
    controls.handle_key(ord("f"))
    assert controls.realtime
    assert parse_settings(["--input", "clip.mp4", "--fast"]).view.fast
    assert not parse_settings(["--input", "clip.mp4"]).view.fast


def test_help_overlay_columns_are_aligned():
    """The right column of every two-column help line starts at the same x."""
    from app.render2d import draw_text_box
    from app.window import HELP_LINES
    pairs = [t for t in HELP_LINES if isinstance(t, tuple)]
    assert len(pairs) >= 10
    starts = []
    for left, right in pairs:
        # each line first in a box with the first line (so the left column is as wide as in the
        # help), with and without its right part: where they differ first is where it starts
        box = np.zeros((60, 900, 3), np.uint8)
        draw_text_box(box, [(left, right), pairs[0]], (0, 0))
        only_left = np.zeros((60, 900, 3), np.uint8)
        draw_text_box(only_left, [(left, ""), pairs[0]], (0, 0))
        diff = np.abs(box.astype(int) - only_left.astype(int)).sum(axis=2)[:30]
        starts.append(int(np.flatnonzero(diff.any(axis=0))[0]))
    assert max(starts) - min(starts) <= 2, starts
