import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the project, for `app` and `models`

from support import DATA, group_boxes as load_group_boxes  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """The app's cache (--precision auto's remembered measurements, app/precision_memory.py) in a
    folder of this session's own, inherited by the commands tests run: tests never read what an
    earlier run left in the user's cache, nor write there."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def group_photo_path():
    return DATA / "group.jpg"


@pytest.fixture(scope="session")
def group_boxes():
    return load_group_boxes()


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
