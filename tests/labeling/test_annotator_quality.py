"""Each person's error rate from overlapping answers (one-coin Dawid-Skene, crowd-kit)."""

from __future__ import annotations

import numpy as np

from labeling.annotator_quality import annotator_quality

CLASSES = [str(d) for d in range(10)]


def _crowd(rates: dict[str, float], items: int, seed: int):
    """(votes, each person's realized error rate against the truth)."""
    rng = np.random.default_rng(seed)
    votes, wrong = {}, dict.fromkeys(rates, 0)
    for i in range(items):
        truth = int(rng.integers(10))
        votes[f"i{i}"] = {
            person: str(truth if rng.random() >= rate else (truth + 1 + rng.integers(9)) % 10)
            for person, rate in rates.items()}
        for person, answer in votes[f"i{i}"].items():
            wrong[person] += answer != str(truth)
    return votes, {p: n / items for p, n in wrong.items()}


def test_people_are_ranked_by_their_real_error_and_the_interval_covers_it():
    votes, realized = _crowd({"careful": 0.02, "usual": 0.08, "sloppy": 0.25}, 300, seed=3)
    found = {q.name: q for q in annotator_quality(votes)}
    assert sorted(found, key=lambda n: found[n].rate) == ["careful", "usual", "sloppy"]
    for name, rate in realized.items():
        lo, hi = found[name].interval
        assert lo <= rate <= hi, (name, rate, found[name])
        assert abs(found[name].rate - rate) < 0.05
        assert found[name].items == 300
    # Where the other two agree, "sloppy" differs from them about a quarter of the time.
    assert 40 < found["sloppy"].disagreements < 110


def test_nothing_is_claimed_without_two_people_on_one_item():
    assert annotator_quality({"a": {"p1": "cat"}, "b": {"p2": "dog"}}) == []
    assert annotator_quality({}) == []


def test_a_person_with_one_shared_item_gets_an_interval_as_wide_as_one_item_allows():
    # It read "errs on 100.0% of 1 shared items (95% interval 100.0-100.0%)": every resample
    # of their one item gave the same rate.
    votes, _ = _crowd({"a": 0.05, "b": 0.05, "c": 0.05}, 60, seed=1)
    votes["odd"] = {"a": "3", "b": "3", "newcomer": "7"}
    newcomer = next(q for q in annotator_quality(votes) if q.name == "newcomer")
    assert newcomer.items == 1 and newcomer.rate > 0.9
    lo, hi = newcomer.interval
    assert lo < 0.05 and hi == 1.0
