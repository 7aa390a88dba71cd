"""The simulated box annotator: careful jitter that still counts as right, faults at the rate
asked for and of the kinds people make, and a person who keeps the model's boxes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from labeling.box_faults import (
    answer_with_pre_annotation,
    simulate_box_answer,
    simulate_box_answer_with_faults,
)
from labeling.boxes import BoxError, box_iou, check_boxes, image_matches

W, H = 150, 120


def random_truth(rng, n_images=1500):
    """Images of 0-4 boxes of 6-48 px, not overlapping, like the mnist-detection set's."""
    images = []
    for _ in range(n_images):
        boxes = []
        for _ in range(int(rng.integers(0, 5))):
            w, h = rng.uniform(6, 48, 2)
            b = {"label": str(rng.integers(10)), "x": float(rng.uniform(0, W - w)),
                 "y": float(rng.uniform(0, H - h)), "w": float(w), "h": float(h)}
            if all(box_iou(b, other) == 0 for other in boxes):
                boxes.append(b)
        images.append(boxes)
    return images


@pytest.fixture(scope="module")
def truth():
    return random_truth(np.random.default_rng(1))


def answers(truth, fault_rate, seed=0, **options):
    rng = np.random.default_rng(seed)
    return [simulate_box_answer_with_faults(t, W, H, rng=rng, fault_rate=fault_rate, **options)
            for t in truth]


def test_no_faults_gives_the_truth_back_with_a_careful_jitter(truth):
    for t, answer in zip(truth, answers(truth, 0.0), strict=True):
        assert answer.faults == ()
        assert image_matches(t, answer.boxes)
        assert all(box_iou(a, b) >= 0.85 for a, b in zip(t, answer.boxes, strict=True))
    moved = [a != b for t, ans in zip(truth, answers(truth, 0.0), strict=True)
             for a, b in zip(t, ans.boxes, strict=True)]
    assert np.mean(moved) > 0.9  # even a careful person is off by a little


@pytest.mark.parametrize("fault_rate", [0.05, 0.15, 0.3])
def test_the_measured_fault_rate_is_the_one_asked_for(truth, fault_rate):
    n_boxes = sum(len(t) for t in truth)
    made = answers(truth, fault_rate)
    rate = sum(len(a.faults) for a in made) / n_boxes
    assert rate == pytest.approx(fault_rate, abs=0.025)
    kinds = Counter(f.kind for a in made for f in a.faults)
    assert set(kinds) == {"miss", "bad_box", "wrong_class", "extra"}
    assert kinds["extra"] < kinds["miss"]  # extra boxes are the rare fault


def test_each_fault_makes_the_image_wrong_and_no_fault_keeps_it_right(truth):
    for t, answer in zip(truth, answers(truth, 0.3), strict=True):
        assert image_matches(t, answer.boxes) == (answer.faults == ())
        check_boxes(answer.boxes, W, H)  # inside the image, never zero-area
        for fault in answer.faults:
            if fault.kind == "bad_box":
                assert max(box_iou(t[fault.truth_index], b) for b in answer.boxes) < 0.5


def test_misses_go_to_small_objects_and_wrong_classes_to_confusable_ones(truth):
    made = answers(truth, 0.3)
    small, large = Counter(), Counter()
    for t, answer in zip(truth, made, strict=True):
        missed = {f.truth_index for f in answer.faults if f.kind == "miss"}
        for i, b in enumerate(t):
            side = np.sqrt(b["w"] * b["h"])
            if side <= 16 or side >= 36:
                (small if side <= 16 else large)[i in missed] += 1
    miss_small = small[True] / small.total()
    miss_large = large[True] / large.total()
    assert miss_small > 3 * miss_large
    counts = Counter()
    for t, answer in zip(truth, made, strict=True):
        for f in answer.faults:
            if f.kind == "wrong_class" and t[f.truth_index]["label"] == "4":
                drawn = [b for b in answer.boxes if box_iou(b, t[f.truth_index]) >= 0.85]
                counts.update(b["label"] for b in drawn)
    assert counts.most_common(1)[0][0] == "9"
    assert counts["9"] > 0.5 * counts.total()


def test_an_extra_box_lands_on_clutter_when_there_is_some():
    clutter = [{"x": 100.0, "y": 10.0, "w": 6.0, "h": 8.0}]
    truth = [{"label": "3", "x": 10.0, "y": 10.0, "w": 30.0, "h": 30.0}]
    made = answers([truth] * 400, 0.5, clutter=clutter)
    extras = [a for a in made if any(f.kind == "extra" for f in a.faults)]
    assert 0.02 * 400 < len(extras) < 0.1 * 400  # rate * 0.1 * one box = 5% of the images
    for answer in extras:
        assert any(box_iou(b, {**clutter[0], "label": ""}) > 0.3 for b in answer.boxes)


def test_the_same_generator_state_gives_the_same_answer(truth):
    first = answers(truth[:200], 0.2, seed=5)
    assert first == answers(truth[:200], 0.2, seed=5)
    assert first != answers(truth[:200], 0.2, seed=6)
    rng = np.random.default_rng(5)
    assert simulate_box_answer(truth[0], W, H, rng=rng, fault_rate=0.2) == first[0].boxes


def test_a_person_shown_model_boxes_keeps_them_at_the_keep_rate(truth):
    rng = np.random.default_rng(3)
    model = [{"label": "8", "x": 1.0, "y": 1.0, "w": 10.0, "h": 10.0}]  # wrong on every image
    kept = [answer_with_pre_annotation(t, model, W, H, rng=rng, keep_rate=0.4, fault_rate=0.0)
            for t in truth]
    share = np.mean([a.kept_pre_annotation for a in kept])
    assert share == pytest.approx(0.4, abs=0.04)
    for t, answer in zip(truth, kept, strict=True):
        if answer.kept_pre_annotation:
            assert answer.boxes == model
        else:
            assert image_matches(t, answer.boxes)


def test_bad_inputs_are_refused_with_what_fixes_them():
    rng = np.random.default_rng(0)
    inside = [{"label": "1", "x": 1.0, "y": 1.0, "w": 5.0, "h": 5.0}]
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        simulate_box_answer(inside, W, H, rng=0, fault_rate=0.1)
    with pytest.raises(ValueError, match="fault_rate must be between 0 and 1, got 1.5"):
        simulate_box_answer(inside, W, H, rng=rng, fault_rate=1.5)
    outside = [{"label": "1", "x": 148.0, "y": 1.0, "w": 5.0, "h": 5.0}]
    with pytest.raises(BoxError, match="truth boxes, box 0: .*outside the 150 x 120 image"):
        simulate_box_answer(outside, W, H, rng=rng, fault_rate=0.1)
    with pytest.raises(BoxError, match="unknown class 'cat'"):
        simulate_box_answer([{**inside[0], "label": "cat"}], W, H, rng=rng, fault_rate=0.1)
    with pytest.raises(ValueError, match="keep_rate"):
        answer_with_pre_annotation(inside, inside, W, H, rng=rng, keep_rate=2, fault_rate=0)
