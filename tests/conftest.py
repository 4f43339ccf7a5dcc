import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"
# The conformance data for XS and L is large and lives beside the project, not in it.
SHARED = Path(os.environ.get("CONVNEXTPOSE_SHARED", ROOT.parent / "shared"))
SHARED_CONVNEXTPOSE = SHARED / "convnextpose"


def decoded_frames(path) -> int:
    """How many frames of a written video really decode (what a player would show)."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture(scope="session")
def group_photo_path():
    return DATA / "group.jpg"


@pytest.fixture(scope="session")
def group_boxes():
    with open(DATA / "boxes.json") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    return DATA / "ConvNeXtPose_TINY.tar"


# Models take a while to load: one of each serves every test that needs it.
@pytest.fixture(scope="session")
def blazepose():
    from app.blazepose import BlazePoseBackend
    backend = BlazePoseBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def detector():
    from app.detector import PersonDetector
    person_detector = PersonDetector()
    yield person_detector
    person_detector.close()
