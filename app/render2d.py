"""Drawing on the video frame: skeletons, person boxes and the HUD. Draws in place with cv2."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.drawing import Colour, draw_tag, put_text, size_scale, tag_size, text_size
from app.labels import LabelLayout, Rect
from app.skeleton import BONES, JOINT_INDEX, SIDE_COLOURS_BGR, bone_side, track_colour
from app.types import Person

FADED_COLOUR = (150, 150, 150)    # a skeleton drawn although no joint reached the threshold

# Stages shown first, in pipeline order; any other stage the loop reports follows.
STAGE_ORDER = ("read", "detect", "pose", "track", "render")


@dataclass
class Overlay2DStyle:
    min_confidence: float = 0.3      # joints below this are not drawn, nor their bones
    joint_colour: Colour = (245, 245, 245)
    hud_alpha: float = 0.55          # how much of the video stays visible behind the HUD box


# On a video smaller than 480 rows the overlay shrinks too (down to this), so it covers no more
# of the picture than on a bigger one; the 3D panel keeps its 480-row sizes (render3d).
OVERLAY_MIN_SCALE = 0.6


def _scale_for(img: np.ndarray) -> float:
    return size_scale(img.shape[0], img.shape[1], OVERLAY_MIN_SCALE)


def draw_people(img: np.ndarray, people: list[Person], style: Overlay2DStyle | None = None,
                avoid: list[Rect] | None = None) -> list[Rect]:
    """Bones by side colour, joints as dots, and each person's box and tag (id and scores) in
    their track colour. A person none of whose joints reaches the drawing threshold is drawn
    faded, thin and grey, and their tag says "low confidence": never silently nothing.

    Tags are laid out so that none covers `avoid` (the HUD), a face or another tag; returns
    the tags' rectangles (x, y, w, h)."""
    style = style or Overlay2DStyle()
    s = _scale_for(img)
    thickness = max(2, round(2 * s))
    radius = max(2, round(3 * s))
    faded: list[bool] = []
    for person in people:
        colour = track_colour(max(person.track_id, 0))
        _draw_box(img, person, colour, s)
        pts = np.asarray(person.joints_2d, dtype=np.float64)
        conf = np.asarray(person.confidence, dtype=np.float64)
        finite = np.isfinite(pts).all(axis=1)
        ok = finite.copy()
        if conf.shape == (len(pts),):
            ok &= conf >= style.min_confidence
        unsure = bool(finite.any() and not ok.any())
        faded.append(unsure)
        if unsure:
            ok = finite
        ipts = np.rint(np.nan_to_num(pts)).astype(np.int32)
        for bone in BONES:
            a, b = bone
            if ok[a] and ok[b]:
                cv2.line(img, tuple(ipts[a]), tuple(ipts[b]),
                         FADED_COLOUR if unsure else SIDE_COLOURS_BGR[bone_side(bone)],
                         max(1, thickness // 2) if unsure else thickness, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(img, tuple(ipts[j]), max(1, radius // 2) if unsure else radius,
                       FADED_COLOUR if unsure else style.joint_colour, -1, cv2.LINE_AA)
    faces = [r for r in (face_rect(p, style.min_confidence) for p in people) if r is not None]
    layout = LabelLayout(img.shape[1], img.shape[0], list(avoid or []) + faces)
    # the biggest (nearest) people choose first
    order = sorted(range(len(people)), key=lambda i: -people[i].box.area)
    tags: list[Rect] = [(0, 0, 0, 0)] * len(people)
    for i in order:
        tags[i] = _draw_tag(img, people[i], person_label(people[i], faded[i]), layout, s)
    return tags


def face_rect(person: Person, min_confidence: float) -> Rect | None:
    """The face's rectangle from the head joints (Head, Nose, Neck), or None when unsure."""
    head, nose, neck = (JOINT_INDEX[n] for n in ("Head", "Nose", "Neck"))
    pts = np.asarray(person.joints_2d, np.float64)
    conf = np.asarray(person.confidence, np.float64)
    if conf.shape != (len(pts),) or not np.isfinite(pts[[head, nose, neck]]).all() or \
            min(conf[head], conf[nose]) < min_confidence:
        return None
    centre = (pts[head] + pts[nose]) / 2.0
    r = max(8.0, 0.6 * float(np.linalg.norm(pts[head] - pts[neck])))
    return (int(centre[0] - r), int(centre[1] - r), int(2 * r), int(2 * r))


def person_label(person: Person, low_confidence: bool = False) -> str:
    """The tag on a person: track id, then the exports' "score" (the detector's) and
    "pose_score" (mean joint confidence), under the same names."""
    ident = f"id {person.track_id}" if person.track_id >= 0 else "id ?"
    warning = "  low confidence" if low_confidence else ""
    return f"{ident}  score {person.detection_score:.2f}  pose {person.pose_score:.2f}{warning}"


def _draw_box(img: np.ndarray, person: Person, colour: Colour, s: float) -> None:
    b = person.box
    x1, y1 = int(round(b.x)), int(round(b.y))
    x2, y2 = int(round(b.x + b.w)), int(round(b.y + b.h))
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, max(1, round(1.5 * s)), cv2.LINE_AA)


def _draw_tag(img: np.ndarray, person: Person, text: str, layout: LabelLayout, s: float) -> Rect:
    """The tag on top of the box, else inside its top, else under it, else slid to a free
    place; returns where it went."""
    colour = track_colour(max(person.track_id, 0))
    scale = 0.5 * s
    w, h = tag_size(text, scale)
    b = person.box
    x1, y1 = int(round(b.x)), int(round(b.y))
    x2, y2 = int(round(b.x + b.w)), int(round(b.y + b.h))
    x, y, w, h = layout.place((w, h), [(x1, y1 - h - 1), (x1, y1 + 2), (x1, y2 + 2), (x2 - w, y1 - h - 1)])
    draw_tag(img, text, (x, y, w, h), colour, scale)
    return (x, y, w, h)


def hud_lines(stages_ms: dict[str, float], model: str, device: str, fps: float | None,
              people_count: int) -> list[str]:
    """The HUD's text, separate from drawing so it can be checked without pixels."""
    fps_text = f"{fps:5.1f}" if fps is not None and np.isfinite(fps) else "  -  "
    lines = [f"{model}  on {device}", f"FPS {fps_text}   people {people_count}"]
    names = [n for n in STAGE_ORDER if n in stages_ms] + sorted(n for n in stages_ms if n not in STAGE_ORDER)
    if names:
        parts = [f"{n} {stages_ms[n]:.1f}" for n in names]
        # Three stages per line keeps the box narrow on a 640-pixel frame.
        for i in range(0, len(parts), 3):
            lines.append(("ms  " if i == 0 else "    ") + "   ".join(parts[i:i + 3]))
    return lines


def draw_text_box(img: np.ndarray, lines: list[str | tuple[str, str]], origin: tuple[int, int] = (8, 8),
                  alpha: float = 0.55, scale: float | None = None,
                  colour: Colour = (240, 240, 240), centred: bool = False) -> tuple[int, int, int, int]:
    """Lines of text on a darkened, semi-transparent box. A line given as (left, right) is two
    columns: every right part starts at the same x, past the widest left part (the font is
    proportional, so spaces cannot align them). Returns the box (x, y, w, h)."""
    s = _scale_for(img)
    scale = scale if scale is not None else 0.5 * s

    def size(text: str) -> tuple[tuple[int, int], int]:
        return text_size(text, scale)

    gap = round(16 * s)
    left_w = max((size(t[0])[0][0] for t in lines if isinstance(t, tuple)), default=0)
    widths, heights = [], []
    for t in lines:
        if isinstance(t, tuple):
            (rw, rh), rb = size(t[1])
            (_, lh), lb = size(t[0])
            widths.append(left_w + gap + rw)
            heights.append((max(lh, rh), max(lb, rb)))
        else:
            (w, h), b = size(t)
            widths.append(w)
            heights.append((h, b))
    line_h = max((h + b for h, b in heights), default=0) + round(6 * s)
    pad = round(8 * s)
    box_w = max(widths, default=0) + 2 * pad
    box_h = line_h * len(lines) + 2 * pad - round(4 * s)
    x, y = origin
    if centred:
        x = (img.shape[1] - box_w) // 2
        y = (img.shape[0] - box_h) // 2
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(img.shape[1], x + box_w), min(img.shape[0], y + box_h)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        # Darken in place: keeps a ghost of the video behind the text, and costs one pass.
        cv2.convertScaleAbs(roi, dst=roi, alpha=1.0 - alpha)
    for i, (text, (h, _)) in enumerate(zip(lines, heights)):
        ty = y + pad + i * line_h + h
        if isinstance(text, tuple):
            put_text(img, text[0], (x + pad, ty), colour, scale)
            put_text(img, text[1], (x + pad + left_w + gap, ty), colour, scale)
        else:
            put_text(img, text, (x + pad, ty), colour, scale)
    return (x0, y0, x1 - x0, y1 - y0)


def draw_hud(img: np.ndarray, stages_ms: dict[str, float], model: str, device: str,
             fps: float | None, people_count: int, alpha: float = 0.55) -> tuple[int, int, int, int]:
    """The HUD in the top-left corner; returns its box (x, y, w, h)."""
    return draw_text_box(img, hud_lines(stages_ms, model, device, fps, people_count), (8, 8), alpha)
