"""Score predicted probabilities against true labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

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

    A class with no true items has recall 0.
    """
    probs = _check_probs(probs, label_idx)
    if probs.shape[1] != len(classes):
        raise ValueError(f"probs has {probs.shape[1]} columns but there are {len(classes)} classes")
    y = check_label_idx(label_idx, len(classes))
    pred = probs.argmax(1)
    k = list(range(len(classes)))
    recall = recall_score(y, pred, labels=k, average=None, zero_division=0)
    return EvalReport(
        n=len(y),
        accuracy=float((pred == y).mean()),
        macro_f1=float(f1_score(y, pred, labels=k, average="macro", zero_division=0)),
        per_class_recall={c: float(r) for c, r in zip(classes, recall, strict=True)},
        confusion=confusion_matrix(y, pred, labels=k).tolist(),
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


def _check_probs(probs: np.ndarray, label_idx: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probs must be a non-empty [N, K] array, got shape {probs.shape}")
    if len(probs) != len(label_idx):
        raise ValueError(f"got {len(probs)} rows of probs but {len(label_idx)} labels")
    return probs
