"""--precision: which precisions each device can run, auto's rule (the fastest path within 1 mm mean
and 5 mm max of strict float32 in the 3D joints), and the rule applied to a trained-like network
(tests/data/ConvNeXtPose_TINY_trained_like.tar, from benchmarks/finetune_pseudo_labels.py:
concentrated heatmaps, unlike the random conformance checkpoints')."""
import math
import os

import numpy as np
import pytest
import torch

from app.backends import calibration_crops, create_backend
from support import DATA
from models import load_convnextpose, optimize_for_inference
from models import optimize as optimize_module
from models.optimize import (MAX_CHANGE_MM, MEAN_CHANGE_MM, PrecisionTrial, available_precisions,
                             change_mm, pick_precision, precisions_for, timed_ms)

TRAINED_LIKE = DATA / "ConvNeXtPose_TINY_trained_like.tar"
# the device whose reduced paths are measured: tf32 and fp16 exist only on CUDA
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_precisions_per_device_capability():
    assert precisions_for("cpu") == ["fp32"]                          # AVX2 only
    assert precisions_for("cpu", cpu_bf16=True) == ["fp32", "bf16"]  # AVX512-BF16 or AMX
    assert precisions_for("cuda", cuda_capability=(9, 0)) == ["fp32", "tf32", "bf16", "fp16"]  # H100
    assert precisions_for("cuda", cuda_capability=(8, 0)) == ["fp32", "tf32", "bf16", "fp16"]  # A100
    assert precisions_for("cuda", cuda_capability=(7, 5)) == ["fp32", "fp16"]                  # T4
    assert precisions_for("mps") == ["fp32"]


def test_auto_takes_the_fastest_path_within_the_limits():
    def trial(name, mean, worst, ms):
        return PrecisionTrial(name, mean, worst, ms)
    fp32 = trial("fp32", 0.0, 0.0, 10.0)
    assert pick_precision([fp32, trial("bf16", 0.4, 3.0, 6.0)]) == "bf16"
    assert pick_precision([fp32, trial("bf16", 1.01, 3.0, 6.0)]) == "fp32"            # mean over 1 mm
    assert pick_precision([fp32, trial("bf16", 0.2, 5.01, 6.0)]) == "fp32"            # a joint over 5 mm
    assert pick_precision([fp32, trial("bf16", 0.5, 2.0, 12.0)]) == "fp32"            # passes, but slower
    assert pick_precision([fp32, trial("tf32", 0.01, 0.1, 4.0), trial("bf16", 0.5, 2.0, 3.0),
                           trial("fp16", math.inf, math.inf, 2.0)]) == "bf16"         # fp16 overflowed
    # exactly at the limits passes
    assert pick_precision([fp32, trial("bf16", MEAN_CHANGE_MM, MAX_CHANGE_MM, 1.0)]) == "bf16"


def test_change_in_mm_uses_the_networks_scale():
    reference = torch.zeros(1, 2, 3)
    moved = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])   # one cell in x; two depth bins
    mean, worst = change_mm(moved, reference, depth_bins=64)
    assert worst == pytest.approx(62.5) and mean == pytest.approx((62.5 + 62.5) / 2)
    assert change_mm(moved * float("nan"), reference, 64) == (math.inf, math.inf)


def test_timing_waits_for_the_device(monkeypatch):
    waits = []
    monkeypatch.setattr(optimize_module, "synchronize", lambda device: waits.append(str(device)))
    times = timed_ms(lambda: sum(range(1000)), "cpu", repeats=3, warmup=1)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert waits == ["cpu"] * 6   # before the clock starts and before it stops, every time


@pytest.fixture(scope="module")
def trained_like():
    if not TRAINED_LIKE.exists():
        pytest.skip(f"{TRAINED_LIKE.name} is missing (make it with benchmarks/finetune_pseudo_labels.py)")
    return load_convnextpose(TRAINED_LIKE, DEVICE)


@pytest.mark.parametrize("precision", ["bf16", "tf32", "fp16"])
def test_auto_follows_the_rule_on_the_trained_like_network(trained_like, precision):
    """Each reduced path this machine's device runs natively (CUDA where there is one, else the
    CPU) is measured on real people against strict float32; auto takes it only within the
    limits (and only when it is the fastest)."""
    if precision not in available_precisions(DEVICE):
        pytest.skip(f"this machine's {DEVICE} has no native {precision} path")
    crops = calibration_crops().to(DEVICE)
    with torch.inference_mode():
        strict = optimize_for_inference(trained_like, "fp32")(crops)
        reduced = optimize_for_inference(trained_like, precision)(crops)
    mean_mm, max_mm = change_mm(reduced, strict, trained_like.config.depth_bins)
    chosen = optimize_for_inference(trained_like, "auto", calibration=crops)
    trials = {t.precision: t for t in chosen.precision_trials}
    assert set(trials) == set(available_precisions(DEVICE))
    assert trials[precision].mean_mm == pytest.approx(mean_mm, abs=1e-3)
    assert trials[precision].max_mm == pytest.approx(max_mm, abs=1e-3)
    within = mean_mm <= MEAN_CHANGE_MM and max_mm <= MAX_CHANGE_MM
    taken = chosen.compute_path != "fp32"
    assert chosen.precision == (precision if taken else "fp32")
    if taken:
        assert within and chosen.compute_path.startswith(precision)
        assert trials[precision].ms <= trials["fp32"].ms
    elif within:
        assert trials[precision].ms > trials["fp32"].ms      # passed, but float32 was faster
    print(f"{precision}: {mean_mm:.3f} mm mean, {max_mm:.3f} mm max; auto ran {chosen.compute_path}")


def test_trained_like_network_has_concentrated_heatmaps(trained_like):
    """The yardstick is only worth having if its heatmaps are peaked like a trained network's."""
    crops = calibration_crops().to(DEVICE)
    random_network = load_convnextpose(DATA / "ConvNeXtPose_TINY.tar", DEVICE)
    with torch.inference_mode():
        _, trained_confidence = trained_like.forward_with_confidence(crops)
        _, random_confidence = random_network.forward_with_confidence(crops)
    assert float(trained_confidence.mean()) > 0.5 > float(random_confidence.mean())


def test_fp32_forces_strict_float32_and_auto_reports_what_it_measured(caplog):
    tiny = str(DATA / "ConvNeXtPose_TINY.tar")
    caplog.set_level("INFO", logger="app")
    strict = create_backend(tiny, precision="fp32")
    assert strict.compute_path == "fp32" and strict.model.precision_trials == []
    auto = create_backend(tiny, precision="auto")
    lines = [record.getMessage() for record in caplog.records]
    device = next(auto.model.parameters()).device   # CUDA where the machine has a GPU
    assert [t.precision for t in auto.model.precision_trials] == available_precisions(device)
    if len(available_precisions(device)) > 1:
        assert any(line.startswith("--precision auto: fp32") for line in lines)
    assert np.isfinite([t.mean_mm for t in auto.model.precision_trials if t.precision == "fp32"]).all()


def test_auto_without_the_calibration_photo_says_so_and_keeps_float32(caplog, tmp_path, monkeypatch):
    from app import backends
    missing = tmp_path / "group.jpg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # nothing measured before
    caplog.set_level("WARNING", logger="app")
    monkeypatch.setattr(backends, "calibration_crops", lambda: calibration_crops(missing))
    auto = create_backend(str(DATA / "ConvNeXtPose_TINY.tar"), precision="auto")
    assert auto.compute_path == "fp32" and auto.model.precision_trials == []
    assert any(str(missing) in record.getMessage() and "float32" in record.getMessage() for record in caplog.records)


def test_tf32_emulation_rounds_to_ten_mantissa_bits_ties_to_even():
    """benchmarks/emulate_cuda_precision.py predicts CUDA's TF32 on the CPU; its rounding is
    what tensor cores do to float32 operands."""
    from benchmarks.emulate_cuda_precision import round_tf32
    ulp = 2.0 ** -10
    x = torch.tensor([1.0, 1 + ulp, 1 + ulp / 2, 1 + 3 * ulp / 2, 1 + ulp / 4, -(1 + 3 * ulp / 2), 3.0e38])
    expected = torch.tensor([1.0, 1 + ulp, 1.0, 1 + 2 * ulp, 1.0, -(1 + 2 * ulp), 3.0e38])
    rounded = round_tf32(x)
    assert torch.equal(rounded[:6], expected[:6])
    assert rounded[6] == pytest.approx(3.0e38, rel=2 ** -10)   # float32's range, unlike fp16's


# ---- auto's measurement remembered (app/precision_memory.py) ------------------------------------

def _described(trials):
    return [(t.precision, t.mean_mm, t.max_mm, None if math.isnan(t.ms) else t.ms) for t in trials]


def test_a_remembered_measurement_is_read_back_under_its_key_only(tmp_path, monkeypatch):
    from app import precision_memory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint, photo = tmp_path / "net.tar", DATA / "group.jpg"
    checkpoint.write_bytes(b"weights")
    key = precision_memory.key_for(checkpoint, "cpu", photo)
    assert precision_memory.recall(key) is None
    trials = [PrecisionTrial("fp32", 0.0, 0.0, 30.0), PrecisionTrial("bf16", 5.7, 16.5, math.nan)]
    precision_memory.remember(key, "fp32", trials)
    precision, recalled = precision_memory.recall(key)
    assert precision == "fp32" and _described(recalled) == _described(trials)
    # the same file rewritten (a new download under the same name) is another key
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert precision_memory.key_for(checkpoint, "cpu", photo) != key
    # a cache that cannot be written is no error: nothing is remembered
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    precision_memory.remember(key, "fp32", trials)
    assert precision_memory.recall(key) is None


def test_auto_runs_what_it_measured_before_without_measuring_again(tmp_path, monkeypatch, caplog):
    from app import backends
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = tmp_path / "ConvNeXtPose_TINY.tar"
    checkpoint.write_bytes(TRAINED_LIKE.read_bytes())
    measured = []
    monkeypatch.setattr(backends, "calibration_crops", lambda: measured.append(1) or calibration_crops())
    first = create_backend(str(checkpoint), precision="auto")
    if len(available_precisions(next(first.model.parameters()).device)) == 1:
        pytest.skip("this device has float32 only: auto has nothing to measure or remember")
    assert measured == [1]
    caplog.set_level("INFO", logger="app")
    again = create_backend(str(checkpoint), precision="auto")
    assert measured == [1], "measured again"
    assert again.compute_path == first.compute_path
    assert _described(again.model.precision_trials) == _described(first.model.precision_trials)
    assert any("measured on this machine before" in r.getMessage() for r in caplog.records)
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # a new file
    create_backend(str(checkpoint), precision="auto")
    assert measured == [1, 1]
