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

import math

import numpy as np


def error_upper_bound(errors: int, n: int, *, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound on an error rate after ``errors`` in ``n``.

    Holds with probability >= ``confidence`` when the ``n`` items are independent draws with
    one common error rate and the reference labels are right."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(_beta_ppf(confidence, errors + 1, n - errors))


def precision_interval(correct: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a precision measured by auditing ``n`` items
    (independent uniform draws; reference labels assumed right)."""
    if n <= 0:
        return (0.0, 1.0)
    alpha = 1.0 - confidence
    lo = 0.0 if correct == 0 else float(_beta_ppf(alpha / 2, correct, n - correct + 1))
    hi = 1.0 if correct == n else float(_beta_ppf(1 - alpha / 2, correct + 1, n - correct))
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
    out[ok] = _beta_ppf(confidence, e + 1, m - e)
    return out


# The share of a statement's alpha that its step from rates to the share wrong among the labels
# delivered spends (``wrong_count_upper_bound``): 95% rates make a 94% certificate. A fifth, not
# all of it: the quantile's figure grows slowly as its alpha shrinks (z 2.33 at 1%, 1.64 at
# 5%), the stated confidence falls fast.
SHARE_ALPHA = 0.2


def wrong_count_upper_bound(groups: list[tuple[int, float]], *, confidence: float) -> int:
    """Upper bound on how many of a set's labels are wrong, holding with probability >=
    ``confidence``, when each group (``n`` labels, ``rate``) has its labels wrong independently
    with probability at most ``rate``: the ``confidence`` quantile of the sum of the groups'
    binomial counts (exact; a rate above the true one only moves it up).

    A bound on an error *rate* says what to expect of new labels; the share wrong among the
    labels actually delivered also varies around it, by about sqrt(n p (1 - p)) labels. Where
    the rate sits just under its bound, that share exceeds the bound about half the time (1.9%
    with 3,000 labels: above 2% in a third of pools); this quantile covers it. Spend its alpha
    (1 - ``confidence``) beside the rates' own."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    sure, pmf = _count_pmf(groups)
    cdf = np.cumsum(pmf)
    return sure + int(np.searchsorted(cdf, confidence * cdf[-1] - 1e-12))


def _count_pmf(groups: list[tuple[int, float]]) -> tuple[int, np.ndarray]:
    """The wrong count of independent groups (``n`` labels, ``rate``): how many are wrong for
    sure (rate 1), and the distribution of the rest: the sum of binomials, each probability
    within about 3e-10 (absolute) of the exact one for a million labels (``betaln`` loses a
    little where one argument is large and the other small). A quantile read from it is the
    exact one except where the exact cdf lies within that of the level, which moves the
    level by as little."""
    sure, pmf = 0, np.ones(1)
    for n, rate in groups:
        if not 0 <= rate <= 1 or int(n) != n or n < 0:
            raise ValueError(f"each group is (count >= 0, rate in [0, 1]), got {(n, rate)}")
        if rate >= 1:
            sure += int(n)
        elif n and rate > 0:
            pmf = _convolve(pmf, _binomial_pmf(int(n), rate))
    return sure, pmf


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b: direct where that is quick (the usual few thousand entries), by FFT for long
    ones (a million labels at 30% span 300,000 counts), which leaves values of about -1e-17."""
    if len(a) * len(b) <= 10_000_000:
        return np.convolve(a, b)
    size = len(a) + len(b) - 1
    return np.clip(np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size), 0.0, None)


def _binomial_pmf(n: int, rate: float) -> np.ndarray:
    """P(Bin(n, rate) = k) for k up to where the rest of the tail is under 1e-15 (Bernstein's
    inequality: P(X >= n p + t) <= exp(-t^2 / (2 (n p + t / 3)))). From scipy.special, not
    scipy.stats: `labelloop status` computes the certificate with it, and scipy.stats and
    scipy.signal took 1.5 s of a 1.8 s status to import."""
    from scipy.special import betaln, xlog1py, xlogy  # noqa: PLC0415 - 0.2 s to import

    log_tail = math.log(1e15)
    mean = n * rate
    t = (2 * log_tail / 3 + math.sqrt((2 * log_tail / 3) ** 2 + 8 * log_tail * mean)) / 2
    k = np.arange(min(n, math.ceil(mean + t) + 1) + 1, dtype=np.float64)
    log_pmf = -math.log(n + 1) - betaln(n - k + 1, k + 1) + xlogy(k, rate) + xlog1py(n - k, -rate)
    return np.exp(log_pmf)


def _beta_ppf(q, a, b):
    """scipy.stats.beta.ppf(q, a, b), from scipy.special (the same function, betaincinv),
    which imports in a quarter of the time: `labelloop status` should not wait for
    scipy.stats."""
    from scipy.special import betaincinv  # noqa: PLC0415

    return betaincinv(a, b, q)


def rate_allowances(n: np.ndarray, allowed: np.ndarray, *, others: list[tuple[int, float]],
                    confidence: float) -> np.ndarray:
    """For each (``n``, ``allowed``): the largest rate r such that the ``confidence`` quantile
    of Bin(n, r) plus the ``others`` groups' counts (``wrong_count_upper_bound``'s groups) is
    at most ``allowed``; 0 where even r = 0 leaves it above (the others alone overrun), 1 where
    n labels all wrong still fit. Rounded down (to 1e-9; within 1e-12 of the exact rate before
    that), so that a rate at the allowance keeps the quantile within ``allowed``: the inverse
    of ``wrong_count_upper_bound`` in the one group's rate, for a rule that must keep the share
    wrong, not only the rate, within a budget. ``share_fits`` asks the same of one rate per row
    for a fraction of the cost."""
    n = np.asarray(n, dtype=np.int64)
    sure, other = _count_pmf(others)
    allowed = _room(n, allowed, sure)
    out = np.zeros(n.shape)
    fits_all = allowed - (len(other) - 1) >= n  # every label wrong and the others' worst
    out[fits_all] = 1.0
    todo = ~fits_all & (allowed >= 0)
    if len(other) == 1:  # the others never err: P(Bin(n, r) <= A) >= c has a closed form
        a, m = allowed[todo], n[todo]
        out[todo] = np.floor(_beta_ppf(1 - confidence, a + 1, m - a) * 1e9) / 1e9
        return out
    rows = np.flatnonzero(todo)
    for start in range(0, len(rows), 2048):  # in chunks: rows x the others' support in memory
        part = rows[start:start + 2048]
        out[part] = _bisect(n[part], allowed[part], other, confidence)
    return out


def share_fits(n: np.ndarray, allowed: np.ndarray, rates: np.ndarray, *,
               others: list[tuple[int, float]], confidence: float) -> np.ndarray:
    """Per row: whether the ``confidence`` quantile of Bin(n, rate) plus the ``others``
    groups' counts is at most ``allowed``, i.e. whether ``rate`` is within
    ``rate_allowances``' exact allowance (a rate that fits, any lower one fits too). One
    evaluation per row where the allowance takes a bisection: for rules that only need to know
    whether a rate fits."""
    n = np.asarray(n, dtype=np.int64)
    rates = np.asarray(rates, dtype=np.float64)
    if np.any((rates < 0) | (rates > 1)):
        raise ValueError("rates must be in [0, 1]")
    sure, other = _count_pmf(others)
    allowed = _room(n, allowed, sure)
    out = np.zeros(n.shape, bool)
    room = allowed >= 0
    out[room] = _fits(n[room], allowed[room], rates[room], other, confidence)
    return out


def _room(n: np.ndarray, allowed: np.ndarray, sure: int) -> np.ndarray:
    """Whole wrong labels allowed, less those wrong for sure among the others."""
    if np.any(n < 1):
        raise ValueError("each group needs n >= 1 labels")
    return np.floor(np.asarray(allowed, dtype=np.float64) + 1e-9).astype(np.int64) - sure


def _fits(n: np.ndarray, allowed: np.ndarray, rates: np.ndarray, other: np.ndarray,
          confidence: float) -> np.ndarray:
    """P(Bin(n, rate) + others <= allowed) >= confidence, per row (``other``: the others'
    count's pmf)."""
    from scipy.stats import binom  # noqa: PLC0415 - slow import (_beta_ppf)

    j = np.arange(len(other))[None, :]
    cdf = binom.cdf(allowed[:, None] - j, n[:, None], rates[:, None])
    return (cdf * other[None, :]).sum(axis=1) >= confidence


def _bisect(n: np.ndarray, allowed: np.ndarray, other: np.ndarray, confidence: float
            ) -> np.ndarray:
    """rate_allowances' rows where the others may err (``other``: their count's pmf)."""
    def fits(r):
        return _fits(n, allowed, r, other, confidence)

    # Below the rate that fits were the others never wrong (closed form); 1 where n labels
    # all wrong are within the allowance alone (then only the others' share can overrun).
    lo = np.zeros(len(n))
    hi = np.where(allowed >= n, 1.0,
                  np.minimum(1.0, _beta_ppf(1 - confidence, allowed + 1,
                                            np.maximum(1, n - allowed)) + 1e-12))
    everything = fits(np.ones(len(n)))
    lo[~fits(lo)] = -1.0  # the others alone overrun: no rate fits (0 below)
    for _ in range(40):  # bisection to 2^-40 of that; lo always fits
        mid = (lo + hi) / 2
        ok = fits(mid)
        lo, hi = np.where(ok & (lo >= 0), mid, lo), np.where(ok | (lo < 0), hi, mid)
    return np.where(everything, 1.0, np.floor(np.clip(lo, 0.0, 1.0) * 1e9) / 1e9)
