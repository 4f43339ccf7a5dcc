"""What the 2D overlay (render2d) and the 3D panel (render3d) draw alike: one font, one rule for
how line and text sizes grow with the picture, text and name tags. Knows nothing of people."""
from __future__ import annotations

import cv2
import numpy as np

Colour = tuple[int, int, int]

FONT = cv2.FONT_HERSHEY_SIMPLEX
TAG_TEXT_COLOUR = (20, 20, 20)     # dark text on a tag of the person's colour
REFERENCE_ROWS = 480.0             # sizes are given for a picture this high (or 640 wide)


def size_scale(height: int, width: int, minimum: float) -> float:
    """How much bigger than at REFERENCE_ROWS lines and text are drawn in a picture of this size:
    they grow with the picture so they stay legible on HD video instead of turning into
    hairlines; never below `minimum`."""
    return max(minimum, min(height, width * 0.75) / REFERENCE_ROWS)


def text_stroke(font_scale: float) -> int:
    """Stroke width for Hershey text: grows with the font so big text does not look hairline."""
    return max(1, round(font_scale * 1.4))


def text_size(text: str, font_scale: float) -> tuple[tuple[int, int], int]:
    """((width, height), baseline) of `text` as put_text draws it."""
    return cv2.getTextSize(text, FONT, font_scale, text_stroke(font_scale))


def put_text(img: np.ndarray, text: str, org: tuple[int, int], colour: Colour, font_scale: float) -> None:
    cv2.putText(img, text, org, FONT, font_scale, colour, text_stroke(font_scale), cv2.LINE_AA)


def tag_size(text: str, font_scale: float) -> tuple[int, int]:
    """(w, h) of the tag draw_tag fills for `text`: the text with a small margin."""
    (tw, th), base = text_size(text, font_scale)
    return tw + 6, th + base + 4


def draw_tag(img: np.ndarray, text: str, rect: tuple[int, int, int, int], colour: Colour, font_scale: float) -> None:
    """Dark text on a tag of `colour` filling `rect` (x, y, w, h)."""
    (_, th), _ = text_size(text, font_scale)
    x, y, w, h = rect
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, -1)
    put_text(img, text, (x + 3, y + 2 + th), TAG_TEXT_COLOUR, font_scale)
