"""A certificate for the whole delivered dataset: how many of its labels can be wrong.

The delivered set is every item with a label, human or machine (unlabeled items are not
delivered and not counted). Its share of wrong labels is

    wrong = (n_machine * machine_error + n_human * human_error) / n_delivered

and the certificate bounds both rates from above:
- ``machine_error``: from a random audit, items drawn uniformly at random from the machine-labeled
  set and labeled by people; Clopper-Pearson on the audit's disagreements, divided by
  1 - rho when the people may repeat the machine's wrong label (labeling/bounds.py);
- ``human_error``: the residual error of the human labels, a known number or a measured bound
  (labeling.annotators.annotator_error_bound). PAC labels (Candes, Ilyas, Zrnic 2025) assume
  human labels are right; counting their error here is what keeps the figure honest.

Alpha: 1 - confidence is split by the union bound. A measured ``human_error`` or
``reference_error`` spends its own alpha; where people's labels are counted wrong at a rate
(``human_error`` > 0), the share wrong among those delivered varies around it, and
``SHARE_ALPHA`` (a fifth) of what is left goes to a quantile of that count
(``labeling.bounds.wrong_count_upper_bound``; the audit is a sample of the machine labels
delivered, so its bound is on their share already);
the audit's Clopper-Pearson bound gets the rest. If every bound holds (probability >=
confidence), the share is below ``wrong_ub``.

Not implemented: audits whose sampling probabilities differ (rounds that audited at different
rates, over machine-labeled sets that changed). Pooling those as one uniform sample is biased;
it needs inverse-propensity weights and a betting interval (Waudby-Smith and Ramdas, as PAC
labels do). Such input is refused rather than bounded wrongly.

Vocabulary: ``audit_correct`` [A] whether the machine label equalled the human reference;
``audit_probs`` [A] the probability with which each audited item was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.annotators import AnnotatorErrorBound, as_rate_and_alpha, split_alpha
from labeling.bounds import SHARE_ALPHA, noisy_error_upper_bound, wrong_count_upper_bound


@dataclass(frozen=True)
class DatasetCertificate:
    """Upper bound ``wrong_ub`` on the share of wrong labels in the delivered set, holding with
    probability >= ``confidence``; ``alpha`` says how 1 - confidence was spent."""

    wrong_ub: float
    confidence: float
    n_delivered: int
    n_human: int
    n_machine: int
    n_unlabeled: int
    machine_error_ub: float
    human_error_ub: float
    n_audited: int
    audit_disagreements: int
    alpha: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def certify_delivered(
    n_human: int,
    n_machine: int,
    n_unlabeled: int,
    audit_correct: np.ndarray,
    *,
    human_error: float | AnnotatorErrorBound = 0.0,
    reference_error: float | AnnotatorErrorBound = 0.0,
    confidence: float = 0.95,
    audit_probs: np.ndarray | None = None,
) -> DatasetCertificate:
    """Bound the share of wrong labels among the ``n_human + n_machine`` delivered labels.

    Guarantee: with probability >= ``confidence``, at most ``wrong_ub`` of the delivered labels
    are wrong. Assumes:
    - the audit is a uniform random sample of the machine labels now delivered (same model
      version, drawn with equal probability; ``audit_probs``, if given, must all be equal). Drawn
      with replacement, the audit's count is exactly binomial in the set's share of wrong
      labels; drawn without replacement from a set much larger than the audit, nearly so;
    - audited items that people have labeled count in ``n_human``, not in ``n_machine``;
    - ``human_error`` bounds the error rate of the delivered human labels, and
      ``reference_error`` bounds rho, the chance that the audit's human reference repeats the
      machine's wrong label (0: audit references are right). The same measured bound may be
      passed as both; its alpha is then spent once.
    Alpha: 1 - confidence = audit's alpha + alpha of each measured bound + the human share's
    quantile (where ``human_error`` > 0); all in ``alpha``."""
    counts = _check_counts(n_human, n_machine, n_unlabeled)
    correct = _check_audit(audit_correct, audit_probs, confidence)
    h, _ = as_rate_and_alpha(human_error, "human_error")
    rho, _ = as_rate_and_alpha(reference_error, "reference_error")
    alpha = split_alpha(confidence, human_error=human_error, reference_error=reference_error)
    left = alpha.pop("left")
    alpha["human_share"] = round(left * SHARE_ALPHA, 12) if h > 0 and counts[0] else 0.0
    alpha["audit"] = round(left - alpha["human_share"], 12)  # what the others leave
    disagree, n_audit = int((~correct).sum()), int(len(correct))
    machine_ub = (noisy_error_upper_bound(disagree, n_audit, confidence=1 - alpha["audit"],
                                          reference_error=rho) if counts[1] else 0.0)
    delivered = counts[0] + counts[1]
    human_wrong = (wrong_count_upper_bound([(counts[0], h)], confidence=1 - alpha["human_share"])
                   if alpha["human_share"] else 0)
    wrong_ub = min(1.0, (counts[1] * machine_ub + human_wrong) / delivered)
    return DatasetCertificate(float(wrong_ub), confidence, delivered, *counts, float(machine_ub),
                              h, n_audit, disagree, alpha)


def _check_counts(n_human, n_machine, n_unlabeled) -> tuple[int, int, int]:
    counts = (n_human, n_machine, n_unlabeled)
    if any(int(c) != c or c < 0 for c in counts):
        raise ValueError(f"n_human, n_machine, n_unlabeled must be counts (integers >= 0), "
                         f"got {counts}")
    if n_human + n_machine == 0:
        raise ValueError("nothing is delivered: n_human + n_machine is 0")
    return tuple(int(c) for c in counts)


def _check_audit(audit_correct, audit_probs, confidence) -> np.ndarray:
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    correct = np.asarray(audit_correct)
    if correct.ndim != 1 or (correct.size and not np.isin(correct, (0, 1)).all()):
        raise ValueError("audit_correct must be [A] booleans: did the machine label equal the "
                         f"human reference (got shape {correct.shape})")
    if audit_probs is not None:
        probs = np.asarray(audit_probs, dtype=np.float64)
        if probs.shape != correct.shape:
            raise ValueError(f"audit_probs must be [{len(correct)}] (one per audited item), "
                             f"got {probs.shape}")
        if probs.size and not (np.all(probs > 0) and np.all(probs <= 1)):
            raise ValueError("audit_probs must be sampling probabilities in (0, 1]")
        if probs.size and not np.allclose(probs, probs[0], rtol=1e-9, atol=0):
            raise ValueError(
                f"audit sampling probabilities differ ({probs.min():.3g} to {probs.max():.3g}):"
                " the Clopper-Pearson certificate needs one uniform audit of the machine labels"
                " delivered now. Certify with the audit of the current round only, or use an "
                "inverse-propensity-weighted bound (not implemented here)")
    return correct.astype(bool)
