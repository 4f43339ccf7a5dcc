"""optimize_for_inference: same interface, same answers (conformance data), faster compute paths."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from app.estimator import normalize_crops, run_network
from models import load_convnextpose
from models.onednn import FusedCpuNetwork
from models.optimize import (OptimizedConvNeXtPose, _coords_and_plane, available_precisions, fold_batchnorms,
                             fold_bn_before_conv, optimize_for_inference)

from support import DATA, SHARED_CONVNEXTPOSE

TOLERANCE = 0.05      # heatmap units: the bound for any reduced-precision path
FP32_TOL = 1e-3       # float32 after folding: float rounding only
FOLD_TOL = 1e-4


def _case(name):
    if name == "TINY":
        checkpoint, expected = DATA / "ConvNeXtPose_TINY.tar", DATA / "expected_TINY.npz"
    else:
        checkpoint = SHARED_CONVNEXTPOSE / f"ConvNeXtPose_{name}.tar"
        expected = SHARED_CONVNEXTPOSE / f"expected_{name}.npz"
        if not (checkpoint.exists() and expected.exists()):
            pytest.skip(f"{checkpoint} is not here (the large conformance files live in ../shared)")
    data = np.load(expected)
    images = normalize_crops([p[..., ::-1].astype(np.uint8) for p in data["patch"]])
    model = load_convnextpose(checkpoint)
    with torch.inference_mode():
        coords, confidence = model.forward_with_confidence(images)
    return model, images, coords, confidence, data["coord"]


_CACHE = {}


@pytest.fixture(params=["TINY", "XS", "L"])
def case(request):
    if request.param not in _CACHE:
        _CACHE[request.param] = _case(request.param)
    return _CACHE[request.param]


def test_batchnorm_folding_alone_is_exact(case):
    model, images, coords, _, _ = case
    folded = fold_batchnorms(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        np.testing.assert_allclose(folded(images).numpy(), coords.numpy(), atol=FOLD_TOL)
        np.testing.assert_allclose(folded.logits(images).numpy(), model.logits(images).numpy(), atol=1e-4, rtol=1e-4)


def test_fp32_matches_the_float32_network_and_the_authors(case):
    model, images, coords, confidence, expected = case
    optimized = optimize_for_inference(model, "fp32")
    assert optimized.compute_path == "fp32" and optimized.precision == "fp32"
    with torch.inference_mode():
        c, conf = optimized.forward_with_confidence(images)
    np.testing.assert_allclose(c.numpy(), coords.numpy(), atol=FP32_TOL)
    np.testing.assert_allclose(c.numpy(), expected, atol=FP32_TOL)
    np.testing.assert_allclose(conf.numpy(), confidence.numpy(), atol=FP32_TOL)


def test_automatic_choice_stays_within_tolerance(case):
    model, images, coords, confidence, _ = case
    for optimized in (optimize_for_inference(model), optimize_for_inference(model, calibration=images)):
        with torch.inference_mode():
            c, conf = optimized.forward_with_confidence(images)
        assert (c - coords).abs().max() <= TOLERANCE, optimized.compute_path
        assert torch.all((conf >= 0) & (conf <= 1))
        assert (conf - confidence).abs().max() <= TOLERANCE


def test_bf16_is_not_chosen_when_it_moves_the_answers():
    """On the random conformance heatmaps bf16 moves the joints far beyond auto's limits (1 mm
    mean, 5 mm max), so calibration must reject it; it stays available on request and still
    gives sane output."""
    model, images, coords, _, _ = _case("TINY")
    if "bf16" not in available_precisions("cpu"):
        pytest.skip("this CPU has no native bfloat16")
    bf16 = optimize_for_inference(model, "bf16")
    assert bf16.compute_path in ("bf16-avx512", "bf16-amx") and bf16.precision == "bf16"
    with torch.inference_mode():
        c, conf = bf16.forward_with_confidence(images)
    assert torch.isfinite(c).all() and torch.all((conf >= 0) & (conf <= 1))
    assert torch.all((c[..., :2] >= 0) & (c[..., :2] < 32))
    # the random conformance heatmaps: bf16 moves the joints far beyond auto's limits
    auto = optimize_for_inference(model, calibration=images)
    assert {t.precision: t.passes for t in auto.precision_trials} == {"fp32": True, "bf16": False}
    assert auto.compute_path == "fp32"


def test_interface_device_and_source_model_kept():
    model, images, _, _, _ = _case("TINY")
    optimized = optimize_for_inference(model)
    assert isinstance(optimized, OptimizedConvNeXtPose) and isinstance(optimized, nn.Module)
    assert optimized.config == model.config and optimized.config.depth_bins == model.config.depth_bins
    assert next(optimized.parameters()).device == next(model.parameters()).device
    assert optimized.variant == model.variant and optimized.display_name == model.display_name
    assert optimized.describe().startswith(model.describe()) and "fp32" in optimized.describe()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())   # the source is untouched
    assert optimized(images).shape == (5, 18, 3)
    coords, confidence = run_network(optimized, images)
    reference, ref_confidence = run_network(model, images)
    assert coords.shape == (5, 18, 3) and confidence.shape == (5, 18)
    np.testing.assert_allclose(coords, reference, atol=FP32_TOL)
    np.testing.assert_allclose(confidence, ref_confidence, atol=FP32_TOL)


def test_refusals():
    model, _, _, _, _ = _case("TINY")
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(model, "int4")
    for cuda_only in ("fp16", "tf32"):
        with pytest.raises(ValueError, match=f"no native {cuda_only}"):
            optimize_for_inference(model, cuda_only)
    with pytest.raises(ValueError, match="already optimized"):
        optimize_for_inference(optimize_for_inference(model))
    # folding a BN into a *padded* conv would change the border pixels: refused
    with pytest.raises(ValueError, match="unpadded"):
        fold_bn_before_conv(nn.BatchNorm2d(4).eval(), nn.Conv2d(4, 4, 3, padding=1))


def test_onednn_fused_network_gives_the_modules_logits(case):
    """On CPU the float32 path runs prepacked oneDNN convolutions with fused ReLU and residual
    adds; its logits must be the folded modules' (same kernels, same arithmetic), at every batch
    size, though the weights were laid out for batch 1."""
    model, images, coords, _, expected = case
    optimized = optimize_for_inference(model, "fp32")
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    assert optimized.fused is not None and "oneDNN fused" in optimized.describe()
    plain = copy.deepcopy(optimized)
    plain.fused = None   # the folded modules run, as where oneDNN is absent
    with torch.inference_mode():
        fused, modules = optimized.logits(images), plain.logits(images)
        np.testing.assert_allclose(fused.numpy(), modules.numpy(), rtol=1e-5, atol=1e-5 * float(modules.abs().max()))
        np.testing.assert_allclose(optimized(images).numpy(), expected, atol=FP32_TOL)


def test_onednn_fused_network_refuses_what_it_cannot_run_exactly():
    model, images, _, _, _ = _case("TINY")
    # BatchNorms not folded: it cannot fuse them, so it declines (the caller keeps the modules)
    assert FusedCpuNetwork.build(model, model.logits) is None
    optimized = optimize_for_inference(model, "fp32")
    # a probe disagreement (here: a reference that is off by 1%) also declines
    assert FusedCpuNetwork.build(optimized, lambda x: optimized.head(optimized.backbone(x)) * 1.01) is None
    bf16 = ["bf16"] if "bf16" in available_precisions("cpu") else []
    for precision in bf16:
        assert optimize_for_inference(model, precision).fused is None   # float32 only


def test_soft_argmax_from_channels_last_logits_is_exact():
    """The optimized soft-argmax reads channels_last logits without a transpose; against a
    float64 softmax it must agree to float32 rounding."""
    generator = torch.Generator().manual_seed(1)
    for n, joints, depth, scale in ((1, 18, 64, 3.0), (3, 18, 64, 10.0), (2, 5, 8, 1.0)):
        logits = (torch.randn(n, joints * depth, 32, 32, generator=generator) * scale)
        logits = logits.contiguous(memory_format=torch.channels_last)
        coords, plane = _coords_and_plane(logits, joints, depth)
        probs = torch.softmax(logits.double().reshape(n, joints, -1), dim=2).reshape(n, joints, depth, 32, 32)
        cells = torch.arange(32, dtype=torch.float64)
        truth = torch.stack(((probs.sum(dim=(2, 3)) * cells).sum(2), (probs.sum(dim=(2, 4)) * cells).sum(2),
                             (probs.sum(dim=(3, 4)) * torch.arange(depth, dtype=torch.float64)).sum(2)), dim=2)
        np.testing.assert_allclose(coords.double().numpy(), truth.numpy(), atol=1e-4)
        np.testing.assert_allclose(plane.double().numpy(), probs.sum(dim=2).numpy(), atol=1e-6)


def test_optimized_model_can_be_deep_copied():
    """oneDNN's prepacked weights have no storage; a deep copy shares them and still works."""
    model, images, coords, _, _ = _case("TINY")
    optimized = optimize_for_inference(model, "fp32")
    clone = copy.deepcopy(optimized)
    assert (clone.fused is None) == (optimized.fused is None)
    with torch.inference_mode():
        np.testing.assert_allclose(clone(images).numpy(), coords.numpy(), atol=FP32_TOL)


def test_fused_network_follows_the_modules_when_they_move_or_load():
    """.to() and load_state_dict reach oneDNN's prepacked copy (rebuilt, or dropped where it
    does not apply), so the optimized model never runs stale weights."""
    model, images, _, _, _ = _case("TINY")
    optimized = optimize_for_inference(model, "fp32")
    if optimized.fused is None:
        pytest.skip("no oneDNN fused path here")
    state = {k: v * 0.5 if k.endswith("weight") else v for k, v in optimized.state_dict().items()}
    optimized.load_state_dict(state)
    assert optimized.fused is not None
    plain = copy.deepcopy(optimized)
    plain.fused = None   # the halved weights through the modules
    with torch.inference_mode():
        np.testing.assert_allclose(optimized.logits(images).numpy(), plain.logits(images).numpy(),
                                   rtol=1e-5, atol=1e-6)
        optimized.double()
        assert optimized.fused is None   # float64 has no fused kernels: the modules run
        coords = optimized(images.double())
        assert coords.shape == (5, 18, 3) and torch.isfinite(coords).all()
