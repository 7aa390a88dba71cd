"""The monitor step of a detection round: the champion's share of right images and mAP on the
held-out images, people's boxes drawn and kept, drift of new images, logged to MLflow and shown
by ``status`` and ``report``."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from labeling.schema import Item
from labeling.selections import Pick, record_picks
from labeling.store import NewLabel
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.quickstart import change_defaults
from pipeline.report import write_report
from pipeline.round.detection import accept as accept_step
from pipeline.round.detection.monitor import monitor_round
from pipeline.status import round_summary
from tests.pipeline.test_detection_steps import (  # noqa: F401 - fixtures
    canvases,
    predicted_as,
    project,
    tie,
    write_predictions,
)


def boxed_by_people(proj, truth, keys, shown_for=()):
    """People's labels: the truth's boxes; on ``shown_for`` a pre-annotation was shown that
    had all of them but the first (so one box was drawn, the rest kept)."""
    labels = []
    for k in keys:
        extra = {}
        if k in shown_for:
            extra = {"predicted_value": dict(truth[k], boxes=truth[k]["boxes"][1:]),
                     "changed_prediction": True}
        labels.append(NewLabel(k, "boxes", "human", who="oracle", value=truth[k], extra=extra))
    proj.store.add_labels(labels, classes=None)


def register(proj, tmp_path, n_train):
    ckpt = tmp_path / "model.det.pt"
    ckpt.write_bytes(b"a detector")
    return proj.registry.register(ckpt, params={}, metrics={"n_train": n_train,
                                                            "map_50": 0.4321, "map": 0.21},
                                  snapshot=f"s{n_train}")


def run_monitor(proj, rid, items, version):
    predicted = write_predictions(proj, items, version, rid)
    stats = {"predict": predicted, "accept": accept_step.auto_accept(proj, rid, predicted)}
    stats["monitor"] = monitor_round(proj, rid, stats)
    proj.store.finish_round(rid, stats)
    return stats


def test_a_detection_round_is_monitored_and_drift_in_new_images_is_flagged(
        project, tmp_path, request):  # noqa: F811 - the fixture imported above
    first_open, truth = project
    # People err up to 2% here (a number, taken as known), so the monitor's allowance for
    # them is not the 0 a default project would pass whether or not the step reads it.
    first_open.close()
    change_defaults(tmp_path / "labelloop.toml", (("reference_error = 0.0",
                                                   "reference_error = 0.02"),))
    proj = open_project(find_config(tmp_path))
    request.addfinalizer(proj.close)
    keys = sorted(truth)
    held, pool = keys[:40], keys[40:]
    record_picks(proj.store, [Pick(k, "random", holdout=True) for k in held], round_id=None)
    with_boxes = [k for k in held if len(truth[k]["boxes"]) >= 2][:5]
    boxed_by_people(proj, truth, held, shown_for=with_boxes)
    version = register(proj, tmp_path, 40)
    tied = pool[-1]
    record_picks(proj.store, [Pick(tied, "random", holdout=True)], round_id=None)
    tie(proj, tied)

    rid = proj.store.start_round()
    wrong = set(held[-10:])  # the champion gets 30 of the 40 held-out images right
    conf_held = np.linspace(0.99, 0.6, len(held))
    items = {**predicted_as(truth, held, conf_held, wrong=wrong),
             **predicted_as(truth, pool, np.full(len(pool), 0.9))}
    items[tied]["confidence"] = 0.3
    stats = run_monitor(proj, rid, items, version)
    first = stats["monitor"]
    # The audits' warning allows for the people's error, as a classification round's does.
    assert first["auto_label"]["human_error_ub"] == 0.02
    champion = first["champion"]
    assert champion["version"] == version and champion["n_train"] == 40
    # 30 right of 40 labeled, and a tie among people that counts as wrong, as in the cut.
    assert (champion["eval"]["n"], champion["eval"]["ties"]) == (41, 1)
    assert champion["eval"]["accuracy"] == 30 / 41
    assert first["auto_label"]["thresholds"]["image"] is not None
    assert 0.5 < champion["eval"]["map_50"] < 1 and champion["eval"]["map"] <= 1
    people = first["annotators"]
    assert people["boxes_total"]["drawn"] == sum(len(truth[k]["boxes"]) for k in held) - sum(
        len(truth[k]["boxes"]) - 1 for k in with_boxes)
    assert people["boxes_total"]["kept"] == sum(len(truth[k]["boxes"]) - 1 for k in with_boxes)
    assert people["correction_total"]["changed"] == len(with_boxes)
    boxes_of = {c: sum(b["label"] == c for k in held for b in truth[k]["boxes"])
                for c in proj.classes}
    assert first["data"]["class_balance"]["human"] == boxes_of
    assert not first["drift"]["computed"] and "first round" in first["drift"]["reason"]

    # MLflow holds the round's figures; status and the report read them.
    import mlflow

    run = mlflow.MlflowClient(proj.registry.tracking_uri).get_run(first["mlflow_run"])
    assert run.data.metrics["eval_accuracy"] == 30 / 41
    assert run.data.metrics["boxes_kept_total"] == people["boxes_total"]["kept"]
    assert round_summary(proj.store.rounds()[-1]["stats"])["eval_accuracy"] == 30 / 41

    # Round 2: 30 new images, which the champion is unsure of and finds few boxes in; of 2
    # more, one people labeled for training and one held out, the reference's side now.
    rid2 = proj.store.start_round()
    started = proj.store.rounds()[0]["started_at"]
    new, trained, late_held = pool[:30], pool[30], pool[31]
    with proj.store.transaction() as s:
        for item in s.query(Item).filter(Item.key.in_([*new, trained, late_held])):
            item.added_at = started + timedelta(seconds=1)
    record_picks(proj.store, [Pick(trained, "strategy"), Pick(late_held, "random",
                                                                 holdout=True)], round_id=rid)
    boxed_by_people(proj, truth, [trained, late_held])
    unsure = predicted_as(truth, new, np.linspace(0.5, 0.7, len(new)))
    for value in unsure.values():
        for box in value["boxes"]:
            box["score"] = 0.3  # none kept
    second = run_monitor(proj, rid2, {**items, **unsure}, version)["monitor"]
    drift = second["drift"]  # neither labeled image is new; the late held-out one is no
    assert drift["computed"] and drift["n_reference"] == 40 and drift["n_new"] == 30  # ref
    assert drift["signals"]["confidence"]["drift"] and drift["signals"]["boxes"]["drift"]
    assert any("drift in 30 new images" in w for w in second["warnings"])
    assert second["data"]["new_items"] == 30

    # Round 3: the same new images predicted like the reference: no drift.
    rid3 = proj.store.start_round()
    with proj.store.transaction() as s:
        for item in s.query(Item).filter(Item.key.in_(new)):
            item.added_at = proj.store.rounds()[1]["started_at"] + timedelta(seconds=1)
    alike = predicted_as(truth, new, np.linspace(0.99, 0.6, len(new)))
    third = run_monitor(proj, rid3, {**items, **alike}, version)["monitor"]
    assert third["drift"]["computed"] and not third["drift"]["drift"]
    assert not any("drift" in w for w in third["warnings"])

    page, pngs = write_report(proj, tmp_path / "report.html")
    text = page.read_text()
    assert "boxes have no confusion matrix" in text  # and the other plots are drawn:
    assert "needs a champion and held-out human labels to evaluate" not in text
    assert "no human label records whether" not in text
    assert "no drift test yet" not in text
    assert "no round has auto-accepted" not in text
    assert "no round has predicted the pool" not in text
    assert len(pngs) == 6
    # The models table scores a detector by its mAP@0.5 (the column was empty).
    assert "eval mAP@0.5 (at training)" in text and "<td>0.432</td>" in text
