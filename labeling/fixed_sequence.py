"""Fixed-sequence testing of thresholds (Learn then Test, Angelopoulos et al. 2021).

Keeping the loosest of many thresholds that pass is multiple testing: each extra threshold is
another chance for the bound to pass by luck, and the one kept is the luckiest. Testing them in
an order fixed beforehand - strictest (highest confidence) first - and stopping at the first
failure keeps the family-wise error at the level of one test: the chosen threshold, and every
tested one stricter than it, meets the bound with probability >= ``confidence``. This is exact
for cuts fixed before the validation sample (the dataset rule's grid of candidate confidences);
for cuts at the validation items' own confidences, as the per-class and pooled rules use, each
test treats its cut as fixed, the same approximation the single-threshold bound always made.

The scan starts at the first cut where a pass is possible at all: at least ``min_points`` items
and few enough that even zero disagreements would pass. A stricter cut holds too few items to
ever pass, so testing it would only stop the scan at once. The start depends on the counts
``n`` and the limits ``max_error`` only, never on whether items were right, so no label is
looked at to choose it.

Starting there needs a run of zero disagreements at the very top, which one wrong reference
(people do err, and adjudication cannot fix two people who err alike) breaks for good. Given
``expected`` disagreements per cut, worked out without labels (from the model's confidences and
a planning rate of reference error), the scan starts instead at the cut most likely to pass:
the one maximising P(Binomial(n, expected / n) <= the most disagreements that still pass).
That cut, too, is chosen before any disagreement is counted, so the guarantee is unchanged.
Where no such plan can be trusted (an image's confidence from box scores overstates its chance
of being wrong about tenfold), ``tolerate`` fixes the start from the counts alone: the first
cut where that many disagreements would still pass.

Neither start is best everywhere: in six stored detection runs a confident miss among the
surest held-out images stopped the strict start for good in some rounds, and in others (a
crowd, whose measured rho multiplies every bound) the start that tolerates one came only after
the first disagreements had arrived. ``fallback_scan`` runs both: the error budget is split
between the starts, and a chain that passes up to the next start hands its share on (the
fallback procedure, Wiens 2003: a weighted Bonferroni test that stays valid whatever the
dependence between cuts).

Vocabulary: one entry per cut, strictest first: ``n`` validation items at or above the cut,
``disagreements`` among them (reference != model), ``max_error`` the largest error rate the
cut may have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from labeling.bounds import error_upper_bounds


@dataclass(frozen=True)
class Scan:
    """Where a fixed-sequence scan started, stopped and what it chose (indices into the cuts;
    None: no such cut). ``bounds`` [C]: the error bound at each cut, NaN where not tested (before
    the start; for ``fallback_scan``, also between a failure and the next start)."""

    start: int | None  # for fallback_scan: the first start
    stopped_at: int | None  # the first failing cut (fallback_scan: the last); None: none failed
    chosen: int | None  # the loosest cut that passed (one scan: the last before stopped_at)
    bounds: np.ndarray


def fixed_sequence_scan(
    n: np.ndarray,
    disagreements: np.ndarray,
    max_error: float | np.ndarray,
    *,
    confidence: float,
    reference_error: float = 0.0,
    min_points: int = 1,
    expected: np.ndarray | None = None,
    tolerate: int = 0,
) -> Scan:
    """Test cuts strictest first with the bound of :func:`labeling.bounds.noisy_error_upper_bound`
    and stop at the first failure (see the module docstring).

    Guarantee: with probability >= ``confidence``, no cut up to and including the chosen one has
    an error rate above its ``max_error`` - assuming the validation items are a random sample of
    the population the cuts are applied to, ``reference_error`` bounds rho, and ``max_error``
    does not depend on the validation labels. Inputs are trusted (callers validate).
    ``expected`` plans the start (module docstring); without it the start is the first cut where
    ``tolerate`` disagreements would pass, or where none would if no cut holds that many."""
    n = np.asarray(n, dtype=np.float64)
    max_error = np.broadcast_to(np.asarray(max_error, dtype=np.float64), n.shape)
    scale = 1.0 / (1.0 - reference_error)
    zero_passes = error_upper_bounds(np.zeros_like(n), n, confidence=confidence) * scale
    possible = np.flatnonzero((n >= min_points) & (zero_passes <= max_error))
    bounds = np.full(n.shape, np.nan)
    if len(possible) == 0:
        return Scan(None, None, None, bounds)
    if expected is not None:
        start = _likeliest_start(n, np.asarray(expected, dtype=np.float64), max_error,
                                 possible, confidence=confidence, scale=scale)
    else:
        room = _first_passing(n, tolerate, max_error, min_points, confidence, scale)
        start = room if room is not None else int(possible[0])
    tested = np.arange(start, len(n))
    tail = np.minimum(1.0, error_upper_bounds(
        np.asarray(disagreements)[tested], n[tested], confidence=confidence) * scale)
    bounds[tested] = tail
    failed = np.flatnonzero(tail > max_error[tested])
    if len(failed) == 0:
        return Scan(start, None, int(tested[-1]), bounds)
    stop = int(failed[0])
    return Scan(start, int(tested[stop]), int(tested[stop - 1]) if stop > 0 else None, bounds)


def scan_testable_cuts(
    n: np.ndarray,
    disagreements: np.ndarray,
    fits: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    confidence: float,
    reference_error: float = 0.0,
    min_points: int = 1,
    chunk: int = 1024,
) -> Scan:
    """A fixed-sequence scan over the testable cuts only: those with ``min_points`` items
    where zero disagreements would pass, a set fixed by counts and limits alone, so the
    guarantee is :func:`fixed_sequence_scan`'s; a cut where no record could pass cannot end the
    scan (labeling/dataset_accept.py says where that happens). It starts at the first testable
    cut and stops at the first failure.

    For limits that are costly to compute, each cut's limit is a test rather than a number:
    ``fits(cuts, rates)`` says, for the cut indices ``cuts``, whether the error rates ``rates``
    are within their limits (a rate that fits, any lower one fits too; the limit is the
    largest that fits). Each cut is asked at most twice (could zero disagreements pass; does
    its count pass), in chunks of ``chunk`` cuts, and none after the chunk of the first
    failure. ``bounds`` holds the tested cuts' bounds up to that failure."""
    n = np.asarray(n, dtype=np.float64)
    disagreements = np.asarray(disagreements, dtype=np.float64)
    scale = 1.0 / (1.0 - reference_error)
    bounds = np.full(n.shape, np.nan)
    start, passed = None, None
    for first in range(0, len(n), chunk):
        cuts = np.arange(first, min(first + chunk, len(n)))
        cuts = cuts[n[cuts] >= min_points]
        zero = error_upper_bounds(np.zeros(len(cuts)), n[cuts], confidence=confidence) * scale
        cuts = cuts[zero <= 1]
        cuts = cuts[fits(cuts, zero[zero <= 1])] if len(cuts) else cuts
        if len(cuts) == 0:
            continue
        start = int(cuts[0]) if start is None else start
        tail = np.minimum(1.0, error_upper_bounds(disagreements[cuts], n[cuts],
                                                  confidence=confidence) * scale)
        failed = np.flatnonzero(~fits(cuts, tail))
        if len(failed):
            stop = int(failed[0])
            bounds[cuts[:stop + 1]] = tail[:stop + 1]
            return Scan(start, int(cuts[stop]), int(cuts[stop - 1]) if stop else passed, bounds)
        bounds[cuts] = tail
        passed = int(cuts[-1])
    return Scan(start, None, passed, bounds)


def fallback_scan(
    n: np.ndarray,
    disagreements: np.ndarray,
    max_error: float | np.ndarray,
    *,
    confidence: float,
    reference_error: float = 0.0,
    min_points: int = 1,
    tolerates: Sequence[int] = (0, 1),
) -> Scan:
    """Fixed-sequence scans from several starts with 1 - ``confidence`` split equally between
    them (module docstring): the start for ``t`` in ``tolerates`` is the first cut where ``t``
    disagreements would pass at its share; while some start is out of every cut's reach, the
    most tolerant is dropped and the budget split among the others (counts only, never which
    items are wrong). Each cut is tested at its own start's share plus whatever the chain before
    it passed on; a failure ends that chain. ``chosen`` is the loosest cut that passed;
    ``bounds`` holds each tested cut's bound at the level it was tested at (NaN where none);
    ``stopped_at`` is the failure that ended the last chain. Guarantee: with probability >=
    ``confidence``, every cut that passed (all of them together) has an error rate at most its
    ``max_error``, under :func:`fixed_sequence_scan`'s assumptions; a cut that failed or was not
    tested, stricter than ``chosen`` or not, carries none."""
    n = np.asarray(n, dtype=np.float64)
    disagreements = np.asarray(disagreements, dtype=np.float64)
    max_error = np.broadcast_to(np.asarray(max_error, dtype=np.float64), n.shape)
    if len(tolerates) == 0:
        raise ValueError("tolerates needs at least one start")
    scale = 1.0 / (1.0 - reference_error)
    alpha = 1.0 - confidence
    share, starts, kept = 0.0, [], sorted(set(tolerates))
    while kept:
        share = alpha / len(kept)
        starts = [_first_passing(n, t, max_error, min_points, 1.0 - share, scale) for t in kept]
        if None not in starts:
            break
        kept = kept[:-1]  # the most tolerant start needs the most items: drop it first
    bounds = np.full(n.shape, np.nan)
    if not kept:
        return Scan(None, None, None, bounds)
    weight = np.zeros(n.shape)
    for s in starts:
        weight[s] += share
    level, chosen, stopped = 0.0, None, None
    for i in np.flatnonzero(np.cumsum(weight) > 0):
        level += weight[i]
        if level <= 0:  # a chain failed and no start is here to begin another
            continue
        bound = min(1.0, float(error_upper_bounds(disagreements[i], n[i],
                                                  confidence=1.0 - level)) * scale)
        bounds[i] = bound
        if bound <= max_error[i]:
            chosen = int(i)
        else:
            stopped, level = int(i), 0.0
    return Scan(min(starts), stopped, chosen, bounds)


def _first_passing(n, tolerate, max_error, min_points, confidence, scale) -> int | None:
    """The first cut with ``min_points`` items where ``tolerate`` disagreements would pass."""
    ok = np.flatnonzero((n >= min_points) & (error_upper_bounds(
        np.full(n.shape, float(tolerate)), n, confidence=confidence) * scale <= max_error))
    return int(ok[0]) if len(ok) else None


def points_needed(max_error: float, *, confidence: float, reference_error: float = 0.0) -> int:
    """Fewest validation items that can certify ``max_error`` (with zero disagreements):
    the smallest n with (1 - (1 - confidence)^(1/n)) / (1 - reference_error) <= max_error."""
    target = max_error * (1.0 - reference_error)
    if target >= 1:
        return 1
    n = max(1, math.ceil(math.log(1 - confidence) / math.log1p(-target)))
    # The closed form can be one off in floating point: settle it with the bound itself.
    while n > 1 and error_upper_bounds(0, n - 1, confidence=confidence) <= target:
        n -= 1
    while error_upper_bounds(0, n, confidence=confidence) > target:
        n += 1
    return n


def _likeliest_start(n, expected, max_error, possible, *, confidence, scale) -> int:
    """The possible cut with the highest chance of passing if disagreements arrive at the
    planned rate ``expected / n`` (module docstring). Ties go to the stricter cut."""
    from scipy.stats import binom  # noqa: PLC0415 - scipy takes a while to import

    sizes = n[possible]
    limit = max_error[possible]
    # The most disagreements that still pass at each cut: the bound grows with them, so a
    # binary search over [0, size] for all cuts at once (one bound per cut per halving; one
    # per count and cut took minutes on 15,000 validation items).
    lo, hi = np.zeros_like(sizes), sizes.copy()
    while np.any(lo < hi):
        active, mid = lo < hi, np.ceil((lo + hi) / 2)
        passes = error_upper_bounds(mid, sizes, confidence=confidence) * scale <= limit
        lo, hi = np.where(active & passes, mid, lo), np.where(active & ~passes, mid - 1, hi)
    rates = np.clip(expected[possible] / sizes, 0.0, 1.0)
    chances = binom.cdf(lo, sizes, rates)
    best, best_p = int(possible[0]), -1.0
    for c, chance in zip(possible.tolist(), chances.tolist(), strict=True):
        if chance > best_p + 1e-12:
            best, best_p = int(c), chance
    return best
