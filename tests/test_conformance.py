"""The ConvNeXtPose code against the authors' own outputs for release-format checkpoints."""
import cv2
import numpy as np
import pytest
import torch

from app import geometry
from app.estimator import estimate_poses, normalize_crops
from models import load_convnextpose

from support import DATA, SHARED_CONVNEXTPOSE

# float32 CPU tolerances against the authors' outputs: heatmap units, image pixels, mm
COORD_TOL, PIXEL_TOL, MM_TOL = 1e-3, 0.05, 0.5


def _case(name):
    if name == "TINY":
        return DATA / "ConvNeXtPose_TINY.tar", DATA / "expected_TINY.npz"
    checkpoint = SHARED_CONVNEXTPOSE / f"ConvNeXtPose_{name}.tar"
    expected = SHARED_CONVNEXTPOSE / f"expected_{name}.npz"
    if not (checkpoint.exists() and expected.exists()):
        pytest.skip(f"{checkpoint} is not here (the large conformance files live in ../shared)")
    return checkpoint, expected


@pytest.fixture(scope="module")
def photo():
    return cv2.imread(str(DATA / "group.jpg"))


@pytest.mark.parametrize("name", ["TINY", "XS", "L"])
def test_estimate_poses_matches_the_authors(name, photo, group_boxes):
    checkpoint, expected_path = _case(name)
    expected = np.load(expected_path)
    model = load_convnextpose(checkpoint)
    results = estimate_poses(model, photo, group_boxes["bboxes"], group_boxes["focal"],
                             group_boxes["princpt"], group_boxes["root_depths"])
    assert len(results) == 5 and all(r is not None for r in results)
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.bbox, expected["bbox"][i], atol=1e-6)
        np.testing.assert_allclose(r.transform, expected["trans"][i], atol=1e-3)
        np.testing.assert_allclose(r.coord, expected["coord"][i], atol=COORD_TOL)
        np.testing.assert_allclose(r.pose_2d, expected["pose_2d"][i], atol=PIXEL_TOL)
        np.testing.assert_allclose(r.pose_3d_cam, expected["pose_3d_cam"][i], atol=MM_TOL)
        np.testing.assert_allclose(r.pose_3d_rel, r.pose_3d_cam - r.pose_3d_cam[0], atol=1e-9)
        assert r.root_depth == pytest.approx(expected["root_depth"][i])
        assert r.confidence.shape == (18,) and np.all((r.confidence >= 0) & (r.confidence <= 1))


def test_crops_match_the_authors_patches(photo, group_boxes):
    expected = np.load(DATA / "expected_TINY.npz")
    height, width = photo.shape[:2]
    for i, box in enumerate(group_boxes["bboxes"]):
        patch = geometry.crop(photo, geometry.crop_transform(geometry.process_box(box, width, height)))
        assert np.abs(patch[..., ::-1].astype(np.float32) - expected["patch"][i]).max() <= 1.0


def test_network_alone_matches_on_the_authors_patches():
    expected = np.load(DATA / "expected_TINY.npz")
    model = load_convnextpose(DATA / "ConvNeXtPose_TINY.tar")
    crops_bgr = [p[..., ::-1].astype(np.uint8) for p in expected["patch"]]
    with torch.inference_mode():
        coords = model(normalize_crops(crops_bgr)).numpy()
    np.testing.assert_allclose(coords, expected["coord"], atol=COORD_TOL)


def test_root_depth_prior_and_empty_boxes(photo, group_boxes):
    model = load_convnextpose(DATA / "ConvNeXtPose_TINY.tar")
    boxes = [group_boxes["bboxes"][0], (2000, 2000, 50, 50), (10, 10, 0, 40)]
    results = estimate_poses(model, photo, boxes, (1500, 1500), (320, 196))
    assert results[1] is None and results[2] is None
    first = results[0]
    # sqrt(fx fy 2000 mm x 2000 mm / area) for the processed 300.7 px square box
    assert first.root_depth == pytest.approx(np.sqrt(1500 * 1500 * 4e6 / (300.7125 ** 2)))
    assert first.pose_3d_rel[0] == pytest.approx(np.zeros(3))
    assert estimate_poses(model, photo, [], (1500, 1500), (320, 196)) == []
