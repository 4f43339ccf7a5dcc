"""CUDA graphs: a replayed network gives the answers of one launched kernel by kernel.

Needs a CUDA GPU (skipped elsewhere); the device tool's GPU machine runs it
(benchmarks/gpu_check.sh)."""
import numpy as np
import pytest
import torch

from app.estimator import MAX_BATCH, ConvNeXtPoseBackend, CropUploader
from app.types import Box, Camera
from models import load_convnextpose
from models.cuda_graphs import CudaGraphs
from models.optimize import optimize_for_inference

from support import DATA

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CHECKPOINT = DATA / "ConvNeXtPose_TINY_trained_like.tar"


@pytest.fixture(scope="module")
def network():
    return optimize_for_inference(load_convnextpose(CHECKPOINT, device="cuda"), "fp32")


@pytest.fixture(scope="module")
def crops():
    """The conformance crops of real people, BGR uint8, as the frame loop cuts them."""
    patches = np.load(DATA / "expected_TINY.npz")["patch"]
    return [np.ascontiguousarray(p[..., ::-1]) for p in patches]


def _launched(network, images):
    with torch.inference_mode():
        return network.forward_with_confidence(images)


def test_replay_gives_the_launched_answers_and_keeps_earlier_results(network, crops):
    upload = CropUploader("cuda")
    one, three = upload(crops[:1]), upload(crops[1:4])
    expected_one, expected_three = _launched(network, one), _launched(network, three)
    graphs = CudaGraphs(lambda images: _launched(network, images))
    for example in (one, three):
        graphs.capture(example, always=True)
    assert graphs.batch_sizes == [1, 3]
    first = graphs(one)
    second = graphs(three)   # replays write into the same output buffers ...
    for got, want in zip(first + second, expected_one + expected_three):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)   # ... yet the first answer stands
    two = upload(crops[:2])   # not captured: launched as usual
    for got, want in zip(graphs(two), _launched(network, two)):
        torch.testing.assert_close(got, want)


def test_the_backend_measures_graphs_at_warm_up_and_estimates_the_same_joints(crops):
    checkpoint = load_convnextpose(CHECKPOINT, device="cuda")
    launched = ConvNeXtPoseBackend(optimize_for_inference(checkpoint, "fp32"))
    graphed = ConvNeXtPoseBackend(optimize_for_inference(checkpoint, "fp32"))
    graphed.warm_up()
    assert [t.batch for t in graphed.graph_trials] == list(range(1, MAX_BATCH + 1))
    assert all(t.eager_ms > 0 and t.graph_ms > 0 for t in graphed.graph_trials)
    image = np.ascontiguousarray(np.concatenate(crops[:3], axis=1))   # three people side by side
    boxes = [Box(256 * i + 20, 10, 216, 236) for i in range(3)]
    camera = Camera(1500.0, 1500.0, image.shape[1] / 2, image.shape[0] / 2)
    for want, got in zip(launched.estimate(image, boxes, camera), graphed.estimate(image, boxes, camera)):
        np.testing.assert_allclose(got.joints_3d, want.joints_3d, atol=0.05)   # mm
        np.testing.assert_allclose(got.confidence, want.confidence, atol=1e-5)
