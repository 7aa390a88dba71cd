"""The second-opinion rule and the simulated crowd's answers, on plain data."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.studio.crowd import CrowdMember, answer, crowd_rates
from labeling.studio.opinions import boxes_differ, boxes_text, double_checked, plan, review_queue

CLASSES = ("cat", "dog", "emu")


def test_only_a_held_out_first_answer_that_differs_from_the_model_asks_a_second_person():
    votes = {"a": {"p1": "dog"}, "b": {"p1": "cat"}, "c": {"p1": "dog"}, "d": {}}
    model = {"a": "cat", "b": "cat", "c": "cat", "d": "cat"}
    tasks = {"a": 1, "b": 2, "c": 3, "d": 4}
    asks = plan(votes, model, {"a", "b", "d"}, tasks, {})
    assert [(r.key, r.task_id, r.overlap) for r in asks] == [("a", 1, 2)]
    assert "differs from the model" in asks[0].reason
    assert plan(votes, model, {"a"}, tasks, {"a": 2}) == []  # asked already


def test_a_first_answer_against_a_sure_model_asks_two_more_people_at_once():
    # Where the model is sure, the second person would side with it and a third be needed
    # anyway: both are asked together, so the reference is settled a round sooner.
    votes = {"a": {"p1": "dog"}, "b": {"p1": "dog"}, "c": {"p1": "cat"}}
    model = dict.fromkeys(votes, "cat")
    tasks = {"a": 1, "b": 2, "c": 3}
    asks = plan(votes, model, set(votes), tasks, {}, sure={"a", "c"})
    assert [(r.key, r.overlap) for r in asks] == [("a", 3), ("b", 2)]
    assert "differs from the sure model's 'cat'" in asks[0].reason
    # Raised to 2 before the model was sure: the third comes with the tie rule, once.
    votes["b"]["p2"] = "cat"
    assert [(r.key, r.overlap) for r in plan(votes, model, {"b"}, tasks, {"b": 2},
                                             sure={"b"})] == [("b", 3)]
    assert plan(votes, model, set(votes), tasks, {"a": 3, "b": 3}, sure={"a", "b"}) == []


def test_two_people_who_differ_ask_a_third_and_three_is_the_most():
    votes = {"a": {"p1": "dog", "p2": "cat"}, "b": {"p1": "dog", "p2": "dog"},
             "c": {"p1": "dog", "p2": "cat", "p3": "emu"}}
    model = dict.fromkeys(votes, "cat")
    asks = plan(votes, model, set(votes), {"a": 1, "b": 2, "c": 3}, {"a": 2, "b": 2, "c": 3})
    assert [(r.key, r.overlap) for r in asks] == [("a", 3)]


def _boxes(*rows):
    return {"width": 160, "height": 120,
            "boxes": [{"label": lab, "x": x, "y": y, "w": w, "h": h} for lab, x, y, w, h in rows]}


def test_boxes_that_miss_the_models_ask_a_second_person_and_two_who_differ_a_third():
    model = _boxes(("cat", 16, 12, 48, 36), ("dog", 90, 40, 40, 60))
    votes = {
        "moved": {"p1": _boxes(("cat", 70, 70, 48, 36), ("dog", 90, 40, 40, 60))},
        "jittered": {"p1": _boxes(("cat", 18, 13, 47, 35), ("dog", 91, 41, 40, 58))},
        "relabeled": {"p1": _boxes(("dog", 16, 12, 48, 36), ("dog", 90, 40, 40, 60))},
        "missed": {"p1": _boxes(("cat", 16, 12, 48, 36))},
        "extra": {"p1": _boxes(("cat", 16, 12, 48, 36), ("dog", 90, 40, 40, 60),
                               ("cat", 130, 5, 20, 20))},
        "agreed": {"p1": _boxes(("cat", 70, 70, 48, 36)), "p2": _boxes(("cat", 71, 70, 48, 36))},
        "split": {"p1": _boxes(("cat", 70, 70, 48, 36)), "p2": model},
        "not held out": {"p1": _boxes()},
    }
    tasks = {k: i for i, k in enumerate(votes)}
    held = set(votes) - {"not held out"}
    asks = plan(votes, dict.fromkeys(votes, model), held, tasks,
                {"agreed": 2, "split": 2}, differs=boxes_differ, describe=boxes_text)
    assert {r.key: r.overlap for r in asks} == {"moved": 2, "relabeled": 2, "missed": 2,
                                                 "extra": 2, "split": 3}
    reason = next(r.reason for r in asks if r.key == "missed")
    assert reason == "the first answer 1 box(es): cat differs from the model's 2 box(es): cat dog"
    assert not boxes_differ(_boxes(), {"boxes": []})  # "nothing here" twice agrees


def test_a_random_double_check_asks_a_second_person_even_when_the_first_agrees():
    keys = [f"sha256:{i:04d}" for i in range(2000)]
    chosen = double_checked(keys, 0.1)
    assert 150 < len(chosen) < 250  # about a tenth, fixed by the keys alone
    assert chosen == double_checked(keys, 0.1)
    assert double_checked(keys, 0.0) == set()
    key = sorted(chosen)[0]
    asks = plan({key: {"p1": "cat"}}, {key: "cat"}, {key}, {key: 9}, {}, double_check=chosen)
    assert [(r.key, r.overlap, r.reason) for r in asks] == [(key, 2, "random double check")]


def test_the_review_queue_takes_the_most_suspect_training_labels_within_the_budget():
    votes = {"sure": {"p1": "dog"}, "odd": {"p1": "emu"}, "agrees": {"p1": "cat"},
             "held": {"p1": "dog"}, "asked": {"p1": "dog"}, "two": {"p1": "dog", "p2": "dog"},
             "unscored": {"p1": "dog"}, "blind": {"p1": "dog"}}
    shown = dict.fromkeys(votes, "cat")
    del shown["blind"]  # nobody was shown a prediction: nothing to disagree with
    # The shown prediction's probability of the person's answer: lowest is most suspect.
    score = {"sure": 0.30, "odd": 0.01, "agrees": 0.90, "held": 0.0, "asked": 0.0}
    queue = review_queue(votes, shown, {"held"}, {"asked": 2}, score, limit=10)
    assert queue == ["odd", "sure", "unscored"]
    assert review_queue(votes, shown, {"held"}, {"asked": 2}, score, limit=1) == ["odd"]
    assert review_queue(votes, shown, set(), {}, score, limit=0) == []
    # An answer that took the shown pre-annotation is suspect once the champion, trained on
    # it, still says otherwise.
    assert "agrees" in review_queue(votes, shown, {"held"}, {"asked": 2}, score, limit=10,
                                    current={"agrees": "dog"})
    assert "agrees" not in review_queue(votes, shown, {"held"}, {"asked": 2}, score, limit=10,
                                        current={"agrees": "cat"})
    asks = plan(votes, shown, {"held"}, dict.fromkeys(votes, 7), {"asked": 2}, review=["odd"])
    assert {(r.key, r.overlap) for r in asks} == {("odd", 2), ("held", 2)}
    assert next(r for r in asks if r.key == "odd").reason.startswith("review:")
    # Once reviewed, two people who differ on a training label get a third, as held-out ones.
    votes["odd"] = {"p1": "emu", "p2": "cat"}
    again = plan(votes, shown, set(), {"odd": 7}, {"odd": 2})
    assert [(r.key, r.overlap) for r in again] == [("odd", 3)]


def test_the_crowd_errs_more_on_hard_items_and_toward_the_confusable_class():
    rng = np.random.default_rng(0)
    person = CrowdMember("p", 1, error_rate=0.05, skip_rate=0.0)
    easy = [answer(person, "cat", CLASSES, rng, hardness=0.2) for _ in range(4000)]
    hard = [answer(person, "cat", CLASSES, rng, hardness=5.0, confusable="emu")
            for _ in range(4000)]
    easy_err = np.mean([a != "cat" for a in easy])
    hard_wrong = [a for a in hard if a != "cat"]
    assert easy_err < 0.02 and 0.2 < len(hard_wrong) / 4000 < 0.3
    assert hard_wrong.count("emu") / len(hard_wrong) > 0.7  # confusable, not uniform


def test_an_anchoring_person_takes_the_shown_pre_annotation_and_skips_are_none():
    rng = np.random.default_rng(1)
    anchor = CrowdMember("a", 2, error_rate=0.0, skip_rate=0.0, anchor_rate=1.0)
    assert answer(anchor, "cat", CLASSES, rng, shown="dog") == "dog"
    skipper = CrowdMember("s", 3, error_rate=0.0, skip_rate=1.0)
    assert answer(skipper, "cat", CLASSES, rng) is None
    with pytest.raises(ValueError, match="error_rate of x must be in"):
        CrowdMember("x", 4, error_rate=1.5)


def test_crowd_rates_spread_around_their_mean():
    rates = crowd_rates(3, 0.1)
    assert rates == pytest.approx([0.05, 0.1, 0.15]) and np.mean(rates) == pytest.approx(0.1)
    assert crowd_rates(1, 0.07) == [0.07]
    with pytest.raises(ValueError):
        crowd_rates(0, 0.1)
