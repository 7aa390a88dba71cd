"""The accept step for detection: one cut on the images' confidence, chosen on the random
held-out images people labeled so that a bound on the share of accepted images that are not
right meets ``[loop] target_precision`` (``labeling.image_accept``); an accepted image's label
is all of its kept boxes. The audit measures the same thing on accepted images that people
then labeled at random."""

from __future__ import annotations

import numpy as np

from labeling.annotators import AnnotatorErrorBound
from labeling.bounds import precision_interval
from labeling.box_scores import machine_value
from labeling.boxes import image_matches
from labeling.image_accept import ImageThreshold, image_threshold
from labeling.schema import PEOPLE_SOURCES
from labeling.selections import picks
from labeling.store import NewLabel
from labeling.tasks.detection import summary
from pipeline.certify import certificate, cohort_checks, drifts_flagged
from pipeline.project.project import Project
from pipeline.round.detection.labeled import labeled_values
from pipeline.round.detection.predict import load_predictions
from pipeline.round.labeled import (
    certifying_parts,
    choosing_part,
    unresolved_held_out,
    waiting_references,
)
from pipeline.round.reference import people_bounds


def right(truth: dict, machine: dict) -> bool:
    """Whether the machine's boxes get the image right against the people's."""
    return image_matches(truth.get("boxes") or [], machine.get("boxes") or [])


def auto_accept(project: Project, round_id: int, predicted: dict) -> dict:
    """Choose the cut on the held-out images and accept the pool's images above it; machine
    labels of earlier models the champion no longer backs are withdrawn."""
    if "file" not in predicted:
        return {"accepted": 0, "reason": predicted.get("reason", "no predictions")}
    loop = project.config.loop
    preds = load_predictions(predicted["file"])
    # Only the held-out images that chose no model (promotion, tuning) test the cut.
    held_out = labeled_values(project)[1]
    # A tie among people is an outcome too, and it happens where the model's answer was in
    # doubt: counted against the model, never left out.
    held_tied = unresolved_held_out(project.store)
    eval_set, tied_certifying = certifying_parts(project, held_out, held_tied)
    # As for classes: the newest held-out images wait a round for their second opinions
    # (``[loop] reference_wait_rounds``; chosen by the round that picked them, never by an answer).
    waiting = waiting_references(project, round_id)
    val = [k for k in eval_set if k in preds and k not in waiting]
    tied = sorted(k for k in tied_certifying
                  if k in preds and k not in eval_set and k not in waiting)
    conf = np.array([preds[k]["confidence"] for k in val + tied], dtype=np.float64)
    wrong = np.array([not right(eval_set[k], machine_value(preds[k])) for k in val]
                     + [True] * len(tied), dtype=bool)
    people = people_bounds(project)
    if people.rho is None:  # measured, and not yet measurable: nothing can be certified
        cut = ImageThreshold(None, None, len(conf), int(wrong.sum()), loop.target_precision,
                             loop.confidence_level, f"people's error {people.rho_how}")
    else:
        # As for classes: the human labels' bound is the certificate's, so its alpha comes
        # off the cut's share and the certificate holds at the loop's level.
        spent = people.human.alpha if isinstance(people.human, AnnotatorErrorBound) else 0.0
        cut = image_threshold(conf, wrong, target_precision=loop.target_precision,
                              confidence=loop.confidence_level + spent,
                              min_points=loop.min_validation_points,
                              reference_error=people.rho)
    human = project.store.current_labels(sources=PEOPLE_SOURCES)
    pool = [k for k in preds if k not in human and k not in held_tied]  # references stay people's
    pool_conf = np.array([preds[k]["confidence"] for k in pool], dtype=np.float64)
    accepted = [k for k, ok in zip(pool, cut.accept(pool_conf), strict=True) if ok]
    version = predicted["version"]
    new_labels = []
    for k in accepted:
        value = machine_value(preds[k])
        new_labels.append(NewLabel(k, summary([b["label"] for b in value["boxes"]]), "machine",
                                   who="labelloop", model_version=version,
                                   confidence=float(preds[k]["confidence"]),
                                   round_id=round_id, value=value))
    result = project.store.add_labels(new_labels, classes=None)
    kept = set(accepted)
    withdrawn = project.store.retract_labels(
        [k for k in project.store.current_labels(sources=("machine",)) if k not in kept],
        source="machine")
    machine_now = project.store.current_labels(sources=("machine",))
    pool_size = sum(k not in human for k in project.store.item_keys(status="ok"))
    record = {"image_threshold": cut.to_dict(), "accepted": len(accepted),
              "written": len(result.written), "withdrawn": withdrawn,
              "machine_labels": len(machine_now),
              "validation": len(val) + len(tied),
              "validation_waiting": len(waiting & (set(eval_set) | tied_certifying)),
              "held_out_choosing": len(choosing_part(project, held_out)),
              "selection_share": loop.selection_share,
              "coverage": len(machine_now) / max(1, pool_size),
              "audit": audited(project, held_tied, waiting), **people.record()}
    # An image counts as one label: the certificate bounds the share of delivered images
    # that are not right.
    drifts = drifts_flagged(project.store.rounds())
    record["drift_cohorts"] = cohort_checks(project.store, drifts, val + tied)
    record["certificate"] = certificate(project.store, record,
                                        reference_error=loop.people_error,
                                        confidence=loop.confidence_level, boxes=True,
                                        drifts=drifts)
    return record


def audited(project: Project, tied: set[str], waiting: set[str]) -> dict:
    """How many accepted images people later labeled at random (audit picks) were right, but
    for those whose references still wait (``waiting_references``), as the cut leaves out.
    ``tied``: the held-out images whose people tie (``unresolved_held_out``), counted as not
    right."""
    human = project.store.current_labels(sources=("human",))
    outcomes = []
    for key, pick in picks(project.store).items():
        if pick.reason != "audit" or pick.machine_label is None or key in waiting:
            continue
        if key in tied:
            outcomes.append(False)
        elif key in human and isinstance(human[key].value, dict):
            machine = _machine_label_at_pick(project, key, pick.machine_version)
            if machine is not None:
                outcomes.append(right(human[key].value, machine))
    correct = sum(outcomes)
    lo, hi = precision_interval(correct, len(outcomes))
    return {"n": len(outcomes), "correct": correct,
            "precision": correct / len(outcomes) if outcomes else None, "interval": [lo, hi]}


def _machine_label_at_pick(project: Project, key: str, version: str | None) -> dict | None:
    """The machine's boxes the image had when the audit picked it (a person's label has since
    superseded them)."""
    machine = [lab for lab in project.store.history(key)
               if lab.source == "machine" and (version is None or lab.model_version == version)]
    return machine[-1].value if machine and isinstance(machine[-1].value, dict) else None
