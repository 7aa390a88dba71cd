"""Models by name: building, embeddings, and loading weights from files or torchvision names."""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torchvision

from training.models import (
    FeatureClassifier,
    WeightsError,
    WeightsUnavailableError,
    get_model,
    list_models,
    model_spec,
    register_model,
)


def _input(name: str, size: int = 32, n: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, model_spec(name).channels, size, size, generator=gen)


def test_builtin_models_are_listed():
    assert {"small_cnn", "resnet18", "mobilenet_v3_small"} <= set(list_models())


def test_specs_give_default_inputs():
    assert (model_spec("small_cnn").channels, model_spec("small_cnn").image_size) == (1, 28)
    assert (model_spec("resnet18").channels, model_spec("resnet18").image_size) == (3, 224)


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_logits_and_embeddings(name):
    model = get_model(name, 3, seed=0).eval()
    x = _input(name)
    with torch.inference_mode():
        emb = model.features(x)
        logits = model(x)
        assert torch.equal(logits, model.head(emb))
    assert isinstance(model, FeatureClassifier)
    assert emb.shape == (2, model.embedding_dim)
    assert logits.shape == (2, 3)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet999'.*small_cnn"):
        get_model("resnet999", 2)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("small_cnn", model_spec("small_cnn"), lambda k: get_model("small_cnn", k))


def test_seed_gives_same_weights_without_touching_global_rng():
    before = torch.random.get_rng_state()
    a, b = get_model("small_cnn", 4, seed=7), get_model("small_cnn", 4, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_local_state_dict_file_loads(tmp_path):
    source = get_model("small_cnn", 10, seed=1).eval()
    path = tmp_path / "cnn.pt"
    torch.save(source.state_dict(), path)
    loaded = get_model("small_cnn", 10, weights=path).eval()
    x = _input("small_cnn", 28)
    with torch.inference_mode():
        assert torch.equal(loaded(x), source(x))
    assert str(path) in loaded.weights_note


def test_head_with_other_class_count_is_replaced_and_reported(tmp_path):
    source = get_model("small_cnn", 10, seed=1).eval()
    path = tmp_path / "cnn.pt"
    torch.save(source.state_dict(), path)
    loaded = get_model("small_cnn", 3, weights=str(path)).eval()
    x = _input("small_cnn", 28)
    with torch.inference_mode():
        assert torch.equal(loaded.features(x), source.features(x))
        assert loaded(x).shape == (2, 3)
    assert "head replaced" in loaded.weights_note
    assert "10 classes" in loaded.weights_note


def test_torchvision_layout_file_loads(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        reference = torchvision.models.mobilenet_v3_small().eval()
    path = tmp_path / "mobilenet.pth"
    torch.save(reference.state_dict(), path)
    model = get_model("mobilenet_v3_small", 1000, weights=path).eval()
    x = _input("mobilenet_v3_small", 64)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(x))


def test_file_for_another_model_is_refused(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(get_model("small_cnn", 2).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit model 'mobilenet_v3_small'"):
        get_model("mobilenet_v3_small", 2, weights=path)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="weights file not found: .*nope.pt"):
        get_model("small_cnn", 2, weights=tmp_path / "nope.pt")


@pytest.mark.parametrize("content", [b"\x00\x13random bytes" * 50, b"not weights\n"])
def test_a_file_that_is_not_a_state_dict_is_one_error_naming_it(tmp_path, content):
    path = tmp_path / "mine.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="cannot read weights file .*mine.pth") as err:
        get_model("small_cnn", 2, weights=path)
    assert "weights_only=False" not in str(err.value)  # torch's advice would run the file


def test_unknown_torchvision_weights_name_lists_valid():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        get_model("resnet18", 2, weights="IMAGENET9K_V9")


def test_model_without_torchvision_weights_says_so():
    with pytest.raises(ValueError, match="no torchvision weights"):
        get_model("small_cnn", 2, weights="IMAGENET1K_V1")


def test_uncached_weights_with_downloads_off_say_to_use_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(WeightsUnavailableError, match="pass the file's path as weights="):
        get_model("resnet18", 2, weights="ResNet18_Weights.IMAGENET1K_V1", allow_download=False)


def _online() -> bool:
    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_weights_download_offline_fails_fast_and_clearly(tmp_path, monkeypatch):
    if _online():
        pytest.skip("checks the offline behaviour; this machine can reach download.pytorch.org")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="weights="):
        get_model("resnet18", 2, weights="IMAGENET1K_V1")
    assert time.monotonic() - started < 30
