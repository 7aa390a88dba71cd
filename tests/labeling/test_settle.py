"""Held-out references against the model by one vote go to more people, up to five."""

from __future__ import annotations

from labeling.studio.settle import settle


def test_a_reference_against_the_model_by_one_vote_or_a_tie_gets_one_more_person():
    votes = {
        "two-one against": {"p1": "dog", "p2": "cat", "p3": "dog"},
        "two-one for": {"p1": "cat", "p2": "dog", "p3": "cat"},
        "three-way": {"p1": "dog", "p2": "emu", "p3": "cat"},
        "three-nil against": {"p1": "dog", "p2": "dog", "p3": "dog"},
        "two-two": {"p1": "dog", "p2": "cat", "p3": "dog", "p4": "cat"},
        "three-one against": {"p1": "dog", "p2": "cat", "p3": "dog", "p4": "dog"},
        "two-one-one": {"p1": "dog", "p2": "cat", "p3": "dog", "p4": "emu"},
        "five already": {"p1": "dog", "p2": "cat", "p3": "dog", "p4": "cat", "p5": "emu"},
        "not held out": {"p1": "dog", "p2": "cat", "p3": "dog"},
        "two only": {"p1": "dog", "p2": "cat"},
    }
    model = dict.fromkeys(votes, "cat")
    tasks = {k: i for i, k in enumerate(votes)}
    held = set(votes) - {"not held out"}
    asks = settle(votes, model, held, tasks, {})
    # Two-one-one after four people stays: a fifth could only tie it or confirm it.
    assert {r.key: r.overlap for r in asks} == {"two-one against": 4, "three-way": 4,
                                                "two-two": 5}
    reason = next(r.reason for r in asks if r.key == "two-one against")
    assert reason == "people (dog x2, cat x1) go against the model's 'cat' by one vote or tie"
    # Asked already (the fourth person has not answered yet): nothing is asked twice.
    assert settle(votes, model, held, tasks, {"two-one against": 4, "three-way": 4,
                                              "two-two": 5}) == []
    # Four accounts: only a tie goes on (a fourth person on a 2-1 could make a 2-2 that
    # nobody is left to break); three: nothing can be asked.
    assert {r.key for r in settle(votes, model, held, tasks, {}, max_people=4)} == {
        "three-way"}
    assert settle(votes, model, held, tasks, {}, max_people=3) == []
