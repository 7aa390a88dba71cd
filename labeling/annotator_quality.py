"""How often each person errs, from the items several people answered: a one-coin Dawid-Skene
model (crowd-kit's ``OneCoinDawidSkene``) on the human answers only, with bootstrap intervals.

Why crowd-kit's EM rather than our own: it is the maintained implementation of the model
SageMaker Ground Truth's consolidation builds on, tested by its authors; an EM of our own would
be a second, untested copy. Why the one-coin variant: it learns one skill per person. The full
model learns a confusion matrix per person (90 free numbers for ten classes), which a few hundred
overlapping items cannot pin down. Why not cleanlab's multi-annotator scores: they put the model
into the consensus, circular for judging the people the model is checked against.

What the figures mean: a person's ``rate`` is the model's expected share of their answers that
are wrong, over the items they answered that someone else answered too. Those items are not a
random sample of the pool: most reached a second person because the first disagreed with the
model, and they are harder than most. The rate ranks people and shows who needs help; it does
not certify anything (the bounds use ``labeling.annotators``, on the random double check).
The interval: the 2.5th and 97.5th percentiles (at 95%) of the rate over resamples of the
items, fitted again each time, widened to at least the Clopper-Pearson interval of that rate on
the person's own count of items (the resamples alone miss how little a few items say).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from labeling.bounds import precision_interval

METHOD = "one-coin Dawid-Skene (crowd-kit), bootstrap over items"


@dataclass(frozen=True)
class AnnotatorQuality:
    """One person's error rate on the items others answered too, and plain counts beside it:
    ``disagreements`` with the others' plurality where that exists."""

    name: str
    items: int
    disagreements: int
    rate: float | None
    interval: tuple[float, float]
    method: str = METHOD

    def to_dict(self) -> dict:
        return {**self.__dict__, "interval": list(self.interval)}


def annotator_quality(votes: Mapping[str, Mapping[str, str]], *, confidence: float = 0.95,
                      resamples: int = 20, seed: int = 0) -> list[AnnotatorQuality]:
    """Per person, from ``votes`` (item -> person -> answer), on the items with 2+ answers;
    [] while fewer than two people share an item."""
    shared = {k: dict(v) for k, v in votes.items() if len(v) >= 2}
    people = sorted({p for v in shared.values() for p in v})
    if len(people) < 2:
        return []
    keys = sorted(shared)
    rates = _rates(shared, keys)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {p: [] for p in people}
    for _ in range(resamples):
        picked = [keys[i] for i in rng.integers(len(keys), size=len(keys))]
        # Items drawn twice are fitted as two items: rename the repeats.
        sample = {f"{k}#{n}": shared[k] for n, k in enumerate(picked)}
        for person, rate in _rates(sample, list(sample)).items():
            draws[person].append(rate)
    tail = (1.0 - confidence) / 2
    out = []
    for person in people:
        mine = [k for k in keys if person in shared[k]]
        got = draws[person]
        interval = ((float(np.quantile(got, tail)), float(np.quantile(got, 1 - tail)))
                    if got else (0.0, 1.0))
        if person in rates:
            # At least as wide as a rate measured on their n items can be known: resamples of
            # a person's one item give that item's rate every time ("100.0-100.0%").
            lo, hi = precision_interval(round(rates[person] * len(mine)), len(mine),
                                        confidence=confidence)
            interval = (min(interval[0], lo), max(interval[1], hi))
        out.append(AnnotatorQuality(person, len(mine), _disagreements(shared, mine, person),
                                    rates.get(person), interval))
    return out


def _rates(shared: Mapping[str, Mapping[str, str]], keys: list[str]) -> dict[str, float]:
    """Person -> mean over their answers of 1 - P(the answer is the item's true label)."""
    import pandas as pd  # noqa: PLC0415 - pandas and crowd-kit take a second or two to import
    from crowdkit.aggregation import OneCoinDawidSkene  # noqa: PLC0415

    rows = [(k, p, a) for k in keys for p, a in shared[k].items()]
    data = pd.DataFrame(rows, columns=["task", "worker", "label"])
    with warnings.catch_warnings():  # crowd-kit 1.4.2 uses pandas keywords pandas 3 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        probas = OneCoinDawidSkene(n_iter=100).fit(data).probas_
    wrong: dict[str, list[float]] = {}
    for task, worker, label in rows:
        wrong.setdefault(worker, []).append(1.0 - float(probas.at[task, label]))
    return {w: float(np.mean(v)) for w, v in wrong.items()}


def _disagreements(shared, keys, person) -> int:
    n = 0
    for k in keys:
        others = Counter(a for p, a in shared[k].items() if p != person).most_common(2)
        if len(others) == 1 or others[0][1] > others[1][1]:
            n += int(shared[k][person] != others[0][0])
    return n
