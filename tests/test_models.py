"""Building every variant, loading release files in every accepted form, refusing bad ones."""
import os
import pickle
import zipfile

import pytest
import torch

from models import (VARIANTS, CheckpointError, CheckpointNotFoundError, CorruptCheckpointError,
                    InconsistentShapesError, NotACheckpointError, NotConvNeXtPoseError,
                    UnsafeCheckpointError, build_convnextpose, load_convnextpose, read_state_dict)

from support import DATA

TINY = DATA / "ConvNeXtPose_TINY.tar"


@pytest.mark.parametrize("variant, millions", [("XS", 3.53), ("S", 7.44), ("M", 7.59), ("L", 8.38)])
def test_parameter_counts_are_the_papers(variant, millions):
    model = build_convnextpose(variant)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
    assert not model.training


def test_forward_shape_and_range():
    model = build_convnextpose("XS")
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 18, 3)
    assert torch.all(out[..., :2] >= 0) and torch.all(out[..., :2] < 32)
    assert torch.all(out[..., 2] >= 0) and torch.all(out[..., 2] < 32)


def test_unknown_variant_is_a_value_error():
    with pytest.raises(ValueError, match="unknown ConvNeXtPose variant"):
        build_convnextpose("XXL")


def test_release_file_infers_its_architecture():
    model = load_convnextpose(TINY)
    c = model.config
    assert (c.depths, c.dims, c.head_width, c.depth_bins, c.joints) == ((1, 1, 2, 1), (8, 16, 24, 32), 16, 8, 18)
    assert model.variant is None and not model.training
    line = model.describe()
    assert "\n" not in line and "16" in line and "8 depth bins" in line and "18 joints" in line


def test_auto_device_is_cpu_without_cuda():
    model = load_convnextpose(TINY, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.parameters()).device.type == expected


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_standard_variants_round_trip_in_every_form(tmp_path, variant):
    model = build_convnextpose(variant)
    state = model.state_dict()
    forms = {
        "bare.pth": state,
        "prefixed.pth.tar": {"module." + k: v for k, v in state.items()},
        "wrapped.pth": {"network": {"module." + k: v for k, v in state.items()}, "epoch": 3,
                        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}},
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
        loaded = load_convnextpose(tmp_path / name)
        assert loaded.variant == variant
        assert loaded.display_name == f"ConvNeXtPose-{variant}"
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, state[key])


def test_release_archive_layout_is_read(tmp_path):
    # The release .tar is a torch zip archive whose records sit under snapshot_<epoch>.pth/.
    with zipfile.ZipFile(TINY) as archive:
        assert all(n.startswith("snapshot_") for n in archive.namelist())
    assert "backbone.norm.running_var" in read_state_dict(TINY)


# ---- failures: each a ValueError subclass with one sentence naming the file ----

def _assert_one_sentence(error, filename):
    message = str(error.value)
    assert isinstance(error.value, ValueError) and isinstance(error.value, CheckpointError)
    assert filename in message and "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as error:
        load_convnextpose(tmp_path / "nope.pth")
    _assert_one_sentence(error, "nope.pth")
    assert "does not exist" in str(error.value)


@pytest.mark.parametrize("text", ["these are not weights\n" * 20, "# A README\n\nSome *markdown*.\n"])
def test_not_a_checkpoint(tmp_path, text):
    path = tmp_path / "notes.pth"
    path.write_text(text)
    with pytest.raises(NotACheckpointError) as error:
        load_convnextpose(path)
    _assert_one_sentence(error, "notes.pth")
    assert "not a PyTorch checkpoint" in str(error.value)


def test_empty_and_folder(tmp_path):
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError) as error:
        load_convnextpose(tmp_path / "empty.tar")
    _assert_one_sentence(error, "empty.tar")
    with pytest.raises(NotACheckpointError):
        load_convnextpose(tmp_path)


def test_truncated_archive(tmp_path):
    path = tmp_path / "ConvNeXtPose_cut.tar"
    path.write_bytes(TINY.read_bytes()[: TINY.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError) as error:
        load_convnextpose(path)
    _assert_one_sentence(error, "ConvNeXtPose_cut.tar")
    assert "truncated or corrupt" in str(error.value)


def test_corrupted_bytes_inside_archive(tmp_path):
    data = bytearray(TINY.read_bytes())
    start = data.find(b"data.pkl") + 200
    data[start:start + 64] = os.urandom(64)
    path = tmp_path / "flipped.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        load_convnextpose(path)
    _assert_one_sentence(error, "flipped.tar")


def test_other_network_names_what_is_missing(tmp_path):
    torch.save({"network": {"module.fc.weight": torch.zeros(3, 3)}}, tmp_path / "resnet.pth")
    with pytest.raises(NotConvNeXtPoseError) as error:
        load_convnextpose(tmp_path / "resnet.pth")
    _assert_one_sentence(error, "resnet.pth")
    assert "backbone.downsample_layers.0.0.weight" in str(error.value)


def test_missing_block_entry_is_named(tmp_path):
    state = read_state_dict(TINY)
    del state["backbone.stages.2.1.pwconv1.bias"]
    torch.save(state, tmp_path / "holed.pth")
    with pytest.raises(NotConvNeXtPoseError, match="backbone.stages.2.1.pwconv1.bias"):
        load_convnextpose(tmp_path / "holed.pth")


def test_inconsistent_shapes(tmp_path):
    state = read_state_dict(TINY)
    state["backbone.stages.1.0.pwconv2.weight"] = torch.zeros(16, 60, 1, 1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(InconsistentShapesError) as error:
        load_convnextpose(tmp_path / "odd.pth")
    _assert_one_sentence(error, "odd.pth")
    assert "backbone.stages.1.0.pwconv2.weight" in str(error.value)


class _CreatesAFile:
    """Unpickling this would run `open(path, 'w')`: the classic malicious checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("form", ["legacy-pickle", "torch-zip"])
def test_malicious_pickle_is_refused_and_never_run(tmp_path, form):
    victim = tmp_path / "pwned.txt"
    path = tmp_path / "ConvNeXtPose_evil.pth"
    payload = {"network": {"module.backbone.norm.weight": torch.zeros(2)}, "hook": _CreatesAFile(victim)}
    if form == "legacy-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    assert not victim.exists()
    with pytest.raises(UnsafeCheckpointError) as error:
        load_convnextpose(path)
    _assert_one_sentence(error, "ConvNeXtPose_evil.pth")
    assert not victim.exists()
