"""From scored boxes to an image: the machine's label, its confidence, its uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.box_scores import (
    choose_uncertain,
    image_confidence,
    list_box_strategies,
    machine_value,
    uncertainty,
)


def pred(*scores):
    return {"width": 100, "height": 80,
            "boxes": [{"label": "cat", "x": 10 * i, "y": 5, "w": 8, "h": 8, "score": s}
                      for i, s in enumerate(scores)]}


def test_the_machine_label_keeps_the_boxes_scored_half_or_more():
    value = machine_value(pred(0.9, 0.5, 0.3))
    assert [b["x"] for b in value["boxes"]] == [0, 10]
    assert value["boxes"][0]["score"] == 0.9 and value["width"] == 100


def test_confidence_is_how_sure_the_least_sure_decision_is():
    assert image_confidence([]) == 1.0
    assert image_confidence([0.9, 0.2]) == pytest.approx(0.8)
    assert image_confidence([0.95, 0.55]) == pytest.approx(0.55)
    # A hundred clutter candidates do not drown a sure image (a product would: 0.8^100).
    assert image_confidence([0.9] + [0.2] * 100) == pytest.approx(0.8)


def test_the_two_uncertainties_rank_busy_and_hard_images_differently():
    busy = pred(0.7, 0.7, 0.7, 0.35, 0.35)  # several middling boxes
    hard = pred(0.99, 0.52)  # one box right on the line
    lc = uncertainty([busy, hard], "least_confident")
    db = uncertainty([busy, hard], "doubtful_boxes")
    assert lc[1] > lc[0]  # 0.48 > 0.35
    assert db[0] > db[1]  # five doubtful decisions > one
    with pytest.raises(ValueError, match="valid: doubtful_boxes, least_confident"):
        uncertainty([busy], "margin")
    assert list_box_strategies() == ["doubtful_boxes", "least_confident", "random"]


def test_choosing_takes_the_most_uncertain_and_breaks_ties_at_random():
    preds = [pred(0.99), pred(0.5), pred(0.6), pred(0.99)]
    rng = np.random.default_rng(0)
    assert list(choose_uncertain(preds, 2, kind="least_confident", rng=rng)) == [1, 2]
    firsts = {int(choose_uncertain([pred(0.7), pred(0.7)], 1, kind="least_confident",
                                   rng=np.random.default_rng(s))[0]) for s in range(20)}
    assert firsts == {0, 1}
    drawn = choose_uncertain(preds, 4, kind="random", rng=rng)
    assert sorted(drawn.tolist()) == [0, 1, 2, 3]
