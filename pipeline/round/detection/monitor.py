"""The monitor step for detection: the same record as for classes (``pipeline.round.monitor``),
logged to MLflow's ``<project>-rounds`` experiment and read by ``status`` and ``report``, with
what boxes have instead of class probabilities.

- ``champion``: on the held-out images the accept step tests its cut on, the share the
  champion gets right (an image's kept boxes match the people's: ``boxes.image_matches``) as
  ``accuracy``, a held-out image people tied on counting as wrong, as there; mAP@0.5 and
  mAP@[.5:.95] on those with a label. Read from the round's predictions file, which holds the
  held-out images.
- ``auto_label``: the accept step's cut (``thresholds["image"]``), coverage, audit, certificate.
- ``annotators``: as for classes, plus the boxes people drew from scratch and those they kept
  from the pre-annotation (``labeling.monitoring.box_effort``), this round and in all; the
  correction rate per class is left out (a box label's "class" is a summary of several).
  ``annotator_quality`` stays empty: Dawid-Skene needs one class per answer.
- ``data``: boxes per class in force, by people and by the machine.
- ``drift``: new images against the held-out images ingested before the round of the last test
  that ran started (``drift_base``),
  on each image's confidence and kept-box count (``labeling.monitoring.detect_image_drift``),
  from the same predictions file: no second pass of the model. New images people already
  labeled are left out (the model trained on them), so the new sample lacks the hard images
  the strategy sent to people and looks surer than fresh data, as for classes.
"""

from __future__ import annotations

from labeling.box_scores import machine_value
from labeling.boxes import image_matches
from labeling.monitoring import MIN_ITEMS, as_utc, box_effort, detect_image_drift, labels_since
from labeling.schema import PEOPLE_SOURCES
from pipeline.detection_model import score_boxes
from pipeline.project.project import Project
from pipeline.round.detection.labeled import labeled_values
from pipeline.round.detection.predict import load_predictions
from pipeline.round.labeled import unresolved_held_out, waiting_references
from pipeline.round.monitor import (
    annotators,
    champion_n_train,
    drift_base,
    flat_metrics,
    monitor_warnings,
    no_drift,
    previous_round,
    recertify_after_drift,
    since_previous,
)


def monitor_round(project: Project, round_id: int, stats: dict) -> dict:
    """Measure the project after round ``round_id``'s other steps and log it (module
    docstring); returns the record kept in the round's stats."""
    store = project.store
    rounds = store.rounds()  # read once: the previous round and the drift test's base
    previous = previous_round(rounds, round_id)
    human_now = store.current_labels(sources=PEOPLE_SOURCES)
    all_now = store.current_labels()
    people = annotators(store, [], previous, human_now)
    people["boxes"] = box_effort(labels_since(human_now.values(), since_previous(previous)))
    people["boxes_total"] = box_effort(human_now.values())
    for key in ("correction", "correction_total"):
        people[key]["per_class"] = {}
    accept = stats.get("accept") or {}
    cut = (accept.get("image_threshold") or {}).get("threshold")
    record = {
        "champion": None,
        "auto_label": {"coverage": accept.get("coverage"), "accepted": accept.get("accepted"),
                       "machine_labels": accept.get("machine_labels"),
                       "thresholds": {"image": cut}, "dataset_threshold": None,
                       "audit": accept.get("audit"), "certificate": accept.get("certificate"),
                       # The people's error the audits' warning allows for (as for classes).
                       "human_error_ub": (accept.get("human_error") or {}).get("rate_ub")},
        "annotators": people,
        "annotator_quality": [],
        "data": {"items": store.count_items(status="ok"), "human_labels": len(human_now),
                 "machine_labels": sum(lab.source == "machine" for lab in all_now.values()),
                 "class_balance": _box_balance(all_now.values(), project.classes)},
        "drift": {"computed": False, "reason": "no champion yet"},
    }
    predicted = stats.get("predict") or {}
    if "file" in predicted:
        preds = load_predictions(predicted["file"])
        labeled = labeled_values(project)  # (training, evaluation): read once for both
        record["champion"] = _champion(project, round_id, predicted["version"], preds,
                                       labeled[1])
        base = drift_base(rounds, round_id)
        record["drift"], record["data"]["new_items"] = _drift(project, preds, base,
                                                              predicted["version"], *labeled)
    recertify_after_drift(project, record, rounds, round_id, stats)
    record["warnings"] = monitor_warnings(record, project.config.loop.target_precision)
    record["mlflow_run"] = project.registry.log_round(round_id, flat_metrics(record))
    return record


def _box_balance(labels, classes) -> dict:
    """Boxes in force per class, split by who gave them (people; machine)."""
    out = {"human": dict.fromkeys(classes, 0), "machine": dict.fromkeys(classes, 0)}
    for lab in labels:
        side = out["machine" if lab.source == "machine" else "human"]
        for box in (lab.value.get("boxes") or []) if isinstance(lab.value, dict) else []:
            side[box["label"]] = side.get(box["label"], 0) + 1
    return out


def _champion(project: Project, round_id: int, version: str, preds: dict,
              eval_set: dict) -> dict:
    waiting = waiting_references(project, round_id)  # the accept step's sample, as it is
    keys = sorted(k for k in eval_set if k in preds and k not in waiting)
    tied = [k for k in unresolved_held_out(project.store)
            if k in preds and k not in eval_set and k not in waiting]
    champion = {"version": version, "n_train": champion_n_train(project, version), "eval": None}
    if keys:
        machine = [machine_value(preds[k]) for k in keys]
        truth = [eval_set[k] for k in keys]
        right = sum(image_matches(t.get("boxes") or [], m["boxes"])
                    for t, m in zip(truth, machine, strict=True))
        scores = score_boxes([preds[k] for k in keys], truth, project.classes)
        n = len(keys) + len(tied)
        champion["eval"] = {"n": n, "ties": len(tied), "accuracy": right / n, **scores}
    return champion


def _drift(project: Project, preds: dict, previous: dict | None, version: str,
           train_set: dict, eval_set: dict):
    """(the drift record, how many new images) from the round's predictions."""
    items = {i.key: i for i in project.store.items(status="ok")}
    if previous is None:
        return no_drift(None, 0, 0), 0
    cutoff = as_utc(previous["started_at"])
    new = sorted(k for k, i in items.items() if as_utc(i.added_at) > cutoff and k in preds
                 and k not in eval_set and k not in train_set)
    ref = sorted(k for k in eval_set if k in preds and k in items
                 and as_utc(items[k].added_at) <= cutoff)
    if len(ref) < MIN_ITEMS or len(new) < MIN_ITEMS:
        return no_drift(previous, len(ref), len(new)), len(new)
    drift = detect_image_drift([preds[k]["confidence"] for k in ref],
                               [preds[k]["confidence"] for k in new],
                               [_kept(preds[k]) for k in ref], [_kept(preds[k]) for k in new])
    drift.update(computed=True, cutoff=cutoff.isoformat(), model_version=version,
                 reference="held-out images ingested before the cutoff")
    return drift, len(new)


def _kept(prediction: dict) -> int:
    return len(machine_value(prediction)["boxes"])
