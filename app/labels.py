"""Where text tags go: the first of a few candidate places that stays inside the picture and
covers nothing already claimed (the HUD, the panel's title, faces, other tags)."""
from __future__ import annotations

Rect = tuple[int, int, int, int]   # x, y, w, h in pixels


def overlap(a: Rect, b: Rect) -> int:
    """Area shared by two rectangles (0 when they only touch)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


class LabelLayout:
    """Claims rectangles in one picture; `place` picks a free spot for the next tag."""

    def __init__(self, width: int, height: int, taken: list[Rect] | None = None):
        self.width, self.height = width, height
        self.taken: list[Rect] = [r for r in (taken or []) if r[2] > 0 and r[3] > 0]

    def claim(self, rect: Rect) -> None:
        if rect[2] > 0 and rect[3] > 0:
            self.taken.append(rect)

    def _clamped(self, x: int, y: int, w: int, h: int) -> Rect:
        return (min(max(0, x), max(0, self.width - w)), min(max(0, y), max(0, self.height - h)), w, h)

    def place(self, size: tuple[int, int], candidates: list[tuple[int, int]], step: int | None = None) -> Rect:
        """The tag's rectangle (w, h = `size`): the first candidate top-left corner (moved inside
        the picture) that overlaps nothing taken; failing that, each candidate slid down then
        up in `step`s; failing that, the place with the least overlap. The result is claimed."""
        w, h = size
        step = step or h + 2
        tried = [self._clamped(x, y, w, h) for x, y in candidates]
        for x, y in candidates:
            for k in range(1, max(2, self.height // max(1, step))):
                tried += [self._clamped(x, y + k * step, w, h), self._clamped(x, y - k * step, w, h)]
        best = min(tried, key=lambda r: (sum(overlap(r, t) for t in self.taken) > 0,
                                         sum(overlap(r, t) for t in self.taken)))
        for rect in tried:     # first free one, in order of preference
            if not any(overlap(rect, t) for t in self.taken):
                best = rect
                break
        self.claim(best)
        return best
