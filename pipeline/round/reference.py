"""How far the people can be trusted, as the accept step and the certificate use it: rho (the
chance that a reference repeats the model's wrong label; the bound on machine labels is
divided by 1 - rho) and the error of the delivered human labels. Either the config's number
(``[loop] reference_error``, taken as known) or measured (``"measured"``, here).

Measured, on the items two or more people answered among the random double and blind checks
(``pipeline.round.blind``; chosen by content hash before anyone answered). Two answers agree
when they are the same class, or for boxes when they match object for object (the rule the
accept step judges an image's machine boxes by; ``answer_groups``):
- rho: from each item's first two answers (both asked before either was seen; a third is
  asked only where they differ, and counting it biased rho low, ``annotator_error_bound``): the
  trials are the items whose second answer differs from the model's label, and the event is
  that the first person gave the model's label anyway. Only items whose
  first answer was given as the references are (blind when ``blind_references``, else shown
  the pre-annotation) count, with the model's label the one the choosing round predicted (for
  a blind item) or the one shown. Clopper-Pearson at a quarter of the loop's alpha.
- human error: the first answer against the others' plurality, on the double-checked items,
  each pushed as items like it are (held-out ones blind, others with the pre-annotation unless
  the model is unsure: ``[loop] preannotate_min_confidence``), so a random share of the
  delivered labels. Clopper-Pearson at a quarter of the alpha. A bound on one person's error,
  so conservative for adjudicated labels.
The thresholds get the other half of the alpha (union bound); the accept record has each part.

What it assumes, beyond the checks being random:
- people repeat a wrong model label no more often on the items the threshold accepts (where
  the model is confident) than on the checked ones: the blind checks are all training picks
  since 2026-12-06, most of them the uncertain items people are sent (a held-out item, random,
  seldom has the model wrong: 1 trial in 56 in a stored crowd run). Blind references cannot
  anchor on the model; what is left is two classes that look alike to people and to the
  model, and the benchmark's "bound held" column is where a failure of this would show;
- where the others' plurality is wrong instead, the trial counts against the first person,
  which only makes the bounds larger; two people erring the same way unprompted is rarer than
  one of them erring;
- rho is measured on first answers, but a held-out reference is adjudicated: it can also end
  at the model's wrong label when the first person did not give it and the next two both did
  (a 2-1 majority). That second route is not counted. With people erring independently and
  alike on every item it adds about rho squared (0.12 -> 0.134, the bound's factor 1.136 ->
  1.155); with people who confuse the same pair on the same images it adds more (a review's
  Monte Carlo of a crowd like the simulated one, errors on hard images and look-alike classes:
  0.073 -> 0.086, 2.5 times rho squared). Measuring it needs blind checks answered past the
  adjudication (four or five people on an item), which are not built. A reference that goes
  against the model by one vote gets more people (``labeling.studio.settle``), which can also
  end at the model's wrong label; that needs still more people erring as the model does;
- for boxes, matching at IoU >= 0.5 is not transitive (A matches B and B matches C, not A and
  C): for the human labels' error an answer joins the group of the first earlier one it
  matches, so on such an item the count depends on the order people answered in; rho compares
  each answer with the model's boxes directly, so its trials never depend on the first answer.
  Faults that keep IoU >= 0.5 (a jittered edge) are not errors here, as they are not for the
  machine's boxes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from labeling.annotators import AnnotatorErrorBound, annotator_error_bound, as_rate_and_alpha
from labeling.studio.opinions import boxes_differ, current_votes, shown_predictions
from pipeline.project.project import Project
from pipeline.round.blind import checked
from pipeline.round.detection.predict import choosing_values
from pipeline.round.predict import choosing_probs

Bound = float | AnnotatorErrorBound | None


@dataclass(frozen=True)
class PeopleBounds:
    """rho and the human labels' error, each a number (assumed), a measured bound or None
    (not measurable yet), with how it was obtained."""

    rho: Bound
    rho_how: str
    human: Bound
    human_how: str

    def record(self) -> dict:
        """The accept record's ``reference`` and ``human_error`` entries."""
        return {"reference": _bound_record(self.rho, self.rho_how),
                "human_error": _bound_record(self.human, self.human_how)}


def people_bounds(project: Project) -> PeopleBounds:
    loop = project.config.loop
    bounds = _people_bounds(project)
    if loop.human_error is None:
        return bounds
    return PeopleBounds(bounds.rho, bounds.rho_how, float(loop.human_error),
                        "assumed ([loop] human_error)")


def _people_bounds(project: Project) -> PeopleBounds:
    loop = project.config.loop
    if loop.reference_error != "measured":
        how = "assumed ([loop] reference_error)"
        return PeopleBounds(float(loop.reference_error), how, float(loop.reference_error), how)
    boxes = project.config.project.task == "detection"
    classes = list(project.classes)
    votes = current_votes(project.store, None, values=boxes)
    if boxes:  # an answer synced before boxes were kept has no value: not "nothing here"
        votes = {k: {p: v for p, v in people.items() if v is not None}
                 for k, people in votes.items()}
    shown = shown_predictions(project.store, None)
    double, blind = checked(project, votes)
    keys = sorted(k for k in double | blind if len(votes[k]) >= 2)
    confidence = 1.0 - (1.0 - loop.confidence_level) / 4
    if loop.blind_references:
        unseen = [k for k in keys if k not in shown]
        if boxes:
            model = choosing_values(project, unseen)
        else:
            model = {k: classes[int(p.argmax())]
                     for k, p in choosing_probs(project, unseen).items()}
        where = "blind-checked"
    elif boxes:  # the config refuses this: the shown boxes are not kept per answer
        raise ValueError('reference_error = "measured" for boxes needs blind_references')
    else:
        model = {k: shown[k] for k in keys if shown.get(k) in classes}
        where = "double-checked"
    # Two answers agree when they are the same class, or, for boxes, when they match object
    # for object (the accept step's rule for an image being right).
    same = _boxes_agree if boxes else operator.eq
    rho, rho_how = _measure([k for k in keys if k in model], votes, confidence, model, where,
                            same)
    # Every double-checked item, shown a pre-annotation or not: each went to people as items
    # like it do, so together they are a random share of the delivered human labels.
    human, human_how = _measure([k for k in keys if k in double], votes, confidence, None,
                                "double-checked", same)
    return PeopleBounds(rho, rho_how, human, human_how)


def _boxes_agree(a, b) -> bool:
    return not boxes_differ(a, b)


def answer_groups(answers: list, same) -> list[int]:
    """One item's answers as group numbers, for the human labels' error: an answer joins the
    group of the first earlier answer it agrees with (``same``), else starts one. For classes
    a group is a class; boxes that match object for object share one, so the bound counts
    people's answers the way the accept step counts the machine's. (rho compares each answer
    with the model's directly: ``_measure``.)"""
    ids: list[int] = []
    for i, value in enumerate(answers):
        earlier = next((ids[j] for j in range(i) if same(answers[j], value)), None)
        ids.append(len(set(ids)) if earlier is None else earlier)
    return ids


def _measure(keys, votes, confidence, model, where, same) -> tuple[Bound, str]:
    if not keys:
        return None, f"not measured yet: no {where} item has two answers"
    if model is None:
        rows = [answer_groups(list(votes[k].values()), same) for k in keys]
        labels = None
    else:
        # rho: each answer against the model's directly (1: it repeats it). Groups would let
        # the first answer decide the trial where boxes match loosely (a first answer near
        # the model's pulled the next two into its group: no trial; one a little further
        # made a trial of non-events): a review's Monte Carlo, the bound under rho in 30-99%
        # of runs where a third to two thirds of the model's misses were near IoU 0.5.
        rows = [[float(same(value, model[k])) for value in votes[k].values()] for k in keys]
        labels = np.ones(len(rows))
    answers = np.full((len(rows), max(len(r) for r in rows)), np.nan)
    for i, row in enumerate(rows):
        answers[i, :len(row)] = row
    try:
        bound = annotator_error_bound(answers, confidence=confidence, model_labels=labels)
    except ValueError as err:
        return None, f"not measured yet: {err}"
    if bound.rate_ub >= 0.99:  # nothing can be certified through 1 / (1 - rho)
        return None, (f"measured bound {bound.rate_ub:.3f} on {bound.n_items} {where} items "
                      f"is too wide to use yet")
    return bound, f"measured on {bound.n_items} {where} items ({bound.measured})"


def _bound_record(bound: Bound, how: str) -> dict:
    return {"rate_ub": None if bound is None else as_rate_and_alpha(bound, "bound")[0],
            "how": how, **(bound.to_dict() if isinstance(bound, AnnotatorErrorBound) else {})}
