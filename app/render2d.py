"""Drawing on the video frame: skeletons, person boxes and the HUD. Draws in place with cv2."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.skeleton import BONES, SIDE_COLOURS_BGR, bone_side, track_colour
from app.types import Person

Colour = tuple[int, int, int]
FONT = cv2.FONT_HERSHEY_SIMPLEX

# Stages shown first, in pipeline order; any other stage the loop reports follows.
STAGE_ORDER = ("read", "detect", "pose", "track", "render")


@dataclass
class Overlay2DStyle:
    min_confidence: float = 0.3      # joints below this are not drawn, nor their bones
    joint_colour: Colour = (245, 245, 245)
    hud_alpha: float = 0.55          # how much of the video stays visible behind the HUD box


def _scale_for(img: np.ndarray) -> float:
    """1.0 at 480 rows; lines and text grow with the frame so they stay legible on HD video."""
    return max(0.6, min(img.shape[0], img.shape[1] * 0.75) / 480.0)


def text_stroke(font_scale: float) -> int:
    """Stroke width for Hershey text: grows with the font so big text does not look hairline."""
    return max(1, round(font_scale * 1.4))


def draw_people(img: np.ndarray, people: list[Person], style: Overlay2DStyle | None = None) -> None:
    """Bones by side colour, joints as dots, and each person's box, id and score in their
    track colour."""
    style = style or Overlay2DStyle()
    s = _scale_for(img)
    thickness = max(2, round(2 * s))
    radius = max(2, round(3 * s))
    for person in people:
        colour = track_colour(max(person.track_id, 0))
        _draw_box(img, person, colour, s)
        pts = np.asarray(person.joints_2d, dtype=np.float64)
        conf = np.asarray(person.confidence, dtype=np.float64)
        ok = np.isfinite(pts).all(axis=1)
        if conf.shape == (len(pts),):
            ok &= conf >= style.min_confidence
        ipts = np.rint(np.nan_to_num(pts)).astype(np.int32)
        for bone in BONES:
            a, b = bone
            if ok[a] and ok[b]:
                cv2.line(img, tuple(ipts[a]), tuple(ipts[b]), SIDE_COLOURS_BGR[bone_side(bone)],
                         thickness, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(img, tuple(ipts[j]), radius, style.joint_colour, -1, cv2.LINE_AA)


def person_label(person: Person) -> str:
    """The tag on a person: track id, then the exports' "score" (the detector's) and
    "pose_score" (mean joint confidence), under the same names."""
    ident = f"id {person.track_id}" if person.track_id >= 0 else "id ?"
    return f"{ident}  score {person.detection_score:.2f}  pose {person.pose_score:.2f}"


def _draw_box(img: np.ndarray, person: Person, colour: Colour, s: float) -> None:
    b = person.box
    x1, y1 = int(round(b.x)), int(round(b.y))
    x2, y2 = int(round(b.x + b.w)), int(round(b.y + b.h))
    cv2.rectangle(img, (x1, y1), (x2, y2), colour, max(1, round(1.5 * s)), cv2.LINE_AA)
    text = person_label(person)
    scale = 0.5 * s
    stroke = text_stroke(scale)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, stroke)
    # The tag sits on top of the box, or inside it when the box touches the top edge.
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
    cv2.rectangle(img, (x1, ty - th - 3), (x1 + tw + 6, ty + base), colour, -1)
    cv2.putText(img, text, (x1 + 3, ty), FONT, scale, (20, 20, 20), stroke, cv2.LINE_AA)


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


def draw_text_box(img: np.ndarray, lines: list[str], origin: tuple[int, int] = (8, 8),
                  alpha: float = 0.55, scale: float | None = None,
                  colour: Colour = (240, 240, 240), centred: bool = False) -> tuple[int, int, int, int]:
    """Lines of text on a darkened, semi-transparent box. Returns the box (x, y, w, h)."""
    s = _scale_for(img)
    scale = scale if scale is not None else 0.5 * s
    thickness = text_stroke(scale)
    sizes = [cv2.getTextSize(t, FONT, scale, thickness) for t in lines]
    line_h = max((h + b for (_, h), b in sizes), default=0) + round(6 * s)
    pad = round(8 * s)
    box_w = max((w for (w, _), _ in sizes), default=0) + 2 * pad
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
    for i, (text, ((_, h), _)) in enumerate(zip(lines, sizes)):
        ty = y + pad + i * line_h + h
        cv2.putText(img, text, (x + pad, ty), FONT, scale, colour, thickness, cv2.LINE_AA)
    return (x0, y0, x1 - x0, y1 - y0)


def draw_hud(img: np.ndarray, stages_ms: dict[str, float], model: str, device: str,
             fps: float | None, people_count: int, alpha: float = 0.55) -> None:
    draw_text_box(img, hud_lines(stages_ms, model, device, fps, people_count), (8, 8), alpha)
