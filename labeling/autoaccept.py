"""The auto-accept decision: per-class confidence thresholds that meet a target precision.

Threshold-based auto-labeling (as in SageMaker Ground Truth; Vishwakarma et al., NeurIPS 2023):
on a *random* human-labeled validation sample, for each class k take the items the model
predicts as k, sorted by confidence. For a candidate threshold t, the validation items of class
k at or above t are n, of which e are wrong. We accept t only if the Clopper-Pearson upper
confidence bound on the error rate e/n is at most 1 - target_precision, and n >= min_points.
The lowest such t is the class's threshold; a class where none qualifies gets no threshold, so
nothing is auto-accepted for it.

Why an upper bound and not the raw rate: with few validation points above a threshold the raw
error is noisy and the threshold comes out too low; the bound protects the target.

Several classes tested at once: with ``split_budget`` (the default), each class is tested at
level (1 - confidence) / K (Bonferroni), so the bound holds for all classes at once with
probability >= confidence. Without it the guarantee is per class.

A per-class guarantee is expensive: with no error at all, certifying 2% needs about 150
validation items of each class above its threshold (260 with the Bonferroni split), i.e.
thousands of random human labels for ten classes. ``pooled_thresholds`` is the cheaper
guarantee: one threshold for every class, chosen so that the bound holds for the precision of
*all* accepted labels together (the validation sample is random, so its class mix is the
pool's); a class with fewer than ``min_points`` validation items above the threshold gets none.

Vocabulary: ``pred_probs`` [N, K]; ``labels`` [N] class indices; K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta


@dataclass(frozen=True)
class ClassThreshold:
    """The decision for one class. ``threshold`` None means: accept nothing of this class."""

    label: str
    threshold: float | None
    n_validation: int  # validation items predicted as this class at or above the threshold
    errors: int
    error_upper_bound: float | None
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Thresholds:
    per_class: tuple[ClassThreshold, ...]
    target_precision: float
    confidence: float

    def as_array(self) -> np.ndarray:
        """Thresholds [K]; +inf where a class has none."""
        return np.array([np.inf if c.threshold is None else c.threshold for c in self.per_class])

    def to_dict(self) -> dict:
        return {"target_precision": self.target_precision, "confidence": self.confidence,
                "per_class": [c.to_dict() for c in self.per_class]}


def error_upper_bound(errors: int, n: int, *, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate after ``errors`` in ``n``."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, n - errors))


def precision_interval(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a precision measured by auditing ``n`` items."""
    if n <= 0:
        return (0.0, 1.0)
    alpha = 1.0 - confidence
    lo = 0.0 if correct == 0 else float(beta.ppf(alpha / 2, correct, n - correct + 1))
    hi = 1.0 if correct == n else float(beta.ppf(1 - alpha / 2, correct + 1, n - correct))
    return (lo, hi)


def choose_thresholds(
    pred_probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str] | tuple[str, ...],
    *,
    target_precision: float = 0.98,
    confidence: float = 0.95,
    min_points: int = 25,
    split_budget: bool = True,
) -> Thresholds:
    """Per-class thresholds on a random validation sample (see the module docstring)."""
    pred_probs, labels = _check(pred_probs, labels, classes, target_precision, confidence,
                                min_points)
    level = 1 - (1 - confidence) / (len(classes) if split_budget else 1)
    max_error = 1.0 - target_precision
    predicted = pred_probs.argmax(axis=1)
    conf = pred_probs.max(axis=1)
    out = [
        _class_threshold(conf[predicted == k], labels[predicted == k] != k, name,
                         level=level, max_error=max_error, min_points=min_points)
        for k, name in enumerate(classes)
    ]
    return Thresholds(tuple(out), target_precision, confidence)


def _class_threshold(conf, wrong, name, *, level, max_error, min_points) -> ClassThreshold:
    if len(conf) < min_points:
        return ClassThreshold(name, None, int(len(conf)), int(wrong.sum()), None,
                              f"too little validation data: {len(conf)} < {min_points} items")
    order = np.argsort(-conf, kind="stable")
    conf, wrong = conf[order], wrong[order]
    errors = np.cumsum(wrong)
    best = None
    for m in range(min_points, len(conf) + 1):
        # A threshold must include every tie at its value, so only cut between distinct values.
        if m < len(conf) and conf[m] == conf[m - 1]:
            continue
        ucb = error_upper_bound(int(errors[m - 1]), m, confidence=level)
        if ucb <= max_error:
            best = (m, ucb)
    if best is None:
        ucb_all = error_upper_bound(int(errors[-1]), len(conf), confidence=level)
        return ClassThreshold(name, None, int(len(conf)), int(errors[-1]), ucb_all,
                              f"error bound never reached {max_error:.3f} "
                              f"(all {len(conf)} items: {ucb_all:.3f})")
    m, ucb = best
    return ClassThreshold(name, float(conf[m - 1]), m, int(errors[m - 1]), ucb, "ok")


def accept_confident(pred_probs: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Boolean mask [N]: predictions whose confidence meets their class's threshold."""
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != len(thresholds.per_class):
        raise ValueError(
            f"pred_probs must be [N, {len(thresholds.per_class)}], got {pred_probs.shape}")
    predicted = pred_probs.argmax(axis=1)
    return pred_probs.max(axis=1) >= thresholds.as_array()[predicted]


def pooled_thresholds(
    pred_probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str] | tuple[str, ...],
    *,
    target_precision: float = 0.98,
    confidence: float = 0.95,
    min_points: int = 10,
) -> Thresholds:
    """One threshold for all classes, bounding the error of all accepted labels together
    (see the module docstring). Classes thin above it get no threshold."""
    pred_probs, labels = _check(pred_probs, labels, classes, target_precision, confidence,
                                min_points)
    max_error = 1.0 - target_precision
    predicted = pred_probs.argmax(axis=1)
    conf = pred_probs.max(axis=1)
    wrong = predicted != labels
    best_t = pooled_ucb = None
    for t in np.unique(conf)[::-1]:  # high to low
        above = conf >= t
        eligible = np.bincount(predicted[above], minlength=len(classes)) >= min_points
        keep = above & eligible[predicted]
        n, e = int(keep.sum()), int(wrong[keep].sum())
        bound = error_upper_bound(e, n, confidence=confidence) if n else None
        if bound is not None and bound <= max_error:
            best_t, pooled_ucb = float(t), bound
    out = []
    for k, name in enumerate(classes):
        mine = predicted == k
        if best_t is None:
            n_all, e_all = int(mine.sum()), int((mine & wrong).sum())
            out.append(ClassThreshold(name, None, n_all, e_all, None,
                                      "pooled error bound never reached "
                                      f"{max_error:.3f} at any threshold"))
            continue
        above = mine & (conf >= best_t)
        n, e = int(above.sum()), int((above & wrong).sum())
        if n < min_points:
            out.append(ClassThreshold(name, None, n, e, None,
                                      f"too little validation data: {n} < {min_points} items"))
        else:  # the bound is the pooled one: over every accepted class together
            out.append(ClassThreshold(name, best_t, n, e, pooled_ucb, "ok (pooled bound)"))
    return Thresholds(tuple(out), target_precision, confidence)


def _check(pred_probs, labels, classes, target_precision, confidence, min_points):
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    labels = np.asarray(labels)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != len(classes):
        raise ValueError(f"pred_probs must be [N, {len(classes)}], got {pred_probs.shape}")
    if labels.shape != (pred_probs.shape[0],):
        raise ValueError(f"labels must be [{pred_probs.shape[0]}], got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must be class indices in 0..{len(classes) - 1}")
    if not 0.5 < target_precision < 1 or not 0.5 < confidence < 1:
        raise ValueError("target_precision and confidence must be in (0.5, 1)")
    if min_points < 1:
        raise ValueError("min_points must be >= 1")
    return pred_probs, labels.astype(int)
