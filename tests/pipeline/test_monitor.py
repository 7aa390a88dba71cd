"""The monitor step on real digits: drift is raised for inverted or rotated digits and not for
more of the same; a round's numbers land in the label store, MLflow and ``status``."""

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_digits
from sqlalchemy import select

from labeling.monitoring import detect_drift
from labeling.schema import Item, StudioAnnotation, utcnow
from labeling.selections import picks
from labeling.store import NewLabel
from pipeline.ingest import ingest_folder
from pipeline.round import accept as accept_step
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import select as select_step
from pipeline.round import train as train_step
from pipeline.round.monitor import monitor_round, monitor_warnings
from pipeline.status import project_status
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays

pytestmark = pytest.mark.slow
CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits():
    """sklearn's 1,797 digits as uint8 [N, 8, 8] in a fixed shuffled order, labels [N]."""
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], data.target[order]


def test_drift_flags_inverted_and_rotated_digits_not_more_of_the_same(digits):
    images, labels = digits
    model = train_arrays(images[:600], labels[:600], CLASSES,
                         TrainParams(seed=0, epochs=1, min_steps=60))

    def outputs(x):
        out = predict_arrays(model, x, embeddings=True)
        return out.probs, out.embeddings

    ref_probs, ref_emb = outputs(images[600:1100])
    same = images[1100:1400]
    for start in (0, 100, 200):  # three batches of 100 more digits: never drift
        probs, emb = outputs(same[start:start + 100])
        result = detect_drift(ref_probs, probs, ref_emb, emb)
        assert not result["drift"], result["warning"]
        assert result["warning"] is None
    for shifted in (255 - same, np.rot90(same, axes=(1, 2)).copy()):
        probs, emb = outputs(shifted)
        result = detect_drift(ref_probs, probs, ref_emb, emb)
        assert result["drift"]
        assert result["signals"]["embeddings"]["drift"]
        assert result["signals"]["predictions"]["drift"] or result["signals"]["confidence"]["drift"]
        assert "embeddings" in result["warning"]


# ---- a project run step by step -----------------------------------------------------------
def answer(proj, truth, rng, *, noise: float, last_predictions: dict | None) -> None:
    """Label every pending pick as a Label Studio sync would record it: the pre-annotation
    shown (the champion's guess), lead time, and whether the person changed the guess."""
    paths = {i.key: i.path for i in proj.store.items()}
    human = proj.store.current_labels(sources=("human",))
    guess = {}
    if last_predictions and "file" in last_predictions:
        keys, probs, _ = predict_step.load_predictions(last_predictions["file"])
        guess = {k: CLASSES[int(p.argmax())] for k, p in zip(keys, probs, strict=True)}
    labels = []
    for key in picks(proj.store):
        if key in human:
            continue
        label = truth[str(Path(paths[key]).resolve())]
        if rng.random() < noise:
            label = CLASSES[(CLASSES.index(label) + 1 + rng.integers(9)) % 10]
        shown = guess.get(key)
        extra = {"lead_time": float(rng.uniform(1, 8)), "predicted": shown,
                 "changed_prediction": None if shown is None else label != shown}
        labels.append(NewLabel(key, label, "human", who="sim", extra=extra))
    proj.store.add_labels(labels)


def skipped(store, keys, *, outcome: str = "skipped") -> None:
    """People skipped the tasks of ``keys`` (or, with ``outcome`` "labeled", answered them
    after all: the skip edited into an answer), as a sync records it: annotation and task
    ids 9000 + the item's id, Label Studio's time of the skip."""
    with store.transaction() as s:
        items = {i.key: i for i in s.scalars(select(Item).where(Item.key.in_(keys)))}
        for key in keys:
            row = s.scalar(select(StudioAnnotation).where(
                StudioAnnotation.annotation_id == 9000 + items[key].id))
            if row is None:
                row = StudioAnnotation(annotation_id=9000 + items[key].id, project_id=1,
                                       task_id=9000 + items[key].id, item_id=items[key].id,
                                       created_at=utcnow().isoformat().replace("+00:00", "Z"))
                s.add(row)
            row.was_cancelled = outcome == "skipped"
    store.set_status(keys, "skipped" if outcome == "skipped" else "ok")


def run_round(proj, truth, rng, *, noise=0.1, before_monitor=None) -> dict:
    """One round's steps as ``pipeline.round`` runs them, with a simulated sync first."""
    rounds = [r for r in proj.store.rounds() if r["stats"].get("predict")]
    answer(proj, truth, rng, noise=noise,
           last_predictions=rounds[-1]["stats"]["predict"] if rounds else None)
    rid = proj.store.start_round()
    stats = {"train": train_step.train_challenger(proj, rid, progress=False)}
    stats["promote"] = promote_step.decide_promotion(proj, stats["train"].get("version"))
    stats["predict"] = predict_step.predict_pool(proj, rid, progress=False)
    stats["accept"] = accept_step.auto_accept(proj, rid, stats["predict"])
    stats["select"] = select_step.select_batch(proj, rid, stats["predict"])
    if before_monitor is not None:
        before_monitor()
    stats["monitor"] = monitor_round(proj, rid, stats)
    proj.store.finish_round(rid, stats)
    return stats


def test_monitor_records_round_numbers_and_raises_drift_for_new_inverted_digits(
        digits, tmp_path, quick_project, write_pngs):
    images, labels = digits
    proj, truth, _ = quick_project(tmp_path, images[:900], labels[:900], "monitor-test")
    rng = np.random.default_rng(0)
    try:
        first = run_round(proj, truth, rng)  # cold start: random picks, no model yet
        assert first["monitor"]["champion"] is None
        assert first["monitor"]["drift"] == {"computed": False, "reason": "no champion yet"}
        second = run_round(proj, truth, rng)
        mon = second["monitor"]
        assert mon["champion"]["eval"]["n"] >= 90
        assert 0.5 < mon["champion"]["eval"]["accuracy"] <= 1
        assert mon["drift"]["computed"] is False and "new images" in mon["drift"]["reason"]

        # More digits of the same kind arrive, and people skip a few tasks.
        folder = proj.config.images_dir
        truth.update(write_pngs(folder, images[900:1200], labels[900:1200], "b"))
        ingest_folder(proj.store, folder)
        skip = [k for k in picks(proj.store)][:4]
        third = run_round(proj, truth, rng, before_monitor=lambda: skipped(proj.store, skip))
        mon = third["monitor"]
        assert mon["drift"]["computed"] and mon["drift"]["n_new"] == 300
        assert not mon["drift"]["drift"], mon["drift"]["warning"]
        assert mon["annotators"]["skipped"] == mon["annotators"]["skipped_total"] == 4
        people = mon["annotators"]
        assert people["tasks_done"] > 0 and 1 <= people["median_lead_time_s"] <= 8
        # The rate is what the simulated sync recorded, over the labels in force.
        human = proj.store.current_labels(sources=("human",)).values()
        flags = [lab.extra["changed_prediction"] for lab in human
                 if lab.extra.get("changed_prediction") is not None]
        assert people["correction_total"]["n"] == len(flags) > 0
        assert people["correction_total"]["rate"] == pytest.approx(np.mean(flags))
        assert sum(c["n"] for c in people["correction_total"]["per_class"].values()) == len(flags)
        assert sum(mon["data"]["class_balance"]["human"].values()) == mon["data"]["human_labels"]
        assert set(mon["auto_label"]["thresholds"]) == set(CLASSES)

        # Then the camera changes: inverted digits; a lower target lets the machine label some.
        loop = proj.config.loop.model_copy(update={"target_precision": 0.8})
        proj.config = proj.config.model_copy(update={"loop": loop})
        truth.update(write_pngs(folder, 255 - images[1200:1500], labels[1200:1500], "c"))
        ingest_folder(proj.store, folder)
        # ... and one skipped task is answered after all: no new skip (the count of skipped
        # items went down by one, which the report showed as -1 skips).
        fourth = run_round(proj, truth, rng,
                           before_monitor=lambda: skipped(proj.store, skip[:1], outcome="labeled"))
        mon = fourth["monitor"]
        assert mon["drift"]["computed"] and mon["drift"]["drift"]
        assert mon["drift"]["signals"]["embeddings"]["drift"]
        assert mon["annotators"]["skipped"] == 0 and mon["annotators"]["skipped_total"] == 3
        assert any("drift" in w for w in mon["warnings"])

        status = project_status(proj)
        assert [r["summary"]["drift"] for r in status["rounds"]][-2] == "none"
        assert "embeddings" in status["rounds"][-1]["summary"]["drift"]
        assert any(w.startswith(f"round {status['rounds'][-1]['id']}: drift")
                   for w in status["warnings"])

        logged = MlflowClient(proj.registry.tracking_uri).get_run(mon["mlflow_run"]).data
        assert logged.metrics["drift"] == 1.0
        assert logged.metrics["eval_accuracy"] == pytest.approx(
            mon["champion"]["eval"]["accuracy"])
        assert logged.metrics["drift/embeddings"] == pytest.approx(
            mon["drift"]["signals"]["embeddings"]["effect"])
        assert "correction_rate_total" in logged.metrics
        # The certificate logged counts the machine labels on the drifted images as status
        # does (it was the accept step's, made before the drift was found).
        cert = status["certificate"]
        assert cert["uncovered_machine"] > 0
        assert mon["auto_label"]["certificate"]["wrong_ub"] == cert["wrong_ub"]
        assert logged.metrics["certificate/wrong_ub"] == pytest.approx(cert["wrong_ub"])
        assert {k for k in logged.metrics if k.startswith("threshold/")} == {
            f"threshold/{c}" for c, t in mon["auto_label"]["thresholds"].items()
            if t is not None}
    finally:
        proj.close()


def test_new_images_are_dated_from_the_last_drift_test_that_ran():
    # 19 new images a round never reached the test's 20, and were never tested at all.
    from pipeline.round.monitor import drift_base

    def monitored(rid: int, ran: bool | None) -> dict:
        drift = None if ran is None else {"computed": ran}
        return {"id": rid, "stats": {} if drift is None else {"monitor": {"drift": drift}}}

    rounds = [monitored(1, None), monitored(2, False), monitored(3, True), monitored(4, False),
              monitored(5, False)]
    assert drift_base(rounds, 6)["id"] == 3  # not 5: rounds 4 and 5 had too few to test
    assert drift_base(rounds, 3)["id"] == 1  # none ran yet: from the first round
    assert drift_base(rounds, 1) is None


def test_audits_below_target_warn_only_beyond_what_the_peoples_error_explains():
    audit = {"n": 400, "correct": 384, "precision": 0.96, "interval": [0.94, 0.975]}
    record = {"drift": {}, "auto_label": {"audit": audit, "human_error_ub": None}}
    [warning] = monitor_warnings(record, 0.98)
    assert warning.startswith("audited precision of machine labels 0.960")
    # People who err up to 3% can account for a 0.975 agreement with labels 0.98 right.
    record["auto_label"]["human_error_ub"] = 0.03
    assert monitor_warnings(record, 0.98) == []
    record["auto_label"]["human_error_ub"] = 0.001
    [warning] = monitor_warnings(record, 0.98)
    assert "beyond the people's own error (<= 0.001)" in warning
