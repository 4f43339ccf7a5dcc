"""The interactive window: shows the composed image, orbits the 3D panel with the mouse, and
answers keys. Key handling is pure (`key_to_action`, `ViewerControls.handle_key`) so tests drive
it without a window; `Viewer` adds the OpenCV HighGUI window around it.

The frame loop calls:
    viewer = Viewer("ConvNeXtPose Live", scene_renderer)
    while ...:
        if not viewer.present(result, SceneInfo(model, device, fps)):
            break            # q, Esc or the window was closed
    viewer.close()
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from app.errors import UserError
from app.render2d import draw_text_box
from app.render3d import Panel3D
from app.types import FrameResult
from app.view import Rect, SceneInfo, SceneRenderer

log = logging.getLogger(__name__)


class Action(Enum):
    NONE = "none"
    QUIT = "quit"
    PAUSE = "pause"
    RESET_VIEW = "reset view"
    AUTO_ROTATE = "auto-rotate"
    CENTRE = "centre"
    SCREENSHOT = "screenshot"
    HELP = "help"
    FAST = "fast"
    ORBIT_LEFT = "orbit left"
    ORBIT_RIGHT = "orbit right"
    ORBIT_UP = "orbit up"
    ORBIT_DOWN = "orbit down"
    ZOOM_IN = "zoom in"
    ZOOM_OUT = "zoom out"


_CHAR_ACTIONS = {
    "q": Action.QUIT, "\x1b": Action.QUIT, " ": Action.PAUSE, "r": Action.RESET_VIEW,
    "a": Action.AUTO_ROTATE, "c": Action.CENTRE, "s": Action.SCREENSHOT, "h": Action.HELP,
    "f": Action.FAST,
    "+": Action.ZOOM_IN, "=": Action.ZOOM_IN, "-": Action.ZOOM_OUT,
}
# Arrow keys as cv2.waitKeyEx reports them: Qt key codes, GTK keysyms, Windows virtual keys.
_SPECIAL_ACTIONS = {
    0x1000012: Action.ORBIT_LEFT, 0x1000013: Action.ORBIT_UP,
    0x1000014: Action.ORBIT_RIGHT, 0x1000015: Action.ORBIT_DOWN,
    65361: Action.ORBIT_LEFT, 65362: Action.ORBIT_UP, 65363: Action.ORBIT_RIGHT, 65364: Action.ORBIT_DOWN,
    0x250000: Action.ORBIT_LEFT, 0x260000: Action.ORBIT_UP,
    0x270000: Action.ORBIT_RIGHT, 0x280000: Action.ORBIT_DOWN,
}

HELP_LINES = (
    "keys",
    ("  drag on 3D panel", "orbit"),
    ("  wheel, right-drag", "zoom"),
    ("  + -", "zoom"),
    ("  arrows", "orbit"),
    ("  space", "pause / resume"),
    ("  f", "a file at its own frame rate / as fast as possible"),
    ("  r", "reset view"),
    ("  a", "auto-rotate on / off"),
    ("  c", "centre one person / place all"),
    ("  s", "save screenshot (PNG)"),
    ("  h", "this help"),
    ("  q, Esc", "quit"),
)

ORBIT_DEG_PER_PX = 0.4
ORBIT_DEG_PER_KEY = 5.0
ZOOM_PER_NOTCH = 0.9
AUTO_ROTATE_DEG_PER_S = 20.0


def key_to_action(key_code: int) -> Action:
    """A key code from cv2.waitKey / waitKeyEx -> the action it means (pure)."""
    if key_code is None or key_code < 0:
        return Action.NONE
    if key_code in _SPECIAL_ACTIONS:
        return _SPECIAL_ACTIONS[key_code]
    # GTK builds put modifier state (e.g. NumLock) above the low 16 bits.
    low = key_code & 0xFFFF
    if low in _SPECIAL_ACTIONS:
        return _SPECIAL_ACTIONS[low]
    if low < 0x100:
        return _CHAR_ACTIONS.get(chr(low).lower(), Action.NONE)
    return Action.NONE


@dataclass
class ViewerControls:
    """The window's state and what keys and the mouse do to it; no window needed."""
    panel: Panel3D
    screenshot_dir: Path = field(default_factory=Path.cwd)
    paused: bool = False
    show_help: bool = False
    auto_rotate: bool = False
    realtime: bool = True                     # a file plays at its own frame rate (f toggles)
    quit: bool = False
    last_image: np.ndarray | None = None      # the image shown last (for screenshots)
    last_screenshot: Path | None = None
    _drag_from: tuple[int, int] | None = None
    _zoom_from: int | None = None

    def handle_key(self, key_code: int) -> Action:
        action = key_to_action(key_code)
        self.apply(action)
        return action

    def apply(self, action: Action) -> None:
        if action is Action.QUIT:
            self.quit = True
        elif action is Action.PAUSE:
            self.paused = not self.paused
        elif action is Action.RESET_VIEW:
            self.panel.reset_view()
            self.auto_rotate = False
        elif action is Action.AUTO_ROTATE:
            self.auto_rotate = not self.auto_rotate
        elif action is Action.CENTRE:
            self.panel.toggle_centred()
        elif action is Action.SCREENSHOT:
            self.save_screenshot()
        elif action is Action.HELP:
            self.show_help = not self.show_help
        elif action is Action.FAST:
            self.realtime = not self.realtime
        elif action is Action.ORBIT_LEFT:
            self.panel.orbit(d_azimuth_deg=ORBIT_DEG_PER_KEY)
        elif action is Action.ORBIT_RIGHT:
            self.panel.orbit(d_azimuth_deg=-ORBIT_DEG_PER_KEY)
        elif action is Action.ORBIT_UP:
            self.panel.orbit(d_elevation_deg=ORBIT_DEG_PER_KEY)
        elif action is Action.ORBIT_DOWN:
            self.panel.orbit(d_elevation_deg=-ORBIT_DEG_PER_KEY)
        elif action is Action.ZOOM_IN:
            self.panel.zoom_by(ZOOM_PER_NOTCH)
        elif action is Action.ZOOM_OUT:
            self.panel.zoom_by(1.0 / ZOOM_PER_NOTCH)

    def save_screenshot(self) -> Path | None:
        if self.last_image is None:
            return None
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = self.screenshot_dir / f"convnextpose-{stamp}.png"
        if not cv2.imwrite(str(path), self.last_image):
            log.warning("could not save the screenshot to %s", path)
            return None
        self.last_screenshot = path
        log.info("screenshot saved: %s", path.resolve())
        return path

    def on_mouse(self, event: int, x: int, y: int, flags: int, panel_rect: Rect) -> None:
        """Drag to orbit, wheel to zoom; only over the 3D panel (a drag may leave it)."""
        over_panel = panel_rect.contains(x, y)
        if event == cv2.EVENT_LBUTTONDOWN and over_panel:
            self._drag_from = (x, y)
        elif event == cv2.EVENT_MOUSEMOVE and self._drag_from is not None:
            if not flags & cv2.EVENT_FLAG_LBUTTON:      # button released outside the window
                self._drag_from = None
                return
            dx, dy = x - self._drag_from[0], y - self._drag_from[1]
            self._drag_from = (x, y)
            # Grab-and-turn: dragging right turns the scene right, dragging down looks from higher.
            self.panel.orbit(d_azimuth_deg=-dx * ORBIT_DEG_PER_PX, d_elevation_deg=dy * ORBIT_DEG_PER_PX)
        elif event == cv2.EVENT_LBUTTONUP:
            self._drag_from = None
        elif event == cv2.EVENT_RBUTTONDOWN and over_panel:
            self._zoom_from = y
        elif event == cv2.EVENT_MOUSEMOVE and self._zoom_from is not None:
            if not flags & cv2.EVENT_FLAG_RBUTTON:
                self._zoom_from = None
                return
            # Right-drag down moves away, like pulling the scene towards you when dragging up.
            self.panel.zoom_by(1.01 ** (y - self._zoom_from))
            self._zoom_from = y
        elif event == cv2.EVENT_RBUTTONUP:
            self._zoom_from = None
        elif event in (cv2.EVENT_MOUSEWHEEL, cv2.EVENT_MOUSEHWHEEL) and over_panel:
            notches = wheel_delta(flags) / 120.0
            if notches:
                # Wheel forward (positive) zooms in.
                self.panel.zoom_by(ZOOM_PER_NOTCH ** notches)

    def tick(self, dt_s: float) -> None:
        if self.auto_rotate:
            self.panel.orbit(d_azimuth_deg=AUTO_ROTATE_DEG_PER_S * dt_s)


class Pacer:
    """Holds frames to their media time, as a player does: a frame with time t is due t - t0
    seconds after the first one was shown. Running late (slow processing) re-anchors the clock
    instead of rushing to catch up; a time that goes back (a --loop restart) does too."""

    LATE_RESET_S = 0.25

    def __init__(self):
        self._anchor: tuple[float, float] | None = None   # (wall clock, media time)
        self._last_media = -math.inf

    def reset(self) -> None:
        self._anchor = None

    def wait_s(self, media_time: float, now: float) -> float:
        """Seconds to wait before showing the frame with this media time."""
        if self._anchor is None or media_time < self._last_media:
            self._anchor = (now, media_time)
        self._last_media = media_time
        wait = self._anchor[0] + (media_time - self._anchor[1]) - now
        if wait < -self.LATE_RESET_S:
            self._anchor, wait = (now, media_time), 0.0
        return max(0.0, wait)


def wheel_delta(flags: int) -> int:
    """The wheel's signed delta from a mouse callback's flags (the high 16 bits, as OpenCV's
    C++ getMouseWheelDelta reads them; the Python bindings do not export it)."""
    delta = (flags >> 16) & 0xFFFF
    return delta - 0x10000 if delta >= 0x8000 else delta


def check_display() -> None:
    """Raise UserError when no window can be opened. Qt aborts the whole process when it cannot
    reach the X server, so on Linux the display is probed with Xlib before cv2 touches it."""
    if not sys.platform.startswith("linux"):
        return
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return       # someone chose another Qt platform (offscreen, wayland): trust them
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise UserError("cannot open a window: no display (DISPLAY is not set); "
                        "run with --no-display, and --output to save the result")
    lib = ctypes.util.find_library("X11")
    if lib is None:
        return       # cannot probe; let OpenCV try
    try:
        xlib = ctypes.CDLL(lib)
        xlib.XOpenDisplay.restype = ctypes.c_void_p
        xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        handle = xlib.XOpenDisplay(display.encode())
    except (OSError, AttributeError):
        return
    if not handle:
        raise UserError(f"cannot open a window: the display {display!r} cannot be reached; "
                        "run with --no-display, and --output to save the result")
    xlib.XCloseDisplay(handle)


class Viewer:
    """The HighGUI window around a SceneRenderer."""

    def __init__(self, title: str, scene: SceneRenderer, screenshot_dir: str | Path | None = None,
                 max_size: tuple[int, int] = (1800, 1000), paced: bool = False):
        """`paced`: the frames come from a file, shown at its own frame rate (their media
        times) until `f` asks for as fast as possible."""
        self.title = title
        self.paced = paced
        self._pacer = Pacer()
        self.scene = scene
        self.controls = ViewerControls(scene.panel, Path(screenshot_dir) if screenshot_dir else Path.cwd())
        self.max_size = max_size
        self._result: FrameResult | None = None
        self._info: SceneInfo | None = None
        self._last_tick = time.monotonic()
        self._shown_size: tuple[int, int] | None = None
        self._open = False
        self._qt_zoomed = False           # a wheel event has magnified the Qt view: undo it
        self.qt_zoom_resets = 0           # how often that was undone (tests, diagnostics)
        check_display()
        try:
            self._is_qt = cv2.currentUIFramework() == "QT"
        except (AttributeError, cv2.error):
            self._is_qt = False
        try:
            self._create_window()
        except cv2.error as exc:
            raise UserError(f"cannot open a window ({exc.err.strip() or 'no GUI support in OpenCV'}); "
                            "run with --no-display") from exc
        self._open = True

    # -- the frame loop's API ------------------------------------------------------------------
    def present(self, result: FrameResult, info: SceneInfo | None = None) -> bool:
        """Render, show and pump events. While paused, keeps redrawing the same frame (so the
        view can still be orbited) and only returns on resume or quit. False means stop."""
        if not self._open:
            return False
        self._result, self._info = result, info
        if self.paced and self.controls.realtime:
            # wait out the frame's media time before showing it, answering keys meanwhile
            wait = self._pacer.wait_s(result.frame.time, time.monotonic())
            while wait > 0.001 and self._open and not self.controls.quit:
                self._pump(max(1, int(wait * 1000)))
                wait = self._pacer.wait_s(result.frame.time, time.monotonic())
        else:
            self._pacer.reset()
        self.redraw()
        self._pump(1)
        if self.controls.paused:
            while self._open and not self.controls.quit and self.controls.paused:
                self.redraw()
                self._pump(15)
            self._pacer.reset()      # a pause is not lateness: resume from here
        return self._open and not self.controls.quit

    @property
    def last_image(self) -> np.ndarray | None:
        """The composed image last shown, without the help overlay (what --output records)."""
        return self.controls.last_image

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)        # let HighGUI process the destroy
            except cv2.error:
                pass

    # -- internals -----------------------------------------------------------------------------
    def redraw(self) -> None:
        if self._result is None:
            return
        now = time.monotonic()
        self.controls.tick(now - self._last_tick)
        self._last_tick = now
        image = self.scene.render(self._result, self._info)
        self.controls.last_image = image
        shown = image
        if self.controls.show_help or self.controls.paused:
            shown = image.copy()    # overlays are for the window only, not for screenshots
            if self.controls.paused:
                draw_text_box(shown, ["PAUSED  (space to resume)"], (8, image.shape[0] - 44))
            if self.controls.show_help:
                draw_text_box(shown, list(HELP_LINES), alpha=0.7, centred=True)
        self._fit_window(shown.shape)
        cv2.imshow(self.title, shown)

    def _create_window(self) -> None:
        # GUI_NORMAL: no Qt toolbar, so image and mouse coordinates match the composition.
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(self.title, self._on_mouse)
        self._shown_size = None

    def _undo_qt_zoom(self) -> None:
        """OpenCV's Qt window magnifies its image on wheel-up (DefaultViewPort::wheelEvent calls
        the mouse callback, then scaleView). Nothing in the Python API resets that: the window
        flags and setWindowProperty leave the view's transform alone, and the reset action and
        its Ctrl+Z shortcut only exist with the toolbar (WINDOW_GUI_EXPANDED). The wheel zooms
        the 3D view instead, so the window is recreated in place, synchronously, in the same
        present() whose event pump delivered the wheel event: the magnified image is on screen
        for at most one pump, and the fix does not depend on timing (about 15 ms)."""
        self._qt_zoomed = False
        x, y, _, _ = cv2.getWindowImageRect(self.title)
        cv2.destroyWindow(self.title)
        self.controls.handle_key(cv2.waitKeyEx(1))   # let Qt delete the old window; keep any key
        self._create_window()
        if x >= 0 and y >= 0:
            cv2.moveWindow(self.title, x, y)
        self.redraw()
        self.controls.handle_key(cv2.waitKeyEx(1))
        if x >= 0 and y >= 0:
            # moveWindow places the frame, the rect is the image's: take window decorations out.
            nx, ny, _, _ = cv2.getWindowImageRect(self.title)
            if (nx, ny) != (x, y) and abs(nx - x) < 200 and abs(ny - y) < 200:
                cv2.moveWindow(self.title, 2 * x - nx, 2 * y - ny)
        self.qt_zoom_resets += 1

    def _fit_window(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        if self._shown_size == (w, h):
            return
        scale = min(1.0, self.max_size[0] / w, self.max_size[1] / h)
        cv2.resizeWindow(self.title, int(w * scale), int(h * scale))
        self._shown_size = (w, h)

    def _pump(self, wait_ms: int) -> None:
        self.controls.handle_key(cv2.waitKeyEx(wait_ms))   # -1 (no key) is Action.NONE
        if self._window_closed():
            self.controls.quit = True
            self.close()
        elif self._qt_zoomed:
            self._undo_qt_zoom()

    def _window_closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def _panel_rect(self) -> Rect:
        """Where the 3D panel is in the shown image (nowhere before the first frame)."""
        if self._result is None:
            return Rect(0, 0, 0, 0)
        return self.scene.layout(self._result.frame.image.shape)[1]

    def _on_mouse(self, event: int, x: int, y: int, flags: int, _param) -> None:
        self.controls.on_mouse(event, x, y, flags, self._panel_rect())
        # Qt's scaleView never zooms out below 1:1 and every magnification is undone in the
        # same pump, so only a wheel-up (positive delta) can have magnified the view.
        if self._is_qt and event in (cv2.EVENT_MOUSEWHEEL, cv2.EVENT_MOUSEHWHEEL) and wheel_delta(flags) > 0:
            self._qt_zoomed = True
