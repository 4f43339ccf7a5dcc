"""Make the benchmark clip: 640x480, one person, from a real photo (tests/data/basketball1.jpg),
the camera drifting a few pixels per frame so tracking has something to follow.

The photo has a second man cut off at its right edge; the clip's frame is the photo's left 400
columns (the player, whole) beside 240 columns of empty wall from the same photo, so exactly one
person is in view.

    python benchmarks/make_clip.py out/one_person.mp4 --frames 300
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "basketball1.jpg"


def make_clip(path: str, frames: int = 300, fps: float = 30.0, photo: Path = PHOTO) -> None:
    photo_image = cv2.imread(str(photo))
    image = np.ascontiguousarray(np.concatenate([photo_image[:, :400], photo_image[:, 195:435]], axis=1))
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {path}")
    for i in range(frames):
        drift = np.float32([[1, 0, 12 * np.sin(i / 25)], [0, 1, 6 * np.sin(i / 40)]])
        writer.write(cv2.warpAffine(image, drift, (width, height), borderMode=cv2.BORDER_REPLICATE))
    writer.release()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    make_clip(args.path, args.frames)
