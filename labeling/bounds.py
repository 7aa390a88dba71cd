"""Confidence bounds on error rates: Clopper-Pearson, and its version for fallible references.

Every bound here assumes that the ``n`` items it counts are independent draws from the
population the bound is about (a random validation sample, a uniform random audit). None of
them holds for items picked because they were uncertain, or because someone disagreed.

Fallible references: when the reference labels are human answers that may be wrong, the count
``k`` is the number of items where the reference disagrees with the model, not the number the
model got wrong. If ``rho`` bounds the chance that the reference repeats the model's label when
the model is wrong, every wrong item disagrees with probability at least ``1 - rho`` (an item the
model got right may disagree too, which only raises ``k``), so ``k`` stochastically dominates
Bin(n, e (1 - rho)) and ``CP_UB(k, n) / (1 - rho)`` bounds the model's error ``e``. The bound
never subtracts an estimated annotator error rate: when people err more where the model errs
(they do), subtracting undercovers badly (see tests/labeling/test_bounds.py).

Vocabulary: ``errors`` or ``disagreements`` k, out of ``n`` items; ``confidence`` = 1 - alpha.
"""

from __future__ import annotations

import numpy as np


def error_upper_bound(errors: int, n: int, *, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate after ``errors`` in ``n``.

    Holds with probability >= ``confidence`` when the ``n`` items are independent draws with
    one common error rate and the reference labels are right."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(_beta().ppf(confidence, errors + 1, n - errors))


def precision_interval(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a precision measured by auditing ``n`` items
    (independent uniform draws; reference labels assumed right)."""
    if n <= 0:
        return (0.0, 1.0)
    alpha = 1.0 - confidence
    beta = _beta()
    lo = 0.0 if correct == 0 else float(beta.ppf(alpha / 2, correct, n - correct + 1))
    hi = 1.0 if correct == n else float(beta.ppf(1 - alpha / 2, correct + 1, n - correct))
    return (lo, hi)


def noisy_error_upper_bound(
    disagreements: int, n: int, *, confidence: float, reference_error: float
) -> float:
    """Upper bound on the model's error rate when the reference labels may be wrong:
    ``min(1, CP_UB(disagreements, n, confidence) / (1 - reference_error))``.

    ``disagreements``: items among ``n`` where the reference differs from the model's label.
    ``reference_error``: an upper bound rho on P(reference == model's label | model wrong).
    Holds with probability >= ``confidence`` if rho really bounds that chance; when rho is
    itself a bound at level alpha2, the pair holds with probability >= confidence - alpha2
    (union bound). ``reference_error`` = 0 gives the plain Clopper-Pearson bound."""
    if not 0 <= reference_error < 1:
        raise ValueError(f"reference_error must be in [0, 1), got {reference_error}")
    bound = error_upper_bound(disagreements, n, confidence=confidence)
    return min(1.0, bound / (1.0 - reference_error))


def error_upper_bounds(errors: np.ndarray, n: np.ndarray, *, confidence: float) -> np.ndarray:
    """Vectorised :func:`error_upper_bound` over arrays of counts (used by threshold scans)."""
    errors = np.asarray(errors, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    out = np.ones(np.broadcast(errors, n).shape)
    ok = (n > 0) & (errors < n)
    e, m = np.broadcast_to(errors, out.shape)[ok], np.broadcast_to(n, out.shape)[ok]
    out[ok] = _beta().ppf(confidence, e + 1, m - e)
    return out


def _beta():
    # scipy.stats takes most of a second to import; `labelloop status` should not wait for it
    # when it has no bound to compute.
    from scipy.stats import beta

    return beta
