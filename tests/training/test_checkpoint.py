"""Checkpoints: identical predictions after a round trip, atomic writes, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays

from .conftest import DIGIT_CLASSES


def test_round_trip_gives_identical_predictions(tmp_path, mnist, mnist_model):
    images, _ = mnist
    model = dataclasses.replace(mnist_model, temperature=1.7)
    path = tmp_path / "model.pt"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    probe = images[1000:1200]
    before = predict_arrays(model, probe, embeddings=True)
    after = predict_arrays(loaded, probe, embeddings=True)
    assert np.array_equal(after.probs, before.probs)
    assert np.array_equal(after.logits, before.logits)
    assert np.array_equal(after.embeddings, before.embeddings)
    assert loaded.temperature == 1.7
    assert loaded.classes == model.classes
    assert loaded.transform == model.transform
    assert loaded.params == model.params
    assert loaded.epoch == model.epoch
    assert loaded.metrics == model.metrics


def test_checkpoint_holds_only_plain_data(tmp_path, mnist_model):
    path = tmp_path / "model.pt"
    save_checkpoint(mnist_model, path)
    data = torch.load(path, weights_only=True)  # refuses anything that would run code
    assert data["model_name"] == "small_cnn"
    assert data["classes"] == DIGIT_CLASSES


def test_training_resumes_from_a_loaded_checkpoint(tmp_path, digits, mnist_model):
    images, labels = digits
    path = tmp_path / "model.pt"
    save_checkpoint(mnist_model, path)
    loaded = load_checkpoint(path)
    assert loaded.optimizer_state is not None
    params = TrainParams(min_steps=10, epochs=1)
    resumed = train_arrays(images[:30], labels[:30], DIGIT_CLASSES, params, warm_start=loaded)
    assert resumed.epoch > loaded.epoch


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, mnist_model):
    path = tmp_path / "model.pt"
    save_checkpoint(mnist_model, path)
    good = path.read_bytes()
    broken = dataclasses.replace(mnist_model, metrics={"score": lambda: 1})
    with pytest.raises(CheckpointError, match=r"model\.pt.*metrics\['score'\] is a function"):
        save_checkpoint(broken, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_write_that_fails_midway_leaves_no_temp_file(tmp_path, mnist_model):
    target = tmp_path / "model.pt"
    target.mkdir()  # os.replace cannot put a file over a directory: fails after the write
    with pytest.raises(CheckpointError, match="cannot save checkpoint .*model.pt"):
        save_checkpoint(mnist_model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert target.is_dir() and not any(target.iterdir())


def test_unwritable_target_directory_is_a_clear_error(tmp_path, mnist_model):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(CheckpointError, match="directory .*file not found"):
        save_checkpoint(mnist_model, not_a_dir / "model.pt")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*absent.pt"):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("cut", [0.5, 0.0])
def test_corrupt_or_truncated_checkpoint_is_named(tmp_path, mnist_model, cut):
    path = tmp_path / "model.pt"
    save_checkpoint(mnist_model, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)] if cut else b"garbage" * 100)
    with pytest.raises(CheckpointError, match="model.pt") as err:
        load_checkpoint(path)
    # One line, and not torch's advice to load with weights_only=False (code in the file runs).
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint(tmp_path, mnist_model):
    path = tmp_path / "weights.pt"
    torch.save(mnist_model.module.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a labelloop checkpoint"):
        load_checkpoint(path)
