"""Monitoring numbers without a model: correction rates match what simulated annotators did, and
the drift test fires on shifted samples, not on samples of the same distribution."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from labeling.monitoring import (
    MIN_ITEMS,
    annotator_summary,
    box_effort,
    class_balance,
    correction_rates,
    detect_drift,
    detect_image_drift,
    labels_since,
)
from labeling.store import LabelRecord

CLASSES = [str(d) for d in range(10)]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def label(key, cls, *, source="human", extra=None, at=T0) -> LabelRecord:
    return LabelRecord(key, cls, source, "sim", None, None, None, at, None, dict(extra or {}))


def simulated_sync(n, rng, *, noise, model_error=None):
    """Labels as the Label Studio sync records them: the pre-annotation shown (the model's
    guess, wrong for class c with probability ``model_error[c]``) and whether the person's
    answer differs from it; the person answers wrongly with probability ``noise``."""
    model_error = model_error or {}
    out = []
    for i in range(n):
        truth = CLASSES[rng.integers(10)]
        shown = truth
        if rng.random() < model_error.get(truth, 0.0):
            shown = CLASSES[(int(truth) + 1) % 10]
        answer = truth
        if rng.random() < noise:
            answer = CLASSES[(int(truth) + 1 + rng.integers(9)) % 10]
        out.append(label(f"k{i}", answer, extra={
            "predicted": shown, "changed_prediction": answer != shown,
            "lead_time": float(rng.uniform(1, 8))}))
    return out


@pytest.mark.parametrize("noise", [0.05, 0.2])
def test_correction_rate_matches_annotator_noise(noise):
    # The model's guesses are right, so every change is the annotator's noise.
    labels = simulated_sync(3000, np.random.default_rng(1), noise=noise)
    rates = correction_rates(labels, CLASSES)
    assert rates["n"] == 3000
    assert rates["rate"] == pytest.approx(noise, abs=0.02)
    lo, hi = rates["interval"]
    assert lo < noise < hi and hi - lo < 0.05
    for c in CLASSES:
        assert rates["per_class"][c]["rate"] == pytest.approx(noise, abs=0.06)


def test_correction_rate_per_class_finds_the_class_the_model_gets_wrong():
    labels = simulated_sync(3000, np.random.default_rng(2), noise=0.0, model_error={"3": 0.4})
    per = correction_rates(labels, CLASSES)["per_class"]
    # Guesses "4" include the 40% of threes shown as fours: about 0.4 / 1.4 of them change.
    assert per["4"]["rate"] == pytest.approx(0.4 / 1.4, abs=0.06)
    assert all(per[c]["rate"] == 0 for c in CLASSES if c != "4")


def test_labels_without_a_pre_annotation_do_not_count():
    labels = [label("a", "1"), label("b", "2", source="seed"),
              label("c", "1", extra={"predicted": None, "changed_prediction": None}),
              label("d", "1", extra={"predicted": "1", "changed_prediction": False}),
              label("e", "2", extra={"predicted": "1", "changed_prediction": True})]
    rates = correction_rates(labels, CLASSES)
    assert (rates["n"], rates["changed"], rates["rate"]) == (2, 1, 0.5)
    assert rates["per_class"]["1"] == {"n": 2, "changed": 1, "rate": 0.5}
    assert rates["per_class"]["2"] == {"n": 0, "changed": 0, "rate": None}
    assert correction_rates([], CLASSES)["rate"] is None


def test_annotator_summary_counts_people_and_median_lead_time():
    labels = [label("a", "1", extra={"lead_time": 2.0}), label("b", "1", extra={"lead_time": 9}),
              label("c", "2", extra={"lead_time": 4.0}), label("d", "2"),
              label("m", "2", source="machine"), label("s", "3", source="seed")]
    summary = annotator_summary(labels, CLASSES)
    assert summary["tasks_done"] == 4
    assert summary["median_lead_time_s"] == 4.0 and summary["n_lead_times"] == 3
    assert annotator_summary([], CLASSES)["median_lead_time_s"] is None


def test_labels_since_takes_naive_times_as_utc():
    old, new = label("a", "1", at=T0), label("b", "1", at=(T0 + timedelta(hours=1)))
    naive_cut = (T0 + timedelta(minutes=30)).replace(tzinfo=None)
    assert [lab.key for lab in labels_since([old, new], naive_cut)] == ["b"]
    assert len(labels_since([old, new], None)) == 2


def test_class_balance_splits_people_and_machine():
    labels = [label("a", "1"), label("b", "1", source="seed"), label("c", "2", source="machine")]
    balance = class_balance(labels, CLASSES)
    assert balance["human"]["1"] == 2 and balance["machine"]["2"] == 1
    assert sum(balance["human"].values()) == 2 and balance["human"]["0"] == 0


# ---- drift --------------------------------------------------------------------------------
def outputs(n, rng, *, confident=3.0, class_weights=None, centre=0.0, dim=16):
    """Model-like outputs: softmax probabilities over 10 classes whose predicted class follows
    ``class_weights``, with logits scaled by ``confident``; embeddings around ``centre``."""
    weights = np.ones(10) / 10 if class_weights is None else np.asarray(class_weights)
    cls = rng.choice(10, size=n, p=weights / weights.sum())
    logits = rng.normal(size=(n, 10))
    logits[np.arange(n), cls] += confident
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    emb = rng.normal(size=(n, dim)) + centre
    return probs, emb


@pytest.mark.parametrize("seed", range(5))
def test_no_drift_between_samples_of_one_distribution(seed):
    rng = np.random.default_rng(seed)
    ref, new = outputs(500, rng), outputs(150, rng)
    result = detect_drift(ref[0], new[0], ref[1], new[1], seed=seed)
    assert not result["drift"] and result["warning"] is None
    assert set(result["signals"]) == {"confidence", "predictions", "embeddings"}


def test_each_signal_fires_on_its_own_shift():
    rng = np.random.default_rng(0)
    ref = outputs(500, rng)
    less_sure = outputs(200, rng, confident=1.0)
    other_mix = outputs(200, rng, class_weights=[5, 5, 1, 1, 1, 1, 1, 1, 1, 1])
    moved = outputs(200, rng, centre=0.3)  # 0.3 per dim = 0.3 spread units in 16 dims
    flagged = {name: {s for s, v in detect_drift(ref[0], new[0], ref[1], new[1])["signals"]
                      .items() if v["drift"]}
               for name, new in [("less_sure", less_sure), ("other_mix", other_mix),
                                 ("moved", moved)]}
    assert flagged == {"less_sure": {"confidence"}, "other_mix": {"predictions"},
                       "moved": {"embeddings"}}


def test_a_tiny_shift_in_a_huge_batch_is_not_drift():
    rng = np.random.default_rng(0)
    ref, new = outputs(5000, rng), outputs(20000, rng, centre=0.02)
    emb = detect_drift(ref[0], new[0], ref[1], new[1])["signals"]["embeddings"]
    assert emb["p_value"] < 0.01  # real, and detectable at this size ...
    assert emb["effect"] < 0.25 and not emb["drift"]  # ... but too small to warn about


def test_drift_is_deterministic_and_works_without_embeddings():
    rng = np.random.default_rng(0)
    ref, new = outputs(300, rng), outputs(100, rng, centre=0.5)
    assert detect_drift(ref[0], new[0], ref[1], new[1], seed=3) == detect_drift(
        ref[0], new[0], ref[1], new[1], seed=3)
    assert set(detect_drift(ref[0], new[0])["signals"]) == {"confidence", "predictions"}


def test_drift_rejects_bad_input_with_the_reason():
    rng = np.random.default_rng(0)
    ref, new = outputs(100, rng), outputs(MIN_ITEMS - 1, rng)
    with pytest.raises(ValueError, match="at least 20"):
        detect_drift(ref[0], new[0])
    with pytest.raises(ValueError, match="same model"):
        detect_drift(ref[0], ref[0][:, :5])
    with pytest.raises(ValueError, match="both samples or for neither"):
        detect_drift(ref[0], ref[0], ref[1], None)
    with pytest.raises(ValueError, match="one row per probability row"):
        detect_drift(ref[0], ref[0], ref[1], ref[1][:50])


@pytest.mark.parametrize("seed", range(5))
def test_box_drift_fires_on_its_own_shift_and_not_between_samples_alike(seed):
    rng = np.random.default_rng(seed)

    def images(n, *, sure=(4, 1.5), boxes=3.0):  # confidence in [0.5, 1], boxes per image
        return 0.5 + 0.5 * rng.beta(*sure, size=n), rng.poisson(boxes, size=n)

    ref = images(400)
    flagged = {name: {s for s, v in detect_image_drift(ref[0], new[0], ref[1], new[1])[
        "signals"].items() if v["drift"]}
        for name, new in [("alike", images(150)), ("less_sure", images(150, sure=(1.5, 2))),
                          ("busier", images(150, boxes=6.0))]}
    assert flagged == {"alike": set(), "less_sure": {"confidence"}, "busier": {"boxes"}}


def test_box_drift_rejects_bad_input_with_the_reason():
    conf, boxes = np.full(30, 0.9), np.ones(30)
    with pytest.raises(ValueError, match="the test needs 20"):
        detect_image_drift(conf, conf[:5], boxes, boxes[:5])
    with pytest.raises(ValueError, match="new_boxes has 29 rows"):
        detect_image_drift(conf, conf, boxes, boxes[:29])
    with pytest.raises(ValueError, match="one finite number per image"):
        detect_image_drift(conf, np.full(30, np.nan), boxes, boxes)


def test_box_effort_counts_boxes_kept_from_the_pre_annotation_and_drawn():
    box = {"label": "3", "x": 10.0, "y": 10.0, "w": 20.0, "h": 20.0}
    moved = dict(box, x=13.0)  # IoU 0.74 with box: kept, though moved
    other = {"label": "7", "x": 60.0, "y": 60.0, "w": 10.0, "h": 10.0}

    def boxes_label(value, shown=None, source="human"):
        extra = {} if shown is None else {"predicted_value": {"boxes": shown}}
        return LabelRecord("k", "x", source, "p", None, None, None, T0, None, extra,
                           {"width": 100, "height": 100, "boxes": value})

    labels = [boxes_label([moved, other], shown=[box]),  # one kept (moved), one drawn
              boxes_label([box], shown=[dict(box, label="5")]),  # wrong class: drawn anew
              boxes_label([box, other]),  # shown nothing (a blind reference): both drawn
              boxes_label([], shown=[box]),  # "nothing here": none drawn, none kept
              boxes_label([box], shown=[box], source="machine")]  # not people's work
    assert box_effort(labels) == {"drawn": 4, "kept": 1}
