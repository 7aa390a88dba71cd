"""The accept step: thresholds chosen on the random held-out human labels, machine labels above
them, and the precision measured on the audited ones."""

from __future__ import annotations

import numpy as np

from labeling.annotators import AnnotatorErrorBound
from labeling.autoaccept import (
    accept_confident,
    choose_thresholds,
    pooled_thresholds,
    precision_interval,
)
from labeling.dataset_accept import choose_dataset_threshold
from labeling.schema import PEOPLE_SOURCES
from labeling.selections import picks
from labeling.store import NewLabel
from pipeline.certify import certificate, cohort_checks, drifts_flagged
from pipeline.project.project import Project
from pipeline.round.labeled import (
    certifying_parts,
    choosing_part,
    labeled_sets,
    unresolved_held_out,
    waiting_references,
)
from pipeline.round.predict import load_predictions
from pipeline.round.reference import people_bounds


def auto_accept(project: Project, round_id: int, predicted: dict) -> dict:
    """Choose per-class thresholds on the held-out human labels and accept machine labels
    above them; machine labels of earlier models that the champion no longer backs are
    withdrawn (thresholds belong to a model version)."""
    if "file" not in predicted:
        return {"accepted": 0, "reason": predicted.get("reason", "no predictions")}
    loop = project.config.loop
    classes = list(project.classes)
    keys, probs, _ = load_predictions(predicted["file"])
    index = {k: i for i, k in enumerate(keys)}
    # Only the held-out items that chose no model (promotion, tuning) test the thresholds.
    held_out = labeled_sets(project)[1]
    tied = unresolved_held_out(project.store)
    eval_set, tied_certifying = certifying_parts(project, held_out, tied)
    waiting = waiting_references(project, round_id)
    val_keys, val_y = validation_set({k: v for k, v in eval_set.items() if k not in waiting},
                                     tied_certifying - waiting, index, probs, classes)
    val_probs = probs[[index[k] for k in val_keys]] if val_keys else np.zeros((0, len(classes)))
    human = project.store.current_classes(sources=PEOPLE_SOURCES)
    # A tied held-out item is a reference waiting for its person, never a machine label.
    pool = [i for i, k in enumerate(keys) if k not in human and k not in tied]
    pool_probs = probs[pool]
    dataset = None
    people = people_bounds(project)
    rho, human_error = people.rho, people.human
    if rho is None or (loop.target == "dataset" and human_error is None):
        thresholds = None
        mask = np.zeros(len(pool), bool)
    elif loop.target == "dataset":
        dataset = choose_dataset_threshold(
            pool_probs.max(axis=1) if len(pool) else np.zeros(0), val_probs, val_y,
            n_human=len(human), human_error=human_error, epsilon=loop.dataset_error,
            confidence=loop.confidence_level, reference_error=rho,
            min_points=loop.min_validation_points)
        mask = dataset.accept(pool_probs.max(axis=1)) if len(pool) else np.zeros(0, bool)
        thresholds = None
    else:
        # The human labels' bound is the certificate's, not the thresholds': its alpha is
        # taken off the thresholds' share so that the certificate holds at the loop's level.
        spent = human_error.alpha if isinstance(human_error, AnnotatorErrorBound) else 0.0
        thresholds = _label_thresholds(loop, val_probs, val_y, classes, rho,
                                       confidence=loop.confidence_level + spent)
        mask = accept_confident(pool_probs, thresholds) if len(pool) else np.zeros(0, bool)
    version = predicted["version"]
    chosen = np.flatnonzero(mask)
    # Whole columns at once: per-row numpy calls were seconds at a million accepted labels.
    winners = pool_probs[chosen].argmax(axis=1).tolist() if len(chosen) else []
    scores = pool_probs[chosen].max(axis=1).tolist() if len(chosen) else []
    new_labels = [
        NewLabel(keys[pool[j]], classes[c], "machine", who="labelloop", model_version=version,
                 confidence=p, round_id=round_id)
        for j, c, p in zip(chosen.tolist(), winners, scores, strict=True)
    ]
    result = project.store.add_labels(new_labels)
    accepted_keys = {lab.key for lab in new_labels}
    withdrawn = project.store.retract_labels(
        [k for k in project.store.current_classes(sources=("machine",))
         if k not in accepted_keys], source="machine")
    machine_now = project.store.current_source_counts().get("machine", 0)
    pool_size = project.store.count_items(status="ok", unlabeled_by=PEOPLE_SOURCES)
    record = {
        "thresholds": thresholds.to_dict() if thresholds is not None else None,
        "dataset": dataset.to_dict() if dataset is not None else None,
        **people.record(),
        "validation": len(val_keys),
        "validation_waiting": len(waiting & (set(eval_set) | tied_certifying)),
        "held_out_choosing": len(choosing_part(project, held_out)),
        "selection_share": loop.selection_share,
        "accepted": len(accepted_keys), "written": len(result.written),
        "withdrawn": withdrawn, "machine_labels": machine_now,
        "coverage": machine_now / max(1, pool_size),
        "audit": audited_precision(project, tied, waiting),
    }
    drifts = drifts_flagged(project.store.rounds())
    record["drift_cohorts"] = cohort_checks(project.store, drifts, val_keys)
    record["certificate"] = certificate(project.store, record,
                                        reference_error=loop.people_error,
                                        confidence=loop.confidence_level, drifts=drifts)
    return record


def validation_set(eval_set: dict[str, str], tied: set[str], index: dict[str, int],
                   probs: np.ndarray, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """(keys, reference class indices) of the random held-out items the thresholds are
    tested on. A held-out item whose people tie is a reference nobody can give yet: it counts
    as one the model got wrong (a class other than its own), never as one left out."""
    answered = [k for k in eval_set if k in index]
    pending = sorted(k for k in tied if k in index and k not in eval_set)
    y = [classes.index(eval_set[k]) for k in answered]
    y += [(int(probs[index[k]].argmax()) + 1) % len(classes) for k in pending]
    return answered + pending, np.array(y, dtype=int)


def _label_thresholds(loop, val_probs, val_y, classes, rho, *, confidence):
    """Thresholds that meet ``target_precision`` per accepted label (``[loop] target =
    "label"``), pooled or per class, at ``confidence`` (rho's alpha spent within it)."""
    if loop.threshold_mode == "pooled":
        return pooled_thresholds(
            val_probs, val_y, classes, target_precision=loop.target_precision,
            confidence=confidence, min_points=loop.min_validation_points,
            reference_error=rho)
    return choose_thresholds(
        val_probs, val_y, classes, target_precision=loop.target_precision,
        confidence=confidence, min_points=loop.min_validation_points,
        split_budget=loop.split_error_budget, reference_error=rho)


def audited_precision(project: Project, tied: set[str], waiting: set[str]) -> dict:
    """Precision of auto-accepted labels measured on random audit picks that people labeled,
    but for those whose references still ``waiting`` (``waiting_references``), as the
    thresholds leave them out. ``tied``: the held-out items whose people tie
    (``unresolved_held_out``), counted as wrong: leaving them out would flatter."""
    human = project.store.current_classes(sources=("human",))
    audited = [(p.machine_label, human.get(k))
               for k, p in picks(project.store).items()
               if p.reason == "audit" and p.machine_label is not None and k not in waiting
               and (k in human or k in tied)]
    correct = sum(m == h for m, h in audited)
    lo, hi = precision_interval(correct, len(audited))
    return {"n": len(audited), "correct": correct,
            "precision": correct / len(audited) if audited else None, "interval": [lo, hi]}
