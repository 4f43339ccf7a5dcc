"""Composition: ONE image per frame, the annotated video on the left and the 3D panel on the
right at the same height. The window and the --output file both show exactly this image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.pixels import as_bgr_uint8
from app.render2d import Overlay2DStyle, draw_hud, draw_people
from app.render3d import Panel3D
from app.types import FrameResult


@dataclass
class SceneInfo:
    """What the HUD says besides the frame's own timings."""
    model: str = "?"
    device: str = "cpu"
    fps: float | None = None


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def contains(self, px: int, py: int) -> bool:
        return self.x <= px < self.x + self.w and self.y <= py < self.y + self.h


class SceneRenderer:
    """Composes a FrameResult into one BGR image.

    The returned array is a buffer reused by the next call: copy it to keep it.
    `panel_width_ratio` sets the 3D panel's width relative to the frame's width.
    """

    def __init__(self, panel_width_ratio: float = 1.0, overlay_style: Overlay2DStyle | None = None,
                 show_hud: bool = True, panel: Panel3D | None = None):
        self.panel_width_ratio = panel_width_ratio
        self.overlay_style = overlay_style or Overlay2DStyle()
        self.show_hud = show_hud
        self.panel = panel or Panel3D()
        self._canvas = np.empty((0, 0, 3), np.uint8)
        self.last_tags: list[tuple[int, int, int, int]] = []   # where the last frame's tags went
        self.last_hud: tuple[int, int, int, int] | None = None

    def layout(self, frame_shape: tuple[int, ...]) -> tuple[Rect, Rect]:
        """(video rect, panel rect) inside the composed image for a frame of this shape: a pure
        function of the shape, so the window finds the panel under the mouse without drawing."""
        h, w = frame_shape[:2]
        panel_w = max(64, int(round(w * self.panel_width_ratio)))
        return Rect(0, 0, w, h), Rect(w, 0, panel_w, h)

    def render(self, result: FrameResult, info: SceneInfo | None = None) -> np.ndarray:
        info = info or SceneInfo()
        frame = as_bgr_uint8(result.frame.image)
        video, panel = self.layout(frame.shape)
        shape = (video.h, video.w + panel.w, 3)
        if self._canvas.shape != shape:
            self._canvas = np.empty(shape, np.uint8)

        # Both halves are drawn straight into the canvas: no intermediate copies.
        left = self._canvas[:, :video.w]
        np.copyto(left, frame)
        hud = []
        if self.show_hud:
            hud.append(draw_hud(left, result.stages_ms, info.model, info.device, info.fps,
                                len(result.people), alpha=self.overlay_style.hud_alpha))
        # people over the HUD: a person in the top-left corner is never hidden behind it; their
        # tags go where they cover neither the HUD nor faces nor each other
        self.last_tags = draw_people(left, result.people, self.overlay_style, avoid=hud)
        self.last_hud = hud[0] if hud else None
        self.panel.render(result.people, out=self._canvas[:, panel.x:panel.x + panel.w], floor=result.floor)
        return self._canvas
