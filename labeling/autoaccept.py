"""The auto-accept decision: per-class confidence thresholds that meet a target precision.

Threshold-based auto-labeling (as in SageMaker Ground Truth; Vishwakarma et al., NeurIPS 2023):
on a *random* human-labeled validation sample, for each class k take the items the model
predicts as k, sorted by confidence. For a candidate threshold t, the validation items of class
k at or above t are n, of which e disagree with the reference. A threshold passes if the upper
confidence bound on the error rate is at most 1 - target_precision, and n >= min_points.

Thresholds are tested strictest first and the scan stops at the first failure (fixed-sequence
testing, Learn then Test; see labeling/fixed_sequence.py, which also has the fallback scan from
several starts that the image rule uses). The class's threshold is the loosest
one before that failure, so the bound holds for it at the stated level; keeping the loosest
of all passing thresholds, as this module once did, is multiple testing and overstates it. A
class where the first tested threshold fails gets no threshold: nothing is auto-accepted for it.

Why an upper bound and not the raw rate: with few validation points above a threshold the raw
error is noisy and the threshold comes out too low; the bound protects the target.

Fallible references (``reference_error``): the bound is CP_UB(e, n) / (1 - rho), where rho
bounds the chance that the reference repeats the model's wrong label (labeling/bounds.py). A
measured rho (labeling.annotators.annotator_error_bound) comes with its own alpha; it is taken
out of ``confidence``, so ``confidence`` stays the level of the whole statement, and the result
reports both parts.

Several classes tested at once: with ``split_budget`` (the default), each class is tested at
level alpha / K (Bonferroni), so the bound holds for all classes at once with probability
>= confidence. Without it the guarantee is per class.

A per-class guarantee is expensive: with no error at all, certifying 2% needs about 150
validation items of each class above its threshold (260 with the Bonferroni split), i.e.
thousands of random human labels for ten classes. ``pooled_thresholds`` is the cheaper
guarantee: one threshold for every class, chosen so that the bound holds for the precision of
*all* accepted labels together (the validation sample is random, so its class mix is the
pool's); a class with fewer than ``min_points`` validation items above the threshold gets none.

Vocabulary: ``pred_probs`` [N, K]; ``labels`` [N] class indices (the human reference); K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labeling.annotators import AnnotatorErrorBound, as_rate_and_alpha, split_alpha
from labeling.bounds import error_upper_bound, precision_interval
from labeling.fixed_sequence import fallback_scan, fixed_sequence_scan, points_needed

__all__ = ["ClassThreshold", "Thresholds", "accept_confident", "check_predictions",
           "choose_thresholds", "error_upper_bound", "pooled_thresholds", "precision_interval"]


@dataclass(frozen=True)
class ClassThreshold:
    """The decision for one class. ``threshold`` None means: accept nothing of this class."""

    label: str
    threshold: float | None
    n_validation: int  # validation items predicted as this class at or above the threshold
    errors: int  # of those, how many disagree with the (possibly fallible) reference
    error_upper_bound: float | None
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Thresholds:
    per_class: tuple[ClassThreshold, ...]
    target_precision: float
    confidence: float  # of the whole statement: threshold test and reference-error bound
    reference_error: float = 0.0  # rho used in the bound
    reference_alpha: float = 0.0  # alpha spent on measuring rho (0: rho taken as known)
    # Per-class thresholds tested without the Bonferroni split: each holds at the confidence
    # alone, all of them together only at 1 - K alpha (the certificate counts that).
    each_alone: bool = False

    def as_array(self) -> np.ndarray:
        """Thresholds [K]; +inf where a class has none."""
        return np.array([np.inf if c.threshold is None else c.threshold for c in self.per_class])

    def to_dict(self) -> dict:
        alpha = round(1.0 - self.confidence, 12)
        return {"target_precision": self.target_precision, "confidence": self.confidence,
                "reference_error": self.reference_error,
                "alpha": {"thresholds": round(alpha - self.reference_alpha, 12),
                          "reference_error": self.reference_alpha, "total": alpha},
                "per_class": [c.to_dict() for c in self.per_class],
                "each_alone": self.each_alone}


def choose_thresholds(
    pred_probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str] | tuple[str, ...],
    *,
    target_precision: float = 0.98,
    confidence: float = 0.95,
    min_points: int = 25,
    split_budget: bool = True,
    reference_error: float | AnnotatorErrorBound = 0.0,
) -> Thresholds:
    """Per-class thresholds on a random validation sample (see the module docstring).

    Guarantee: with probability >= ``confidence``, every class given a threshold has an error
    rate <= 1 - ``target_precision`` among the pool's items it predicts at or above that
    threshold (per class alone if not ``split_budget``). Assumes the validation items are a
    random sample of the pool (not actively chosen) and that ``reference_error`` bounds rho;
    ``reference_error`` = 0 assumes the reference labels are right. Alpha: 1 - confidence =
    (thresholds' alpha) + (alpha of a measured ``reference_error``), both in the result.

    ``min_points`` is also where a class's scan may start (it starts no earlier than the count
    at which zero errors could pass): raise it to a few hundred when the top of the ranking is
    not error-free, since one early error otherwise ends the scan with no threshold."""
    rho, _ = as_rate_and_alpha(reference_error, "reference_error")
    pred_probs, labels = _check(pred_probs, labels, classes, target_precision, confidence,
                                min_points)
    alpha = split_alpha(confidence, reference_error=reference_error)
    level = 1 - alpha["left"] / (len(classes) if split_budget else 1)
    max_error = 1.0 - target_precision
    predicted = pred_probs.argmax(axis=1)
    conf = pred_probs.max(axis=1)
    out = [
        _class_threshold(conf[predicted == k], labels[predicted == k] != k, name,
                         level=level, max_error=max_error, min_points=min_points, rho=rho)
        for k, name in enumerate(classes)
    ]
    return Thresholds(tuple(out), target_precision, confidence, rho, alpha["reference_error"],
                      each_alone=not split_budget and len(classes) > 1)


def planning_rate(max_error: float, rho: float) -> float:
    """The rate of wrong references the scan plans its start for (never counted in a bound):
    none when people are taken to be right, else a quarter of the error allowed."""
    return 0.0 if rho == 0 else max_error / 4


def _class_threshold(conf, wrong, name, *, level, max_error, min_points, rho) -> ClassThreshold:
    if len(conf) < min_points:
        return ClassThreshold(name, None, int(len(conf)), int(wrong.sum()), None,
                              f"too little validation data: {len(conf)} < {min_points} items")
    order = np.argsort(-conf, kind="stable")
    conf, wrong = conf[order], wrong[order]
    errors = np.cumsum(wrong)
    # A threshold must include every tie at its value, so only cut between distinct values.
    cut = np.append(conf[1:] != conf[:-1], True)
    m = np.arange(1, len(conf) + 1)[cut]
    expected = np.cumsum(1.0 - conf)[cut] + planning_rate(max_error, rho) * m
    scan = fixed_sequence_scan(m, errors[cut], max_error, confidence=level,
                               reference_error=rho, min_points=min_points, expected=expected)
    ucb_all = float(scan.bounds[-1]) if scan.start is not None else _bound(
        int(errors[-1]), len(conf), level, rho)
    if scan.start is None:
        need = points_needed(max_error, confidence=level, reference_error=rho)
        return ClassThreshold(name, None, int(len(conf)), int(errors[-1]), ucb_all,
                              f"too little validation data: {len(conf)} items cannot "
                              f"certify {max_error:.3f} even with no error (needs {need})")
    if scan.chosen is None:
        first = scan.start
        return ClassThreshold(name, None, int(len(conf)), int(errors[-1]), ucb_all,
                              f"error bound never reached {max_error:.3f} before the scan "
                              f"stopped: the first tested cut ({m[first]} items, "
                              f"{errors[cut][first]} wrong) has bound {scan.bounds[first]:.3f}")
    i = scan.chosen
    return ClassThreshold(name, float(conf[m[i] - 1]), int(m[i]), int(errors[cut][i]),
                          float(scan.bounds[i]), "ok")


def _bound(errors, n, level, rho) -> float:
    return min(1.0, error_upper_bound(errors, n, confidence=level) / (1.0 - rho))


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
    reference_error: float | AnnotatorErrorBound = 0.0,
) -> Thresholds:
    """One threshold for all classes, bounding the error of all accepted labels together
    (see the module docstring). Classes thin above it get no threshold.

    Guarantee: with probability >= ``confidence``, the accepted labels together (every class
    with >= ``min_points`` validation items above the threshold) have an error rate
    <= 1 - ``target_precision``; a single class may be worse. Same assumptions and alpha split
    as :func:`choose_thresholds`."""
    rho, _ = as_rate_and_alpha(reference_error, "reference_error")
    pred_probs, labels = _check(pred_probs, labels, classes, target_precision, confidence,
                                min_points)
    alpha = split_alpha(confidence, reference_error=reference_error)
    level = 1 - alpha["left"]
    max_error = 1.0 - target_precision
    predicted = pred_probs.argmax(axis=1)
    conf = pred_probs.max(axis=1)
    wrong = predicted != labels
    best_t, pooled_ucb = pooled_cut(conf, predicted, wrong, len(classes), level=level,
                                     max_error=max_error, min_points=min_points, rho=rho)
    out = []
    for k, name in enumerate(classes):
        mine = predicted == k
        if best_t is None:
            n_all, e_all = int(mine.sum()), int((mine & wrong).sum())
            out.append(ClassThreshold(name, None, n_all, e_all, None,
                                      "pooled error bound never reached "
                                      f"{max_error:.3f} at any threshold before the scan "
                                      "stopped"))
            continue
        above = mine & (conf >= best_t)
        n, e = int(above.sum()), int((above & wrong).sum())
        if n < min_points:
            out.append(ClassThreshold(name, None, n, e, None,
                                      f"too little validation data: {n} < {min_points} items"))
        else:  # the bound is the pooled one: over every accepted class together
            out.append(ClassThreshold(name, best_t, n, e, pooled_ucb, "ok (pooled bound)"))
    return Thresholds(tuple(out), target_precision, confidence, rho, alpha["reference_error"])


def pooled_cut(conf, predicted, wrong, n_classes, *, level, max_error, min_points, rho,
               tolerate: int | Sequence[int] | None = None):
    """(threshold, bound) of the loosest cut that passed (one scan: the last before its first
    failure); (None, None) if none.
    Trusts its inputs: ``conf`` [N] in [0, 1], ``predicted`` [N] class indices (all 0 for one
    decision per image), ``wrong`` [N] bool, ``level`` the scan's own confidence. The scan's
    start is planned from the confidences, or, when ``tolerate`` is given (0 included), fixed
    from the counts: the first cut where that many disagreements pass; several counts run the
    fallback scan from each of their starts (``labeling.fixed_sequence``)."""
    if len(conf) == 0:
        return None, None
    order = np.argsort(-conf, kind="stable")
    conf, predicted, wrong = conf[order], predicted[order], wrong[order]
    one_hot = np.eye(n_classes, dtype=np.int64)[predicted]  # [N, K]
    count = np.cumsum(one_hot, axis=0)  # items of each class at or above each position
    errs = np.cumsum(one_hot * wrong[:, None], axis=0)
    eligible = count >= min_points  # depends on confidences only, never on correctness
    cut = np.append(conf[1:] != conf[:-1], True)
    n = (count * eligible).sum(axis=1)[cut]
    e = (errs * eligible).sum(axis=1)[cut]
    expected = None
    if tolerate is None:  # the start is planned from the confidences
        doubt = np.cumsum(one_hot * (1.0 - conf)[:, None], axis=0)
        expected = (doubt * eligible).sum(axis=1)[cut] + planning_rate(max_error, rho) * n
    if isinstance(tolerate, Sequence):
        scan = fallback_scan(n, e, max_error, confidence=level, reference_error=rho,
                             tolerates=tolerate)
    else:
        scan = fixed_sequence_scan(n, e, max_error, confidence=level, reference_error=rho,
                                   min_points=1, expected=expected, tolerate=tolerate or 0)
    if scan.chosen is None:
        return None, None
    return float(conf[cut][scan.chosen]), float(scan.bounds[scan.chosen])


def check_predictions(pred_probs, labels, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate validation predictions: ``pred_probs`` [N, K] probabilities in [0, 1] and
    ``labels`` [N] class indices; returns them as float and int arrays, or raises ValueError
    saying what is wrong."""
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    labels = np.asarray(labels)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != n_classes:
        raise ValueError(f"pred_probs must be [N, {n_classes}], got {pred_probs.shape}")
    if pred_probs.size and not (np.all(pred_probs >= 0) and np.all(pred_probs <= 1)):
        raise ValueError("pred_probs must be probabilities in [0, 1]; got values from "
                         f"{np.nanmin(pred_probs):.3g} to {np.nanmax(pred_probs):.3g}"
                         " (NaN counts as out of range; apply softmax to logits first)")
    if labels.shape != (pred_probs.shape[0],):
        raise ValueError(f"labels must be [{pred_probs.shape[0]}] (one per row of pred_probs),"
                         f" got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    return pred_probs, labels.astype(int)


def _check(pred_probs, labels, classes, target_precision, confidence, min_points):
    pred_probs, labels = check_predictions(pred_probs, labels, len(classes))
    if not 0.5 < target_precision < 1 or not 0.5 < confidence < 1:
        raise ValueError("target_precision and confidence must be in (0.5, 1)")
    if min_points < 1:
        raise ValueError("min_points must be >= 1")
    return pred_probs, labels
