"""When and where to look for people, frame by frame: `DetectionPlan.request` is asked once per
frame and answers with a DetectionRequest (the whole frame or not, which sweep tiles, whom not to
report again). The detector carries it out (`PersonDetector.search`); the tracker matches what it
finds (`Tracker.boxes`). Where the pose backend allows it (an accelerator, or the fallback's
landmark network: PoseBackend.detects_beside), the frame loop has `prepare` make the next frame's
thumbnail and change maps on a helper thread meanwhile, and hands them to that frame's request:
the same answer, off the critical path.

When the whole frame is searched (one detector call, plus verification):
- while nobody is followed, when a followed person was lost, and every `redetect_every` frames
  (re-anchors the crops of people followed on uncertain poses on fresh boxes; people followed on
  confident poses, `settled`, keep the crops their joints give). The periodic pass is skipped
  while everyone followed is settled and the picture outside them has not changed since the last
  pass (the same test as the tiles'): it could only find those same people again.

Where the sweep looks (the detector's overlapping tiles at three scales, for the people too small
for the whole-frame pass; docs/detection.md):
- a video's first frame and every still image: every tile at once (nothing follows a still);
- later frames: every `visit_every` frames, the next slices of tiles, so every tile is visited
  once every `sweep_interval` frames and no frame pays a whole sweep (0.74 s on 768x576 on the
  Xeon, docs/detection.md).
  Tiles are ordered along a Z curve so that the overlapping views of one place, whose agreement
  the detector asks for, mostly fall in the same slice;
- a visited tile is skipped when followed people cover it (`covered_share` of its area): a new
  person there would be hidden behind them;
- and when its picture has not changed since it was last searched (after following the camera's
  drift, measured by phase correlation on small grey thumbnails): the detector, given the same
  pixels, would give the same answer. A static camera (a webcam, a street camera) thus searches
  only where something moved. Picture the drift brings in at the frame's edges counts once the
  strip is a tenth of the tile's side, wide enough to hold the narrowest body the tile finds.
- where a followed person was lost and the whole-frame pass of that frame did not find them
  again, they may still stand there unchanged, too small for the whole frame: the tiles that
  could find them (at least 0.7x as large as they were tall) are searched at the next visit,
  whatever their slice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from app.types import Box

View = tuple[int, int, int, int]   # x, y, w, h in image pixels (the detector's tiles)
_BLOCK = np.ones((2, 2), np.uint8)


@dataclass(frozen=True)
class PlanConfig:
    redetect_every: int = 15      # frames between whole-frame passes while people are followed
    # Frames over which one sweep's tiles are spread. Measured on the annotated street clip
    # (docs/detection.md): a sweep every 8 frames found 89 % / 74 % of the people > 100 px /
    # 40-100 px tall, every 15 frames 79 % / 67 %.
    sweep_interval: int = 10
    # Frames between visits of the sweep: each visit takes as many frames' slices, so the
    # thumbnail and the change maps that judge the tiles are made only on visits (at 2, half as
    # often), while every tile is still visited once every `sweep_interval` frames.
    visit_every: int = 2
    stills: bool = False          # unrelated pictures: every frame is searched whole
    covered_share: float = 0.9    # a tile this much inside followed people's crops is skipped
    min_inside: float = 0.7       # the detector's DetectorConfig.min_inside: a tile less than this
                                  # x a body's height cannot accept that body
    skip_unchanged: bool = True
    thumb_short_side: int = 120   # px: the grey thumbnails that tell whether a tile changed
    # A tile changed when, in its thumbnail, at least `min_changed` pixels moved by more than
    # `change_level` grey levels (0-255) with their 2x2 neighbourhood (an isolated pixel is the
    # resampling of an edge under drift: measured up to 14 levels on home.jpg; a 110 px man
    # pasted in moved 45 such pixels of a 128 px tile's 40x40 thumbnail).
    change_level: float = 12.0
    min_changed: int = 2
    # Picture the camera's drift brought in at the frame's edges since a tile's last search is no
    # reason to search it again while the strip is narrower than this share of the tile's side:
    # the smallest body a tile finds is ~0.4 of its side tall (docs/detection.md), ~0.1 wide.
    min_new_strip: float = 0.1

    def __post_init__(self):
        if min(self.redetect_every, self.sweep_interval, self.visit_every) < 1:
            raise ValueError("redetect_every, sweep_interval and visit_every must be >= 1")


@dataclass(frozen=True)
class DetectionRequest:
    """What to search in one frame: the whole frame or not, which tiles, the followed people's
    boxes (tile finds on them are not new people), and those of them whose last pose was
    confident (`settled`: a whole-frame find on them is dropped unverified, as their own joints
    already place their next crop; only people followed on uncertain poses are re-anchored)."""
    whole_frame: bool = False
    tiles: tuple[View, ...] = ()
    known: tuple[Box, ...] = ()
    settled: tuple[Box, ...] = ()

    def __bool__(self) -> bool:
        return self.whole_frame or bool(self.tiles)


@dataclass
class PlanStats:
    """Counts over a run, for the benchmarks."""
    frames: int = 0
    whole_frame: int = 0          # frames with a whole-frame pass
    whole_frame_unchanged: int = 0   # periodic passes skipped: nothing new outside followed people
    tiles_visited: int = 0
    tiles_searched: int = 0
    skipped_covered: int = 0
    skipped_unchanged: int = 0


@dataclass
class _Changes:
    """Where a frame's thumbnail changed since a reference frame's, after the camera's drift: one
    map for the whole picture and its integral image, so that each tile is answered by a few
    rectangle sums."""
    moved: np.ndarray             # uint8, 1 where the picture changed
    sums: np.ndarray              # its integral image (cv2.integral)
    # the picture the drift brought in: columns [0, left) and [right, width), rows likewise
    left: int
    right: int
    top: int
    bottom: int

    def strips_count(self, x0: int, x1: int, y0: int, y1: int, min_new_strip: float) -> tuple[bool, bool]:
        """Whether changes in the new columns / rows count in this region: only where the strip
        is at least `min_new_strip` of the region's side (a narrower one cannot hold a body the
        region's detector call finds)."""
        limit = min_new_strip * min(x1 - x0, y1 - y0)
        new_cols = sum(b - a for a, b in _within(x0, x1, self.left, self.right))
        new_rows = sum(b - a for a, b in _within(y0, y1, self.top, self.bottom))
        return new_cols == 0 or new_cols >= limit, new_rows == 0 or new_rows >= limit

    def count(self, x0: int, x1: int, y0: int, y1: int, min_new_strip: float) -> int:
        """Changed pixels in the region [x0, x1) x [y0, y1) that count (strips_count)."""
        cols_count, rows_count = self.strips_count(x0, x1, y0, y1, min_new_strip)
        cols, rows = _within(x0, x1, self.left, self.right), _within(y0, y1, self.top, self.bottom)
        total = self._sum(x0, x1, y0, y1)
        if not cols_count:
            total -= sum(self._sum(a, b, y0, y1) for a, b in cols)
        if not rows_count:
            total -= sum(self._sum(x0, x1, a, b) for a, b in rows)
        if not cols_count and not rows_count:   # the corners were taken away twice
            total += sum(self._sum(a, b, c, d) for a, b in cols for c, d in rows)
        return total

    def counted_map(self, min_new_strip: float) -> np.ndarray:
        """The changed pixels that count in the whole picture, as a boolean map."""
        height, width = self.moved.shape
        cols_count, rows_count = self.strips_count(0, width, 0, height, min_new_strip)
        counted = self.moved.astype(bool)
        if not cols_count:
            counted[:, :self.left] = counted[:, self.right:] = False
        if not rows_count:
            counted[:self.top] = counted[self.bottom:] = False
        return counted

    def _sum(self, x0: int, x1: int, y0: int, y1: int) -> int:
        s = self.sums
        return int(s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0])


def _clip(value: int, size: int) -> int:
    return min(max(value, 0), size)


def _within(start: int, stop: int, low: int, high: int) -> list[tuple[int, int]]:
    """The parts of [start, stop) in [0, low) and in [high, ...)."""
    return [(a, b) for a, b in ((start, min(stop, low)), (max(start, high), stop)) if b > a]


@dataclass
class _Thumb:
    image: np.ndarray             # float32 grey, blurred
    # what changed since each reference frame (by its index), computed when first asked
    changes: dict[int, _Changes]
    spectrum: np.ndarray | None = None   # of the windowed image, made once for every pairing


@dataclass
class _TileState:
    view: View
    searched_at: int | None = None   # frame index of its last search (its reference thumbnail)
    # followed people lost in it since that search (track id -> frame they were lost): searched
    # again, at the next visit whatever its slice, while any of them is still lost after the
    # whole-frame pass of the frame they were lost in
    lost_here: dict[int, int] = field(default_factory=dict)


class DetectionPlan:
    """One per video stream: what to detect in each frame, given the tracks being followed."""

    def __init__(self, tiles: Callable[[int, int], Sequence[View]], config: PlanConfig | None = None):
        """tiles: the sweep's tiles for a frame size (PersonDetector.tiles)."""
        self.config = config or PlanConfig()
        self.stats = PlanStats()
        self._tiles_for = tiles
        self._size: tuple[int, int] | None = None
        self._tiles: list[_TileState] = []
        self._step = 0                           # the sweep's next slice
        self._clock = 0                          # frames since the first, for the visits
        self._last_whole: int | None = None      # frame of the last whole-frame pass
        self._whole_followed: tuple[Box, ...] = ()   # the crops followed then
        self._whole_asked: int | None = None     # frame the periodic pass was last due (done or not)
        self._followed: dict[int, Box] = {}      # last frame's live crops, by track id
        self._thumbs: dict[int, _Thumb] = {}     # frame index -> thumbnail, while referenced
        self._window: np.ndarray | None = None     # for phase correlation, thumbnail-sized
        self._scale = 1.0
        self._thumb_size = (8, 8)

    # ---- the one call per frame ---------------------------------------------------------------

    def request(self, frame_index: int, image: np.ndarray, tracks: Sequence,
                prepared: _Thumb | None = None) -> DetectionRequest:
        """What to detect in this frame. `tracks`: the tracker's tracks (`crop` None while lost,
        `track_id`, `uncertain`: low-confidence poses in a row), as they stand before this frame.
        `prepared`: what prepare() made of this frame since the last request, if anything."""
        height, width = image.shape[:2]
        cfg = self.config
        self.stats.frames += 1
        live = {t.track_id: t.crop for t in tracks if t.crop is not None}
        lost = {tid: box for tid, box in self._followed.items() if tid not in live}
        self._followed = dict(live)
        known = tuple(live.values())
        settled = tuple(t.crop for t in tracks if t.crop is not None and t.uncertain == 0)
        first = self._size != (width, height)
        if first:
            self._start(width, height)
        judge = cfg.skip_unchanged and not cfg.stills   # whether tiles are judged by change
        if cfg.stills or first:
            thumb = self._thumbnail(image, frame_index) if judge else None
            # Nothing is followed yet: every tile, now.
            self._whole_pass(frame_index, known)
            for tile in self._tiles:
                self._searched(tile, frame_index, thumb)
            self.stats.tiles_visited += len(self._tiles)
            self.stats.tiles_searched += len(self._tiles)
            self._prune()
            return DetectionRequest(True, tuple(t.view for t in self._tiles), known, settled)
        for track_id, box in lost.items():   # they may still be there, unchanged
            for tile in self._tiles:
                # only tiles that could take them: in a smaller one their body is cut by its edges
                if Box(*tile.view).intersection(box) > 0 and tile.view[3] >= cfg.min_inside * box.h:
                    tile.lost_here[track_id] = frame_index
        whole = self._whole_frame_due(frame_index, tracks)
        self._clock += 1
        visiting = self._clock % cfg.visit_every == 0
        # the thumbnail judges the tiles visited, the periodic pass, and is the reference of a pass
        thumb = self._thumbnail(image, frame_index, prepared) if judge and (visiting or whole) else None
        if whole and self._periodic(tracks):
            self._whole_asked = frame_index
            whole = len(settled) < len(known) or self._changed_outside(known, thumb)
            if not whole:
                self.stats.whole_frame_unchanged += 1
        if whole:
            self._whole_pass(frame_index, known)
        chosen = []
        sliced = self._next_slices() if visiting else []
        in_slice = {id(tile) for tile in sliced}
        lost_tiles = [t for t in self._tiles if t.lost_here and id(t) not in in_slice] if visiting else []
        for tile in sliced + lost_tiles:
            for track_id in [i for i in tile.lost_here if i in live]:   # found again meanwhile
                del tile.lost_here[track_id]
            still_lost = any(at < frame_index for at in tile.lost_here.values())
            if id(tile) not in in_slice and not still_lost:
                continue   # lost in this very frame: its whole-frame pass may find them again
            self.stats.tiles_visited += 1
            if known and _covered(tile.view, known) >= cfg.covered_share:
                self.stats.skipped_covered += 1
                continue
            if thumb is not None and not still_lost and not self._changed(tile, thumb):
                self.stats.skipped_unchanged += 1
                continue
            self._searched(tile, frame_index, thumb)
            chosen.append(tile.view)
        self.stats.tiles_searched += len(chosen)
        self._prune()
        return DetectionRequest(whole, tuple(chosen), known, settled)

    def prepare(self, frame_index: int, image: np.ndarray) -> _Thumb | None:
        """The next frame's thumbnail and what changed in it since the frames its visit will
        compare it with, made ahead of its request(): the frame loop calls this on a helper thread
        while the current frame's poses are computed (PoseBackend.detects_beside), and hands the
        result to request(). None when that request will not judge tiles. Reads the plan and changes
        nothing in it, so it may run between two request() calls on another thread."""
        cfg = self.config
        if self._size is None or image.shape[1::-1] != self._size or cfg.stills or not cfg.skip_unchanged:
            return None
        if (self._clock + 1) % cfg.visit_every != 0:   # no visit: a pass, if any, makes its own
            return None
        thumb = self._make_thumbnail(image)
        for reference in {t.searched_at for t in self._slices(self._step)} - {None}:
            if reference in self._thumbs:
                self._changes(reference, thumb)
        return thumb

    def whole_frame_certain(self, frame_index: int, tracks: Sequence) -> bool:
        """Whether this frame will get the whole-frame pass whatever its picture shows (no state
        changes: the frame loop asks it ahead of time to start that pass early). A periodic pass
        with everyone followed on sure poses is not certain: request() skips it where nothing
        changed outside them, and runs it in line where something did."""
        if not self._whole_frame_due(frame_index, tracks):
            return False
        return not self._periodic(tracks) or any(t.uncertain for t in tracks)

    def _whole_frame_due(self, frame_index: int, tracks: Sequence) -> bool:
        """Whether this frame is due a whole-frame pass: always while nothing or somebody lost is
        followed, else every `redetect_every` frames (the periodic pass, which request() may skip)."""
        if self.config.stills or self._last_whole is None:
            return True
        if not self._periodic(tracks):
            return True
        return frame_index - self._whole_asked >= self.config.redetect_every

    # ---- internals ------------------------------------------------------------------------------

    @staticmethod
    def _periodic(tracks: Sequence) -> bool:
        """Whether a whole-frame pass would only be the periodic one (people followed, none lost)."""
        return bool(tracks) and all(t.crop is not None for t in tracks)

    def _whole_pass(self, frame_index: int, known: tuple[Box, ...]) -> None:
        self._last_whole = self._whole_asked = frame_index
        self._whole_followed = known
        self.stats.whole_frame += 1

    def _changed_outside(self, known: tuple[Box, ...], now: _Thumb | None) -> bool:
        """Whether the picture outside the followed people (where they are, and where they were
        at the last whole-frame pass) changed since that pass, by the tiles' rule."""
        if now is None or self._last_whole not in self._thumbs:
            return True
        height, width = now.image.shape
        hidden = np.zeros((height, width), bool)
        for box in known + self._whole_followed:
            x0, y0 = (max(0, int(np.floor(v * self._scale))) for v in (box.x, box.y))
            x1, y1 = (int(np.ceil(v * self._scale)) for v in (box.x + box.w, box.y + box.h))
            hidden[y0:y1, x0:x1] = True
        counted = self._changes(self._last_whole, now).counted_map(self.config.min_new_strip)
        return int(np.count_nonzero(counted & ~hidden)) >= self.config.min_changed

    def _start(self, width: int, height: int) -> None:
        self._size = (width, height)
        views = list(self._tiles_for(width, height))
        cell = max(1.0, min(width, height) / 8.0)
        views.sort(key=lambda v: (_z_order(int((v[0] + v[2] / 2) / cell), int((v[1] + v[3] / 2) / cell)), -v[2]))
        self._tiles = [_TileState(v) for v in views]
        self._step = 0
        self._clock = 0
        self._thumbs.clear()
        self._scale = self.config.thumb_short_side / max(1, min(width, height))
        self._thumb_size = (max(8, int(round(width * self._scale))), max(8, int(round(height * self._scale))))
        self._window = cv2.createHanningWindow(self._thumb_size, cv2.CV_32F)

    def _next_slices(self) -> list[_TileState]:
        """The next visit's slices, and the sweep moved on past them."""
        tiles = self._slices(self._step)
        self._step = (self._step + self.config.visit_every) % self.config.sweep_interval
        return tiles

    def _slices(self, first: int) -> list[_TileState]:
        """`visit_every` of the sweep's `sweep_interval` slices from slice `first` on (each as
        even as the count allows)."""
        count, parts = len(self._tiles), self.config.sweep_interval
        steps = [(first + k) % parts for k in range(self.config.visit_every)]
        return [t for step in steps for t in self._tiles[step * count // parts:(step + 1) * count // parts]]

    def _thumbnail(self, image: np.ndarray, frame_index: int, prepared: _Thumb | None = None) -> _Thumb:
        """This frame's thumbnail (the one prepare() made, when given), kept as a reference."""
        thumb = prepared if prepared is not None else self._make_thumbnail(image)
        self._thumbs[frame_index] = thumb
        return thumb

    def _make_thumbnail(self, image: np.ndarray) -> _Thumb:
        # grey first: a third of the pixels to average
        grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), self._thumb_size, interpolation=cv2.INTER_AREA)
        return _Thumb(cv2.GaussianBlur(grey.astype(np.float32), (3, 3), 0), {})

    def _changes(self, then_index: int, now: _Thumb) -> _Changes:
        """What changed since frame `then_index`. The camera's drift is measured by phase
        correlation of the two thumbnails directly, not summed frame to frame, whose small
        errors add up (on the static street clip the moving people alone summed to 8 px in 200
        frames); the same scene content then lay where the drift says."""
        if then_index in now.changes:
            return now.changes[then_index]
        then_thumb = self._thumbs[then_index]
        then = then_thumb.image
        dx, dy = _drift(self._spectrum(then_thumb), self._spectrum(now), then.shape)
        height, width = then.shape
        before = cv2.warpAffine(then, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        moved = cv2.erode((np.abs(now.image - before) > self.config.change_level).astype(np.uint8), _BLOCK)
        # a pixel whose source then lay within a pixel of the edge: picture the drift brought in
        # (columns x with x - dx < 1, or x - dx > width - 2; rows likewise)
        left, right = _clip(math.ceil(1 + dx), width), _clip(math.floor(width - 2 + dx) + 1, width)
        top, bottom = _clip(math.ceil(1 + dy), height), _clip(math.floor(height - 2 + dy) + 1, height)
        changes = _Changes(moved, cv2.integral(moved), left, max(left, right), top, max(top, bottom))
        now.changes[then_index] = changes
        return changes

    def _spectrum(self, thumb: _Thumb) -> np.ndarray:
        if thumb.spectrum is None:
            thumb.spectrum = np.fft.rfft2(thumb.image * self._window)
        return thumb.spectrum

    def _changed(self, tile: _TileState, now: _Thumb) -> bool:
        """Whether the tile's picture changed since its last search. Picture the drift brought in
        at the frame's edges counts only where the strip is at least `min_new_strip` of the
        tile's side: a narrower one cannot hold a body the tile finds."""
        if tile.searched_at is None or tile.searched_at not in self._thumbs:
            return True
        x, y, w, h = (v * self._scale for v in tile.view)
        height, width = now.image.shape
        x0, y0 = min(max(0, int(round(x))), width), min(max(0, int(round(y))), height)
        x1, y1 = min(width, x0 + max(2, int(round(w)))), min(height, y0 + max(2, int(round(h))))
        if x1 <= x0 or y1 <= y0:
            return True
        changes = self._changes(tile.searched_at, now)
        return changes.count(x0, x1, y0, y1, self.config.min_new_strip) >= self.config.min_changed

    def _searched(self, tile: _TileState, frame_index: int, thumb: _Thumb | None) -> None:
        tile.searched_at = frame_index if thumb is not None else None
        tile.lost_here.clear()

    def _prune(self) -> None:
        referenced = {t.searched_at for t in self._tiles} | {self._last_whole}
        for index in [i for i in self._thumbs if i not in referenced]:
            del self._thumbs[index]


def _drift(then: np.ndarray, now: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """How far the picture moved from one thumbnail to the other (x, y, thumbnail pixels), by
    phase correlation of their windowed spectra (np.fft.rfft2): the peak of the normalized cross
    power spectrum's inverse, refined to its 5x5 weighted centroid, as cv2.phaseCorrelate finds
    it (in float64 where OpenCV works in float32: the same drifts within 0.01 px on
    pedestrians.mp4, 0.2 px on the drifting benchmark clip). A thumbnail's spectrum is made once
    and serves every reference frame it is compared with; phaseCorrelate would transform both
    again each time."""
    cross = then * np.conj(now)
    cross /= np.maximum(np.abs(cross), 1e-300)
    surface = np.fft.irfft2(cross, s=shape)
    height, width = shape
    peak_y, peak_x = np.unravel_index(int(np.argmax(surface)), shape)
    ys, xs = np.arange(peak_y - 2, peak_y + 3), np.arange(peak_x - 2, peak_x + 3)
    window = surface[np.ix_(ys % height, xs % width)]   # the surface wraps around
    total = float(window.sum())
    if total <= 0.0:   # no peak to speak of (featureless thumbnails): the peak cell itself
        x, y = float(peak_x), float(peak_y)
    else:
        x, y = float(window.sum(axis=0) @ xs) / total, float(window.sum(axis=1) @ ys) / total
    # the peak lies at minus the drift, modulo the size
    return (-x + width / 2) % width - width / 2, (-y + height / 2) % height - height / 2


def _z_order(x: int, y: int) -> int:
    """Interleaved bits of (x, y): nearby cells get nearby numbers."""
    code = 0
    for bit in range(16):
        code |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return code


def _covered(view: View, boxes: Sequence[Box], cell: int = 4) -> float:
    """The share of the tile inside the union of the boxes (cells of `cell` px wholly inside)."""
    x, y, w, h = view
    rows, cols = max(1, h // cell), max(1, w // cell)
    mask = np.zeros((rows, cols), bool)
    for box in boxes:   # scalar arithmetic: numpy's is slow on single numbers, and this runs per tile
        x0 = _clip(math.ceil((box.x - x) / cell), cols)
        x1 = _clip(math.floor((box.x + box.w - x) / cell), cols)
        y0 = _clip(math.ceil((box.y - y) / cell), rows)
        y1 = _clip(math.floor((box.y + box.h - y) / cell), rows)
        mask[y0:y1, x0:x1] = True
    return np.count_nonzero(mask) / mask.size
