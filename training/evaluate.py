"""Score predicted probabilities against true labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.labels import check_label_idx


@dataclass(frozen=True)
class EvalReport:
    """Accuracy, macro F1, recall per class name, confusion matrix (rows: true class, columns:
    predicted, in class order) and expected calibration error, over ``n`` items."""

    n: int
    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]
    confusion: list[list[int]]
    ece: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON, checkpoints and experiment trackers."""
        return asdict(self)


def evaluate(probs: np.ndarray, label_idx: np.ndarray, classes: Sequence[str]) -> EvalReport:
    """Score ``probs`` [N, K] (rows over ``classes``) against true class indices ``label_idx`` [N].

    Macro F1 averages over the classes that are true or predicted at least once, as
    scikit-learn's ``f1_score(average="macro", zero_division=0)`` does by default: a class the
    held-out items never show, and the model never predicts, says nothing of the model (over
    all classes, a perfect model on 3 of 6 classes scored 0.5). ``per_class_recall`` holds
    the classes that are true at least once (recall is undefined for the others).
    """
    probs = _check_probs(probs, label_idx)
    if probs.shape[1] != len(classes):
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(classes)} classes")
    y = check_label_idx(label_idx, len(classes))
    k = len(classes)
    pred = probs.argmax(1)
    # Computed here rather than with sklearn.metrics, whose import alone takes about a second.
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)  # rows: true class
    hits = np.diag(confusion).astype(np.float64)
    recall = _ratio(hits, confusion.sum(1))
    precision = _ratio(hits, confusion.sum(0))
    f1 = _ratio(2 * precision * recall, precision + recall)
    true, seen = confusion.sum(1) > 0, (confusion.sum(1) + confusion.sum(0)) > 0
    return EvalReport(
        n=len(y),
        accuracy=float(hits.sum() / len(y)),
        macro_f1=float(f1[seen].mean()) if seen.any() else 0.0,
        per_class_recall={c: float(r) for c, r, t in zip(classes, recall, true, strict=True)
                          if t},
        confusion=confusion.tolist(),
        ece=_ece(probs, y, 15),
    )


def expected_calibration_error(probs: np.ndarray, label_idx: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the gap between confidence (top probability) and accuracy, averaged over
    ``n_bins`` equal-width confidence bins weighted by their share of items (Guo et al. 2017).
    """
    probs = _check_probs(probs, label_idx)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return _ece(probs, check_label_idx(label_idx, probs.shape[1]), n_bins)


def _ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    confidence = probs.max(1)
    correct = probs.argmax(1) == y
    # Bins are (lo, hi]; confidence is never 0 for a probability row, so none is lost.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = 0.0
    for b in np.unique(bins):
        members = bins == b
        gap += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap / len(y))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def _check_probs(probs: np.ndarray, label_idx: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probs must be a non-empty [N, K] array, got shape {probs.shape}")
    if len(probs) != len(label_idx):
        raise ValueError(f"got {len(probs)} rows of probs but {len(label_idx)} labels")
    return probs
