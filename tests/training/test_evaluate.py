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


def test_classes_without_items_neither_have_a_recall_nor_lower_macro_f1():
    # A perfect model on the classes the items show scored a macro F1 of 1/3 here.
    report = evaluate(np.array([[0.9, 0.05, 0.05]]), np.array([0]), CLASSES)
    assert report.per_class_recall == {"cat": 1.0} and report.macro_f1 == 1.0


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


def test_agrees_with_scikit_learn_including_classes_never_predicted():
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=300)
    probs[:, 5] = 0  # class 5 is never predicted...
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 5, size=300)  # ...and never true; class 4 is true but rare below
    labels[labels == 4] = rng.integers(0, 4, size=(labels == 4).sum())
    labels[:3] = 4
    classes = [f"c{i}" for i in range(6)]
    report = evaluate(probs, labels, classes)
    pred, k = probs.argmax(1), list(range(6))
    assert report.macro_f1 == pytest.approx(
        f1_score(labels, pred, average="macro", zero_division=0)
    )
    assert list(report.per_class_recall) == classes[:5]  # c5 is never true
    assert list(report.per_class_recall.values()) == pytest.approx(
        recall_score(labels, pred, labels=k[:5], average=None, zero_division=0)
    )
    assert report.confusion == confusion_matrix(labels, pred, labels=k).tolist()
