"""How often people err, measured on items that several people answered, as an upper bound.

The bound feeds two places: ``reference_error`` (rho: the chance that a human reference repeats
the model's wrong label) in the threshold and audit bounds, and ``human_error`` (the residual
error of delivered human labels) in the dataset certificate. Either may also be given as a plain
number; a number is taken as known, so no alpha is charged for it.

Alpha budget: the bound returned here holds with probability >= 1 - ``alpha``. A bound built on
it at level alpha1 then holds with probability >= 1 - alpha1 - alpha (union bound); every
function that accepts an :class:`AnnotatorErrorBound` subtracts its ``alpha`` from its own
``confidence`` and reports both parts.

Vocabulary: ``answers`` [N, M] class indices, NaN where annotator (or answer slot) j gave none;
``model_labels`` [N] the model's label for each item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labeling.bounds import error_upper_bound


@dataclass(frozen=True)
class AnnotatorErrorBound:
    """An upper bound ``rate_ub`` on an annotator error rate, holding with prob. 1 - alpha."""

    rate_ub: float
    alpha: float
    n_items: int  # independent trials: one per item
    n_events: int  # trials where the single answer disagreed (or repeated the model's error)
    measured: str  # what the rate is: see annotator_error_bound

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def annotator_error_bound(
    answers: np.ndarray,
    *,
    confidence: float = 0.95,
    model_labels: np.ndarray | None = None,
) -> AnnotatorErrorBound:
    """Clopper-Pearson upper bound on how often a single person's answer is wrong.

    One trial per item with 2+ answers (answers on one item are not independent; items are):
    the item's first answer (lowest column with an answer) against the plurality of the other
    answers. Without ``model_labels`` the event is "first answer != the others' plurality";
    an item whose other answers tie counts as a disagreement (conservative).

    With ``model_labels``, the rate measured is rho itself, from the item's first two answers
    only: the trials are the items whose second answer differs from the model's label (the
    model is wrong by that person's verdict), and the event is "the first answer equals the
    model's label". Later answers are left out because they are asked only where the first two
    differ: with them, an event (the first person repeats the model, the second does not) also
    needed a third person to side with the second, while a non-event needed nobody, and people
    who each repeat a wrong model label at rate p measured p / (1 + p) (a review's Monte Carlo:
    the bound fell below p in 58% of trials at p = 0.3, claimed 1 - ``confidence``). Where the
    model is right and the second person erred, the trial counts the first person's right
    answer as an event: that only makes the bound larger. (Tried and taken back, 2026-12-07:
    a third person asked wherever the second answer differs from the model's, and the trials
    the checks whose second and third agree on another label. Unbiased where everyone is as
    easily fooled on every image, and half as wide in the crowd benchmark, but a trial then
    needs two people not fooled, which weighs each image by (1 - rho_i)^2, not 1 - rho_i:
    where rho varies by image (a Beta(1, 4) world, mean 0.2) a review's Monte Carlo had its
    bound under the mean in 23% of runs, this rule's in 8%, and with the second person's slips
    this rule's in none.)

    Assumptions, each of which the caller must make true or accept:
    - the multiply-answered items are a random sample of the items the bound is used for, chosen
      for overlap *before* anyone answered. Items sent to a second person because the first
      disagreed with the model are a biased sample, and they hide exactly the event rho counts
      (a first answer that repeats the model is never sent on).
    - people err independently on an item: two people agreeing on the same wrong label is rarer
      than one of them erring. Otherwise disagreement undercounts error.
    - for rho: the chance that a person repeats the model's wrong label is about the same on
      every item the model gets wrong. Where some images fool everyone alike and others
      nobody, the second person's disagreement picks the images that fool fewer people, and
      the rate measured is too low (the review measured 0.13-0.27 where 0.21-0.45 was needed
      in such a world); only answers checked against known truth (gold items) measure it
      then, and those are not built.
    - single-answer rate as rho (no ``model_labels``): conservative for an adjudicated (consensus)
      reference, whose residual error is lower than one person's, but valid for rho only if
      people do not err more where the model errs. They usually do (errors concentrate on hard
      items and on people who anchor on the shown pre-annotation); then measure rho directly
      with ``model_labels``, which gives fewer trials and so a wider, honest bound.
    - as ``human_error`` in a certificate: a bound on a single person's error rate, conservative
      for labels that were adjudicated.

    Returns the bound with its ``alpha`` = 1 - ``confidence``; spend that alpha in the budget of
    any bound that uses it (see the module docstring)."""
    answers, model_labels = _check_answers(answers, model_labels, confidence)
    trials = events = 0
    for i, row in enumerate(answers):
        given = row[~np.isnan(row)].astype(int)
        if len(given) < 2:
            continue
        first = given[0]
        if model_labels is None:
            consensus = _plurality(given[1:])
            trials += 1
            events += int(consensus is None or first != consensus)
        elif given[1] != model_labels[i]:  # the second answer only (the docstring says why)
            trials += 1
            events += int(first == model_labels[i])
    measured = ("single answer vs the others' plurality" if model_labels is None else
                "first answer repeats the model's label where the second says it is wrong")
    if trials == 0:
        raise ValueError("no usable items: need items with 2+ answers"
                         + ("" if model_labels is None else
                            " whose second answer is not the model's label"))
    return AnnotatorErrorBound(error_upper_bound(events, trials, confidence=confidence),
                               round(1.0 - confidence, 12), trials, events, measured)


def as_rate_and_alpha(value: float | AnnotatorErrorBound, name: str) -> tuple[float, float]:
    """(rate, alpha) from a number (known: alpha 0) or a measured bound; checks 0 <= rate < 1."""
    rate, alpha = ((value.rate_ub, value.alpha) if isinstance(value, AnnotatorErrorBound)
                   else (float(value), 0.0))
    if not 0 <= rate < 1:
        raise ValueError(f"{name} must be in [0, 1) (an upper bound on a rate; the bounds "
                         f"divide by 1 - {name}), got {rate}")
    return rate, alpha


def split_alpha(confidence: float, **bounds: float | AnnotatorErrorBound) -> dict[str, float]:
    """Union-bound budget: the alpha each named bound spends, and what is ``left`` for the
    caller's own test out of 1 - ``confidence``. A number spends nothing (it is taken as known);
    the same bound object passed under two names spends its alpha once (one event: it holds or
    not). Raises ValueError when the measured bounds leave nothing."""
    spent, seen = {}, set()
    for name, value in bounds.items():
        once = isinstance(value, AnnotatorErrorBound) and id(value) not in seen
        spent[name] = value.alpha if once else 0.0
        seen.add(id(value))
    total = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floating point
    left = round(total - sum(spent.values()), 12)
    if left <= 0:
        raise ValueError(f"the measured bounds ({', '.join(spent)}) spend alpha="
                         f"{sum(spent.values()):.3g}, all of the {1 - confidence:.3g} that "
                         f"confidence={confidence} allows; measure them at a higher confidence "
                         "(e.g. 0.99) or lower this confidence")
    return {**spent, "left": left, "total": total}


def _plurality(values: np.ndarray) -> int | None:
    counts = np.bincount(values)
    top = np.flatnonzero(counts == counts.max())
    return int(top[0]) if len(top) == 1 else None


def _check_answers(answers, model_labels, confidence):
    answers = np.asarray(answers, dtype=np.float64)
    if answers.ndim != 2:
        raise ValueError(f"answers must be [N, M] (NaN where no answer), got {answers.shape}")
    given = answers[~np.isnan(answers)]
    if np.any(given < 0) or np.any(given != np.round(given)):
        raise ValueError("answers must be class indices (integers >= 0) or NaN for no answer")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    if model_labels is not None:
        model_labels = np.asarray(model_labels)
        if model_labels.shape != (answers.shape[0],):
            raise ValueError(f"model_labels must be [{answers.shape[0]}] (one per row of "
                             f"answers), got {model_labels.shape}")
        model_labels = model_labels.astype(int)
    return answers, model_labels
