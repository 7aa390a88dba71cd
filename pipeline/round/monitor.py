"""The round's last step: measure the loop and record it (round stats in the label store, a run
per round in MLflow's ``<project>-rounds`` experiment).

What is measured, and from where:

- ``champion``: accuracy, macro-F1, ECE and confusion matrix of the champion on the evaluation
  set (random held-out human labels, ``labeled.labeled_sets``);
- ``auto_label``: coverage, per-class thresholds and audited precision, from the accept step;
- ``annotators``: human labels since the previous round ended, skips, median lead time and the
  correction rate (``labeling.monitoring``), for the round and over all labels in force;
- ``data``: items, new items, class balance of labels;
- ``drift``: new images (ingested since the round of the last test that ran started:
  ``drift_base``) against a reference, on the champion's outputs
  (``labeling.monitoring.detect_drift`` documents statistics and thresholds).

The drift reference is the evaluation items ingested before that cutoff: a random sample of the
data the champion was trained from, which it never trained on. Not the training items: a model is
surer of what it memorised; on digits with 100 labels, training items against same-distribution
new ones gave KS D 0.43 on confidence (p < 1e-4), a false alarm every early round. Not the rest of
the pool either: uncertainty sampling has taken its hard items out, so it looks surer than any
fresh batch.

Cost: one prediction pass of the champion over the evaluation items and at most
``MAX_NEW_ITEMS`` new images (with embeddings); everything else reads the store.
"""

from __future__ import annotations

import re

import numpy as np

from labeling.annotator_quality import annotator_quality
from labeling.monitoring import (
    MIN_ITEMS,
    annotator_summary,
    as_utc,
    class_balance,
    correction_rates,
    detect_drift,
    labels_since,
)
from labeling.schema import PEOPLE_SOURCES
from labeling.seen_files import unusable_items
from labeling.studio.opinions import current_votes, skips_since
from pipeline.certify import certificate, drifts_flagged
from pipeline.project.project import Project
from pipeline.round.labeled import champion_model_path, labeled_sets
from pipeline.round.predict import predict_files
from training.checkpoint import load_checkpoint
from training.evaluate import evaluate

# New images predicted for the drift test at most (a random, seeded sample of them).
MAX_NEW_ITEMS = 1000


def monitor_round(project: Project, round_id: int, stats: dict) -> dict:
    """Measure the project after round ``round_id``'s other steps (``stats`` holds their
    outputs), log the numbers to MLflow and return the record kept in the round's stats."""
    store = project.store
    classes = list(project.classes)
    rounds = store.rounds()  # read once: the previous round and the drift test's base
    previous = previous_round(rounds, round_id)
    human_now = store.current_labels(sources=PEOPLE_SOURCES)
    all_now = store.current_labels()
    record = {
        "champion": None,
        "auto_label": _auto_label(stats.get("accept") or {}),
        "annotators": annotators(store, classes, previous, human_now),
        "annotator_quality": [q.to_dict() for q in annotator_quality(current_votes(store, None))],
        "data": {
            "items": store.count_items(status="ok"),
            "human_labels": len(human_now),
            "machine_labels": sum(lab.source == "machine" for lab in all_now.values()),
            "class_balance": class_balance(all_now.values(), classes),
        },
        "drift": {"computed": False, "reason": "no champion yet"},
    }
    found = champion_model_path(project)
    if found is not None:
        record["champion"], record["drift"], record["data"]["new_items"] = _with_champion(
            project, found, drift_base(rounds, round_id))
    recertify_after_drift(project, record, rounds, round_id, stats)
    record["warnings"] = monitor_warnings(record, project.config.loop.target_precision)
    record["mlflow_run"] = project.registry.log_round(round_id, flat_metrics(record))
    return record


def recertify_after_drift(project: Project, record: dict, rounds: list[dict], round_id: int,
                          stats: dict) -> None:
    """Where this round's drift test found drift, ``record``'s certificate made again with it:
    the accept step certified before the test ran, and machine labels on the new images count
    wrong from now on, as status and export count them (MLflow logged the certificate without
    them: 0.0834 where status said 0.3939, a user's review)."""
    if not (record["drift"].get("drift") and stats.get("accept")):
        return
    loop = project.config.loop
    # This round as its monitor record will read once saved (the others as they are).
    with_this = [{**r, "stats": {"monitor": {"drift": record["drift"]}}} if r["id"] == round_id
                 else r for r in rounds]
    record["auto_label"]["certificate"] = certificate(
        project.store, stats["accept"], reference_error=loop.people_error,
        confidence=loop.confidence_level, boxes=project.config.project.task == "detection",
        drifts=drifts_flagged(with_this))


def drift_base(rounds: list[dict], round_id: int) -> dict | None:
    """The round from whose start new images are dated for the drift test: the latest earlier
    round whose test ran (what it tested is not tested again), else the first round; None in
    the first round. New images under the test's minimum add up round after round: 19 a round
    were never tested, and their machine labels rested on held-out items unlike them."""
    before = [r for r in rounds if r["id"] < round_id]
    ran = [r for r in before
           if (((r.get("stats") or {}).get("monitor") or {}).get("drift") or {}).get("computed")]
    return ran[-1] if ran else (before[0] if before else None)


def previous_round(rounds: list[dict], round_id: int) -> dict | None:
    before = [r for r in rounds if r["id"] < round_id]
    return before[-1] if before else None


def _auto_label(accept: dict) -> dict:
    per_class = (accept.get("thresholds") or {}).get("per_class") or []
    return {
        "coverage": accept.get("coverage"),
        "accepted": accept.get("accepted"),
        "machine_labels": accept.get("machine_labels"),
        "thresholds": {c["label"]: c["threshold"] for c in per_class},
        "dataset_threshold": (accept.get("dataset") or {}).get("threshold"),
        "audit": accept.get("audit"),
        # How wrong the people's labels the audits are judged by may be (the accept step's).
        "human_error_ub": (accept.get("human_error") or {}).get("rate_ub"),
        "certificate": accept.get("certificate"),
    }


def since_previous(previous: dict | None):
    """When the previous round ended (or started, if it never finished): labels after it are
    this round's. None before any round."""
    return None if previous is None else (previous["finished_at"] or previous["started_at"])


def annotators(store, classes, previous: dict | None, human_now: dict) -> dict:
    since = since_previous(previous)
    this_round = annotator_summary(labels_since(human_now.values(), since), classes)
    return {
        **this_round,
        "since": None if since is None else as_utc(since).isoformat(),
        "skipped": skips_since(store, None if since is None else as_utc(since)),
        "skipped_total": store.count_items(status="skipped"),
        "tasks_done_total": sum(lab.source == "human" for lab in human_now.values()),
        "correction_total": correction_rates(human_now.values(), classes),
    }


def new_images(project: Project, cutoff, labeled) -> list[str]:
    """The items added after ``cutoff`` that the drift test reads: not ``labeled`` (a model
    trained on one, labeled fast after ingest, would look surer than it is), and with a
    readable file (``unusable_items``: a new image deleted after its ingest failed every
    round at this step, whatever the user ran, until the file was back)."""
    unusable = unusable_items(project.store)
    return sorted(i.key for i in project.store.items(status="ok")
                  if as_utc(i.added_at) > cutoff and i.key not in labeled
                  and i.key not in unusable)


def _with_champion(project: Project, found, previous: dict | None):
    """Champion metrics on the evaluation set and the drift test, from one prediction pass;
    ``previous``: the round new images are dated from (``drift_base``)."""
    version, ckpt = found
    classes = list(project.classes)
    train_set, eval_set = labeled_sets(project)
    items = {i.key: i for i in project.store.items(status="ok")}
    cutoff = None if previous is None else as_utc(previous["started_at"])
    new_keys = [] if cutoff is None else new_images(project, cutoff, {**train_set, **eval_set})
    if len(new_keys) > MAX_NEW_ITEMS:
        rng = np.random.default_rng([project.config.training.seed, len(new_keys)])
        new_keys = sorted(rng.choice(new_keys, size=MAX_NEW_ITEMS, replace=False).tolist())
    eval_keys = sorted(eval_set)
    keys = eval_keys + new_keys
    champion = {"version": version, "n_train": champion_n_train(project, version), "eval": None}
    if not keys:
        return champion, no_drift(previous, 0, 0), 0
    model = load_checkpoint(ckpt)
    out = predict_files(project, model, [items[k].path for k in keys], keys, embeddings=True,
                        progress=False, keep_pixels=True)
    probs, emb = out.probs, out.embeddings
    n_eval = len(eval_keys)
    if n_eval:
        y = np.array([classes.index(eval_set[k]) for k in eval_keys])
        report = evaluate(probs[:n_eval], y, classes)
        champion["eval"] = {"n": report.n, "accuracy": report.accuracy,
                            "macro_f1": report.macro_f1, "ece": report.ece,
                            "confusion": report.confusion}
    ref_rows = [j for j, k in enumerate(eval_keys) if cutoff is None
                or as_utc(items[k].added_at) <= cutoff]
    if previous is None or len(ref_rows) < MIN_ITEMS or len(new_keys) < MIN_ITEMS:
        return champion, no_drift(previous, len(ref_rows), len(new_keys)), len(new_keys)
    drift = detect_drift(probs[ref_rows], probs[n_eval:], emb[ref_rows], emb[n_eval:],
                         seed=project.config.training.seed)
    drift.update(computed=True, cutoff=cutoff.isoformat(), model_version=version,
                 reference="evaluation items ingested before the cutoff")
    return champion, drift, len(new_keys)


def no_drift(previous: dict | None, n_ref: int, n_new: int) -> dict:
    if previous is None:
        reason = "first round: no earlier round to date new images from"
    elif n_new < MIN_ITEMS:
        reason = (f"{n_new} new images since round {previous['id']} began; the test needs "
                  f"{MIN_ITEMS} (they add up until it runs)")
    else:
        reason = (f"{n_ref} evaluation items as reference; the test needs {MIN_ITEMS} (they "
                  "come from the random and audit picks of later rounds)")
    return {"computed": False, "reason": reason, "n_reference": n_ref, "n_new": n_new}


def champion_n_train(project: Project, version: str) -> int | None:
    info = project.registry.version(version)
    value = info.metrics.get("n_train")
    return int(value) if value is not None else None


def monitor_warnings(record: dict, target_precision: float) -> list[str]:
    out = []
    if record["drift"].get("warning"):
        out.append(record["drift"]["warning"])
    audit = record["auto_label"].get("audit") or {}
    interval = audit.get("interval") or [0.0, 1.0]
    # An audit compares a machine label with a person's, who errs too: agreement understates
    # the machine's precision by up to the people's error rate (a review: a 10% crowd's audits
    # put labels 99.7% right "below target"). Only a shortfall beyond that is a warning.
    slack = record["auto_label"].get("human_error_ub") or 0.0
    if audit.get("n") and interval[1] + slack < target_precision:
        people = f", beyond the people's own error (<= {slack:.3f})" if slack else ""
        out.append(f"audited precision of machine labels {audit['precision']:.3f} (95% interval "
                   f"{interval[0]:.3f}-{interval[1]:.3f}, {audit['n']} audits{people}) is below "
                   f"the target {target_precision}; raise loop.target_precision or review them")
    return out


def flat_metrics(record: dict) -> dict[str, float]:
    """The record's numbers as MLflow metrics (names: letters, digits, ``_ - . /``)."""
    out: dict[str, float] = {}

    def put(name: str, value) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
            out[_metric_name(name)] = float(value)

    champion = record.get("champion") or {}
    for key, value in (champion.get("eval") or {}).items():
        put(f"eval_{key}", value)
    put("champion_n_train", champion.get("n_train"))
    auto = record["auto_label"]
    put("coverage", auto.get("coverage"))
    put("machine_labels", record["data"]["machine_labels"])
    for cls, thr in auto["thresholds"].items():
        put(f"threshold/{cls}", thr)
    put("threshold/dataset", auto.get("dataset_threshold"))
    cert = auto.get("certificate") or {}
    for key in ("wrong_ub", "wrong_at_rates", "confidence", "rates_confidence",
                "machine_error_ub", "human_error_ub", "delivered", "human", "machine",
                "unlabeled", "withheld"):
        put(f"certificate/{key}", cert.get(key))
    audit = auto.get("audit") or {}
    put("audit_n", audit.get("n"))
    put("audit_precision", audit.get("precision"))
    if audit.get("n"):
        put("audit_precision_lo", audit["interval"][0])
        put("audit_precision_hi", audit["interval"][1])
    people = record["annotators"]
    for key in ("tasks_done", "tasks_done_total", "skipped", "skipped_total",
                "median_lead_time_s"):
        put(key, people.get(key))
    for key, value in (people.get("boxes") or {}).items():  # detection: drawn, kept
        put(f"boxes_{key}", value)
    for key, value in (people.get("boxes_total") or {}).items():
        put(f"boxes_{key}_total", value)
    put("correction_rate", people["correction"]["rate"])
    put("correction_rate_total", people["correction_total"]["rate"])
    for cls, c in people["correction_total"]["per_class"].items():
        put(f"correction_rate/{cls}", c["rate"])
    put("human_labels", record["data"]["human_labels"])
    for q in record.get("annotator_quality") or []:
        put(f"annotator/{q['name']}/error_rate", q["rate"])
        put(f"annotator/{q['name']}/error_rate_high", q["interval"][1])
        put(f"annotator/{q['name']}/items", q["items"])
    put("new_items", record["data"].get("new_items"))
    for cls, n in record["data"]["class_balance"]["human"].items():
        put(f"labels/{cls}", n)
    drift = record["drift"]
    if drift.get("computed"):
        put("drift", int(drift["drift"]))
        for name, signal in drift["signals"].items():
            put(f"drift/{name}", signal["effect"])
            put(f"drift/{name}_p", signal["p_value"])
    return out


def _metric_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)

