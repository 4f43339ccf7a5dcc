"""The images that tests/data/blazepose_reference.npz was made from, rebuilt from tests/data the
same way by the reference script (which needs mediapipe) and by the tests (which must not)."""
from __future__ import annotations

import cv2
import numpy as np

from support import DATA, video_frames

PHOTOS = ("group.jpg", "basketball1.jpg", "home.jpg", "messi5.jpg", "fruits.jpg")
VIDEO = "pedestrians.mp4"
VIDEO_FRAMES = (0, 14, 29)
# Square crops (source name, x, y, side) in which the detector sees people larger than in the
# whole frame (as the app's tiles do), including a fruit bowl it takes for a person (0.6).
CROPS = (("group.jpg", 0, 216, 144), ("group.jpg", 0, 192, 192), ("basketball1.jpg", 0, 72, 144),
         ("messi5.jpg", 192, 96, 192), ("group.jpg:rot90", 0, 0, 144), ("fruits.jpg", 0, 0, 144),
         ("pedestrians.mp4:0", 216, 72, 144), ("pedestrians.mp4:14", 144, 72, 144),
         ("pedestrians.mp4:14", 216, 72, 144), ("pedestrians.mp4:14", 96, 0, 192),
         ("pedestrians.mp4:29", 216, 72, 144), ("pedestrians.mp4:29", 144, 72, 144))


def reference_images() -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 image): photos, a photo on its side, video frames, then square crops of
    those (named "source[x,y,side]")."""
    out = [(name, cv2.imread(str(DATA / name))[:, :, ::-1]) for name in PHOTOS]
    out.append(("group.jpg:rot90", np.rot90(out[0][1])))
    for index, frame in enumerate(video_frames(DATA / VIDEO)):
        if index in VIDEO_FRAMES:
            out.append((f"{VIDEO}:{index}", frame[:, :, ::-1]))
    by_name = dict(out)
    for source, x, y, side in CROPS:
        out.append((f"{source}[{x},{y},{side}]", by_name[source][y:y + side, x:x + side]))
    return [(name, np.ascontiguousarray(rgb)) for name, rgb in out]


def crop_origin(name: str) -> tuple[str, int, int] | None:
    """For a crop's name, (source name, x, y); None for a whole image."""
    if "[" not in name:
        return None
    x, y, _ = (int(v) for v in name[name.index("[") + 1:-1].split(","))
    return name[:name.index("[")], x, y
