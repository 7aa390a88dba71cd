"""Temperature scaling: recovers a known temperature and lowers held-out calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import T_BOUNDS, calibrate, calibrate_arrays, fit_temperature
from training.evaluate import evaluate, expected_calibration_error
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays

from .conftest import DIGIT_CLASSES


def _labels_drawn_from(logits: np.ndarray, seed: int) -> np.ndarray:
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(len(p), p=p) for p in probs])


def test_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(4000, 5))
    labels = _labels_drawn_from(logits, seed=1)  # calibrated at T = 1
    assert fit_temperature(logits * 3, labels) == pytest.approx(3, rel=0.1)
    assert fit_temperature(logits / 2, labels) == pytest.approx(0.5, rel=0.1)


def test_temperature_stays_within_bounds():
    # Confident logits that say nothing about the labels: the NLL keeps falling as T grows.
    logits = np.array([[10.0, 0.0]] * 100)
    labels = np.array([0, 1] * 50)
    assert fit_temperature(logits, labels) == pytest.approx(T_BOUNDS[1], rel=1e-3)
    # Always right: the NLL keeps falling as T shrinks, but never below the lower bound.
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 50)
    assert T_BOUNDS[0] <= fit_temperature(logits, labels) < 1


@pytest.mark.slow
def test_calibration_lowers_ece_of_an_overconfident_model_on_held_out_data(digits):
    images, labels = digits
    # Few labels, long training, no augmentation or weight decay: confident beyond its accuracy.
    params = TrainParams(min_steps=150, augment=0.0, weight_decay=0.0, seed=0)
    model = train_arrays(images[:60], labels[:60], DIGIT_CLASSES, params)
    fit_x, fit_y = images[200:700], labels[200:700]
    test_x, test_y = images[700:], labels[700:]
    before = predict_arrays(model, test_x).probs
    temperature = calibrate_arrays(model, fit_x, fit_y)
    after = predict_arrays(model, test_x).probs
    assert temperature > 1  # it was over-confident
    assert model.temperature == temperature
    ece_before = expected_calibration_error(before, test_y)
    ece_after = expected_calibration_error(after, test_y)
    assert ece_after < ece_before * 0.7, (ece_before, ece_after)
    # Same predicted classes: temperature never changes the argmax.
    accuracy = evaluate(before, test_y, DIGIT_CLASSES).accuracy
    assert evaluate(after, test_y, DIGIT_CLASSES).accuracy == accuracy
    fit = model.metrics["calibration"]
    assert fit["after"]["nll"] < fit["before"]["nll"]


def test_calibrating_on_files_matches_calibrating_on_arrays(mnist_pngs, mnist_model):
    paths, images, labels = mnist_pngs
    names = [str(y) for y in labels]
    try:
        from_files = calibrate(mnist_model, paths, names, num_workers=0)
        from_arrays = calibrate_arrays(mnist_model, images, labels)
    finally:
        mnist_model.temperature = 1.0
        mnist_model.metrics.pop("calibration", None)
    assert from_files == from_arrays


def test_unknown_label_is_refused(mnist_pngs, mnist_model):
    paths, _, _ = mnist_pngs
    with pytest.raises(ValueError, match="unknown label 'x'"):
        calibrate(mnist_model, paths[:2], ["1", "x"])
