"""Auto-accept against an error budget for the whole delivered dataset (``[loop] target =
"dataset"``), instead of a precision every machine label must meet.

A per-label target (precision 98%) asks the machine labels alone to be 98% right, whatever the
rest of the set looks like. But what a user receives is one dataset, and a 2% budget on a pool
of 4,000 labels allows 80 wrong ones in total. Human labels that are better than the budget
leave slack: n_human * (epsilon - human_error) wrong labels nobody used. The dataset rule lets
the machine labels spend it. At a threshold t with n_acc(t) accepted candidates, the machine
labels may err at

    r_max(t) = (epsilon * (n_human + n_acc(t)) - n_human * human_error_ub) / n_acc(t)
             = epsilon + n_human * (epsilon - human_error_ub) / n_acc(t),

which is above epsilon whenever the human labels beat the budget (and below it when they do
not: then the machine labels must make up for them). Strict thresholds, with few accepted
labels, get the most slack per label; as t loosens the allowance falls towards epsilon.

That keeps the *rate* within the budget: what a label is wrong with. The labels delivered are
one draw, and the share wrong among them scatters around the rate by about sqrt(n p) labels:
at the allowance above, over the budget about half the time. The allowance the scan tests is
therefore the largest rate at which the wrong count's quantile (Bin(n_acc, r) plus the human
labels' Bin(n_human, human_error_ub), exact: ``labeling.bounds.rate_allowances``) stays
within epsilon * (n_human + n_acc), at a further alpha of ``SHARE_ALPHA`` x (1 - confidence),
the one the certificate spends on the same step (pipeline/certify.py): at 2% on 4,000 labels,
about 2.06% for 3,000 machine labels beside 1,000 right human ones, where the rate's was 2.67%.
Until 2026-12-07 the rule kept the rate, and the certificate read above the budget (2.5% for
2%); in a test where the machine labels erred at 2.4% everywhere, the share went over 2% in
15% of runs (tests/labeling/test_dataset_accept.py).

Thresholds are the candidates' distinct confidences, tested strictest first with the noisy
Clopper-Pearson bound on the validation items above each, stopping at the first failure
(labeling/fixed_sequence.py). The candidates' confidences carry no validation label, so the grid
and every r_max are fixed before any label is looked at.

Only the testable thresholds are in the sequence: those with at least min_points validation
items above them where zero disagreements would pass. While the human labels beat the budget,
r_max falls with every candidate accepted, but the count of validation items above a threshold
only grows when the threshold passes one; so below points_needed(epsilon) items there is a
stretch just before each new validation item (or across a range of confidences that holds
candidates and no validation item) where not even a perfect record passes. Tested, such a
threshold would end the scan for want of data, not for an error. At or above points_needed
(epsilon) items (and min_points) every threshold is testable while the human labels beat
the budget (r_max >= epsilon).
The sequence starts at the strictest testable threshold.
Which thresholds are testable depends on the validation items' confidences and the candidates',
never on a label. Strictly, the counts of all thresholds together are not independent of the
disagreements where confidence goes with being right (every threshold kept has a validation item
just above it); each test is exact given its own count, the same approximation as any
count-based start, and in simulation (the tests; a review's seven harder cases: 0.95-4.5% of
runs with a passed threshold over its allowance, nominal 5%) it held.
Until 2026-12-06 the scan started at points_needed(epsilon) items: a round of the
perfect-annotator loop with 152 validation items then had to certify nearly the whole pool in
one test, and three disagreements among the last of the 149 it needed ended it, where the
thresholds above them passed with none (scripts/bench_loop.py).

Vocabulary: ``candidate_conf`` [M] confidences (max probability) of the items the machine may
label; ``pred_probs`` [N, K], ``labels`` [N] the random validation sample and its references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.annotators import AnnotatorErrorBound, as_rate_and_alpha, split_alpha
from labeling.autoaccept import check_predictions
from labeling.bounds import SHARE_ALPHA, rate_allowances, share_fits, wrong_count_upper_bound
from labeling.fixed_sequence import scan_testable_cuts


@dataclass(frozen=True)
class DatasetThreshold:
    """Accept candidates with confidence >= ``threshold`` (None: accept none). ``wrong_ub`` bounds
    the share of wrong labels among the n_human + n_accepted delivered ones."""

    threshold: float | None
    n_accepted: int
    n_human: int
    n_validation: int  # validation items at or above the threshold
    disagreements: int  # of those, reference != model
    machine_error_ub: float | None  # the Clopper-Pearson bound at the cut (informative)
    human_error_ub: float
    wrong_ub: float | None
    epsilon: float
    confidence: float
    alpha: dict
    reason: str
    # The allowance the cut was tested against: what the scan guarantees the machine labels'
    # error rate stays within (the bound at the cut, chosen after seeing the answers, is not).
    machine_error_max: float | None = None

    def accept(self, candidate_conf: np.ndarray) -> np.ndarray:
        """Boolean mask [M]: candidates at or above the threshold."""
        conf = np.asarray(candidate_conf, dtype=np.float64)
        return np.zeros(conf.shape, bool) if self.threshold is None else conf >= self.threshold

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def choose_dataset_threshold(
    candidate_conf: np.ndarray,
    pred_probs: np.ndarray,
    labels: np.ndarray,
    *,
    n_human: int,
    human_error: float | AnnotatorErrorBound = 0.0,
    epsilon: float = 0.02,
    confidence: float = 0.95,
    reference_error: float | AnnotatorErrorBound = 0.0,
    min_points: int = 10,
) -> DatasetThreshold:
    """The loosest threshold (before the first failure, strictest first) at which the delivered
    set of ``n_human`` human labels plus the accepted candidates stays within ``epsilon``.

    Guarantee: with probability >= ``confidence``, the rate at which the accepted machine labels
    err is <= ``machine_error_max`` (the allowance the cut was tested against; the bound found
    at the cut, ``machine_error_ub``, is lower and not covered: the cut was chosen as the last
    before a failure) and the human labels' rate is <= ``human_error_ub``; with probability >=
    ``confidence`` - ``alpha["share"]``, the share of wrong labels among the delivered ones is
    <= ``wrong_ub`` <= ``epsilon`` (module docstring).
    Assumes the validation sample is random from the same distribution as the candidates
    (items not picked by uncertainty; candidates not thinned by an uncertainty strategy above
    the threshold), ``reference_error`` bounds rho, ``human_error`` bounds the human labels'
    error, each label is wrong independently at its kind's rate, and candidates not accepted
    are not delivered.
    Alpha: 1 - confidence = threshold test's alpha + each measured bound's, all in ``alpha``,
    with ``alpha["share"]`` beside them (the step from rates to the share).
    ``min_points``: fewest validation items above a threshold for it to be tested; so are only
    thresholds where zero disagreements would pass (module docstring)."""
    cand, pred_probs, labels = _check(candidate_conf, pred_probs, labels, n_human, epsilon,
                                      confidence, min_points)
    h, _ = as_rate_and_alpha(human_error, "human_error")
    rho, _ = as_rate_and_alpha(reference_error, "reference_error")
    alpha = split_alpha(confidence, human_error=human_error, reference_error=reference_error)
    alpha["thresholds"] = alpha.pop("left")
    grid, n_acc = _cuts(cand)
    order = np.argsort(-pred_probs.max(axis=1), kind="stable")
    val_conf = pred_probs.max(axis=1)[order]
    val_wrong = (pred_probs.argmax(axis=1) != labels)[order]
    n_val = np.searchsorted(-val_conf, -grid, side="right")  # validation items >= each cut
    k_val = np.concatenate([[0], np.cumsum(val_wrong)])[n_val]
    # The allowance keeps the share wrong among these very labels within the budget, not only
    # the rate a label errs at (module docstring): the quantile of the wrong count at the
    # rates, at the further alpha the certificate spends on that step (pipeline/certify.py).
    alpha["share"] = round(SHARE_ALPHA * (1 - confidence), 12)
    allowed = epsilon * (n_human + n_acc)
    people = [(int(n_human), h)]

    def r_max(cuts):  # each cut's allowance (a bisection: only where it is reported)
        cuts = np.atleast_1d(cuts)
        return rate_allowances(n_acc[cuts], allowed[cuts], others=people,
                               confidence=1 - alpha["share"])

    def fits(cuts, rates):
        # Is a rate within the cut's allowance: one evaluation, where the allowance itself
        # takes forty (10 s a round and more at 20,000 distinct confidences where people err).
        # The margin keeps the allowance reported for the chosen cut (rounded down to 1e-9) at
        # or above the bound that passed.
        return share_fits(n_acc[cuts], allowed[cuts], np.minimum(1.0, rates + 2e-9),
                          others=people, confidence=1 - alpha["share"])

    level = 1 - alpha["thresholds"]
    # The sequence: the testable thresholds only (module docstring), from counts and limits.
    scan = scan_testable_cuts(n_val, k_val, fits, confidence=level, reference_error=rho,
                              min_points=min_points)
    common = dict(n_human=int(n_human), human_error_ub=h, epsilon=epsilon,
                  confidence=confidence, alpha=alpha)
    if scan.chosen is None:
        why = (_none_testable(r_max, fits, len(grid), h, epsilon, n_human,
                              measured=isinstance(human_error, AnnotatorErrorBound))
               if scan.start is None else
               f"the first tested threshold ({grid[scan.start]:.4g}: {n_val[scan.start]} "
               f"validation items, {k_val[scan.start]} disagreeing) fails: bound "
               f"{scan.bounds[scan.start]:.3f} > allowance {r_max(scan.start)[0]:.3f}")
        wrong = (wrong_count_upper_bound([(int(n_human), h)], confidence=1 - alpha["share"])
                 / n_human if n_human else None)
        return DatasetThreshold(None, 0, n_validation=0, disagreements=0,
                                machine_error_ub=None, wrong_ub=wrong, reason=why, **common)
    i = scan.chosen
    # The guarantee is the allowance at the cut, not the bound found there; at it the share
    # wrong is within the budget (r_max's definition), here counted as the certificate counts.
    allowance = float(r_max(i)[0])
    wrong = wrong_count_upper_bound([(int(n_acc[i]), allowance), (int(n_human), h)],
                                    confidence=1 - alpha["share"]) / (n_human + n_acc[i])
    return DatasetThreshold(float(grid[i]), int(n_acc[i]), n_validation=int(n_val[i]),
                            disagreements=int(k_val[i]), machine_error_max=allowance,
                            machine_error_ub=float(scan.bounds[i]), wrong_ub=float(wrong),
                            reason="ok" if scan.stopped_at is None else
                            f"ok (scan stopped at {grid[scan.stopped_at]:.4g})", **common)


def _none_testable(r_max, fits, n_cuts: int, h: float, epsilon: float, n_human: int, *,
                   measured: bool) -> str:
    """Why no threshold could be tested: the people's part leaves the machine labels no room
    at all, or too little validation data above any threshold for the room there is.
    ``r_max(cuts)`` and ``fits(cuts, rates)`` as in choose_dataset_threshold."""
    loosest = n_cuts - 1
    # The people's room grows with the set (epsilon x every label): if a machine label that
    # is never wrong does not fit at the loosest cut, it fits at none.
    if n_human and not fits(np.array([loosest]), np.zeros(1))[0]:
        narrow = ("narrow the people's bound ([loop] double_check, more people per item)"
                  if measured else "lower the people's error assumed ([loop] human_error, else "
                  "reference_error)")
        return (f"the people's labels alone may be wrong at up to {h:.1%} (their bound), "
                f"against a budget of {epsilon:.1%} for the whole delivered set: no machine "
                f"label fits; {narrow} or raise [loop] dataset_error")
    ends = r_max(np.array([0, loosest]))
    return ("too little validation data above any threshold to certify its allowance (it is "
            f"{ends[0]:.3f} at the strictest threshold, {ends[1]:.3f} at the loosest)")


def _cuts(cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate confidences, strictest first, and how many candidates are >= each."""
    desc = np.sort(cand)[::-1]
    last_of_value = np.append(desc[1:] != desc[:-1], True)
    return desc[last_of_value], np.flatnonzero(last_of_value) + 1


def _check(candidate_conf, pred_probs, labels, n_human, epsilon, confidence, min_points):
    cand = np.asarray(candidate_conf, dtype=np.float64)
    if cand.ndim != 1 or cand.size == 0:
        raise ValueError(f"candidate_conf must be [M] with M >= 1, got shape {cand.shape}")
    if not (np.all(cand >= 0) and np.all(cand <= 1)):
        raise ValueError("candidate_conf must be confidences in [0, 1] (the max of each "
                         "candidate's pred_probs row)")
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be [N, K], got shape {pred_probs.shape}")
    pred_probs, labels = check_predictions(pred_probs, labels, pred_probs.shape[1])
    if int(n_human) != n_human or n_human < 0:
        raise ValueError(f"n_human must be a count (integer >= 0), got {n_human}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon (the error budget of the delivered set) must be in (0, 1), "
                         f"got {epsilon}")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if min_points < 1:
        raise ValueError("min_points must be >= 1")
    return cand, pred_probs, labels
