"""Training: accuracy a user would notice, input validation, reproducibility, warm starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluate import evaluate
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import MIN_VAL_ITEMS, split_for_validation, train, train_arrays

from .conftest import DIGIT_CLASSES

FAST = TrainParams(min_steps=20, epochs=1, seed=0)


@pytest.mark.slow
def test_small_cnn_reaches_90_percent_on_digits_from_500_labels(digits, digits_model):
    images, labels = digits
    report = evaluate(predict_arrays(digits_model, images[500:]).probs, labels[500:], DIGIT_CLASSES)
    assert report.accuracy >= 0.90, report
    assert digits_model.transform.image_size == 28  # 8x8 digits were upscaled
    # The default recipe holds nothing out: every label trains, for the whole schedule.
    assert digits_model.metrics["n_val"] == 0 and digits_model.metrics["n_train"] == 500
    assert digits_model.metrics["validation"].startswith("none (val_fraction 0)")
    assert digits_model.metrics["steps"] == digits_model.metrics["planned_steps"]


def test_early_stopping_on_a_split_when_asked(digits):
    images, labels = digits
    model = train_arrays(images[:500], labels[:500], DIGIT_CLASSES,
                         TrainParams(seed=0, val_fraction=0.15, epochs=2, min_steps=20))
    assert model.metrics["n_val"] == 76 and model.metrics["n_train"] == 424  # per class
    assert "stratified" in model.metrics["validation"] and "val_accuracy" in model.metrics


def test_paths_train_like_arrays(mnist_pngs):
    paths, images, labels = mnist_pngs
    names = [str(y) for y in labels[:40]]
    from_files = train(paths[:40], names, DIGIT_CLASSES, FAST)
    from_arrays = train_arrays(images[:40], labels[:40], DIGIT_CLASSES, FAST)
    probe = images[100:140]
    assert np.array_equal(
        predict_arrays(from_files, probe).probs, predict_arrays(from_arrays, probe).probs
    )


def test_same_seed_gives_identical_model_and_leaves_global_rng_alone(digits):
    images, labels = digits
    rng_before = torch.random.get_rng_state()
    runs = [train_arrays(images[:60], labels[:60], DIGIT_CLASSES, FAST) for _ in range(2)]
    other = train_arrays(
        images[:60], labels[:60], DIGIT_CLASSES, TrainParams(**{**FAST.to_dict(), "seed": 1})
    )
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    probe = images[1000:1100]
    a, b, c = (predict_arrays(m, probe).probs for m in (*runs, other))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_too_few_labels_train_on_all_for_min_steps_and_say_so(digits):
    images, labels = digits
    model = train_arrays(images[:20], labels[:20], DIGIT_CLASSES, TrainParams(min_steps=30))
    assert model.metrics["n_val"] == 0
    assert model.metrics["n_train"] == 20
    assert model.metrics["steps"] == 30
    assert model.metrics["validation"].startswith("none")


def test_validation_split_is_stratified_and_keeps_every_class_in_training():
    labels = np.repeat(np.arange(4), [100, 50, 30, 1])
    train_idx, val_idx, _ = split_for_validation(labels, 0.2, seed=0)
    assert len(val_idx) >= MIN_VAL_ITEMS
    assert sorted(np.concatenate([train_idx, val_idx])) == list(range(len(labels)))
    assert np.bincount(labels[val_idx], minlength=4).tolist() == [20, 10, 6, 0]
    assert set(labels[train_idx]) == {0, 1, 2, 3}


def test_unknown_label_is_named_with_the_valid_classes(mnist_pngs):
    paths, _, _ = mnist_pngs
    with pytest.raises(ValueError, match=r"unknown label 'seven'.*valid classes: 0, 1, 2"):
        train(paths[:3], ["1", "seven", "2"], DIGIT_CLASSES, FAST)


@pytest.mark.parametrize(
    ("classes", "message"),
    [(["cat", "dog", "cat"], "duplicate classes \\['cat'\\]"), (["cat"], "at least 2 classes")],
)
def test_bad_class_lists_are_refused(mnist_pngs, classes, message):
    paths, _, _ = mnist_pngs
    with pytest.raises(ValueError, match=message):
        train(paths[:2], ["cat", "cat"], classes, FAST)


def test_label_count_must_match(mnist_pngs, digits):
    paths, _, _ = mnist_pngs
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        train(paths[:3], ["1", "2"], DIGIT_CLASSES, FAST)
    images, labels = digits
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        train_arrays(images[:5], labels[:4], DIGIT_CLASSES, FAST)


def test_label_index_out_of_range_is_refused(digits):
    images, _ = digits
    with pytest.raises(ValueError, match="label index 10 out of range for 10 classes"):
        train_arrays(images[:2], [3, 10], DIGIT_CLASSES, FAST)


def test_unknown_model_is_refused_before_reading_images(mnist_pngs):
    paths, _, labels = mnist_pngs
    params = TrainParams(model="vgg99")
    with pytest.raises(ValueError, match="unknown model 'vgg99'.*small_cnn"):
        train(["/does/not/exist.png"], ["1"], DIGIT_CLASSES, params)


def test_unreadable_training_file_is_named(tmp_path, mnist_pngs):
    paths, _, _ = mnist_pngs
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="broken.png"):
        train([paths[0], bad], ["1", "2"], DIGIT_CLASSES, FAST)


def test_progress_off_prints_nothing(digits, capsys):
    images, labels = digits
    train_arrays(images[:30], labels[:30], DIGIT_CLASSES, FAST, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_warm_start_continues_from_the_earlier_model(digits):
    images, labels = digits
    first = train_arrays(images[:40], labels[:40], DIGIT_CLASSES, FAST)
    second = train_arrays(images[:80], labels[:80], DIGIT_CLASSES, FAST, warm_start=first)
    assert second.epoch > first.epoch
    assert second.metrics["weights"] == "warm start"
    with pytest.raises(ValueError, match="same model and classes"):
        train_arrays(images[:40], labels[:40] % 3, ["a", "b", "c"], FAST, warm_start=first)


def test_params_round_trip_and_reject_unknown_or_bad_values():
    params = TrainParams(model="resnet18", image_size=64, augment=0.2)
    assert TrainParams.from_dict(params.to_dict()) == params
    with pytest.raises(ValueError, match="unknown training parameters \\['epoch'\\]"):
        TrainParams.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="augment=1.5"):
        TrainParams(augment=1.5)
