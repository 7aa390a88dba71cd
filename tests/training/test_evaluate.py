"""Evaluation metrics on small hand-checked cases and real predictions."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import evaluate, expected_calibration_error

CLASSES = ["cat", "dog", "bird"]


def test_report_on_a_hand_checked_case():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1, 1, 2])  # the third item (a dog) is called a cat
    report = evaluate(probs, labels, CLASSES)
    assert report.n == 4
    assert report.accuracy == 0.75
    assert report.per_class_recall == {"cat": 1.0, "dog": 0.5, "bird": 1.0}
    assert report.confusion == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    # F1: cat 2/3, dog 2/3, bird 1.
    assert report.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert report.to_dict()["per_class_recall"]["dog"] == 0.5


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)  # 80% right at 80% confidence
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_ece_is_the_gap_for_an_overconfident_model():
    probs = np.tile([1.0, 0.0], (10, 1))
    labels = np.array([0] * 5 + [1] * 5)  # certain, but right half the time
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5)


def test_class_without_items_has_zero_recall():
    report = evaluate(np.array([[0.9, 0.05, 0.05]]), np.array([0]), CLASSES)
    assert report.per_class_recall["bird"] == 0.0


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.ones((3, 3)) / 3, np.array([0, 1]), "3 rows of probs but 2 labels"),
        (np.ones((2, 2)) / 2, np.array([0, 1]), "2 columns but there are 3 classes"),
        (np.ones((2, 3)) / 3, np.array([0, 3]), "out of range"),
    ],
)
def test_mismatched_inputs_are_refused(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        evaluate(probs, labels, CLASSES)
