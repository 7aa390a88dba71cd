"""With a fallible crowd, second opinions make the bound on machine labels tighter, and the
bound still holds against the truth (a seeded simulation, no server: the rules as functions).

The world: 10 classes; items have a hardness (mean 1); the model errs more on hard items and
then mostly names the item's look-alike class; three people err at 5/10/15% times the
hardness, mostly toward the same look-alike class, and the third accepts the shown prediction
half the time. The references are the people's answers on 3,000 random validation items:
either one person each, or one person plus second opinions by the rule of
``labeling.studio.opinions.plan``. rho (how often the reference repeats the model's mistake)
is bounded by what the simulation knows of its people, plus a margin.
"""

from __future__ import annotations

import numpy as np

from labeling.bounds import noisy_error_upper_bound
from labeling.studio.crowd import CrowdMember, answer
from labeling.studio.opinions import plan

K = 10
CLASSES = [str(k) for k in range(K)]
PEOPLE = [CrowdMember("a", 1, 0.05, skip_rate=0.0), CrowdMember("b", 2, 0.10, skip_rate=0.0),
          CrowdMember("c", 3, 0.15, skip_rate=0.0, anchor_rate=0.5)]


def _world(rng, n):
    hardness = rng.lognormal(0, 1, n)
    hardness /= hardness.mean()
    truth = rng.integers(K, size=n)
    alike = (truth + rng.integers(1, K, size=n)) % K
    wrong = rng.random(n) < np.minimum(0.9, 0.03 * hardness)
    other = (truth + rng.integers(1, K, size=n)) % K
    model = np.where(wrong, np.where(rng.random(n) < 0.7, alike, other), truth)
    conf = np.where(wrong, rng.beta(4, 2, n), rng.beta(30, 1, n))
    return hardness, truth, alike, model, conf


def _references(rng, hardness, truth, alike, model):
    """(one person's answers, adjudicated answers with -1 for a tie, answers given)."""
    single, adjudicated, cost = [], [], 0
    for i in range(len(truth)):
        order = rng.permutation(len(PEOPLE))

        def ask(j, i=i, order=order):
            return int(answer(PEOPLE[order[j]], CLASSES[truth[i]], CLASSES, rng,
                              hardness=float(hardness[i]), confusable=CLASSES[alike[i]],
                              shown=CLASSES[model[i]]))

        votes = {"p0": CLASSES[ask(0)]}
        single.append(int(votes["p0"]))
        asked = 1
        while True:
            more = plan({"k": votes}, {"k": CLASSES[model[i]]}, {"k"}, {"k": i}, {"k": asked})
            if not more:
                break
            asked = more[0].overlap
            votes[f"p{asked - 1}"] = CLASSES[ask(asked - 1)]
        cost += len(votes)
        values, counts = np.unique(list(votes.values()), return_counts=True)
        top = values[counts == counts.max()]
        adjudicated.append(int(top[0]) if len(top) == 1 else -1)
    return np.array(single), np.array(adjudicated), cost


def test_second_opinions_certify_a_lower_error_and_the_bound_holds_against_the_truth():
    rng = np.random.default_rng(7)
    n_val, n_pool = 3000, 6000
    hardness, truth, alike, model, conf = _world(rng, n_val + n_pool)
    val = slice(0, n_val)
    single, adjudicated, cost = _references(rng, hardness[val], truth[val], alike[val],
                                            model[val])
    model_wrong = model[val] != truth[val]
    # rho as the simulation knows it (what a gold sample would measure), plus a margin.
    rho = max(float(np.mean(ref[model_wrong] == model[val][model_wrong]))
              for ref in (single, adjudicated)) + 0.05
    threshold = np.quantile(conf[val], 0.4)  # the top 60% of the validation items
    region = conf[val] >= threshold
    bounds = {}
    for name, ref in (("single", single), ("adjudicated", adjudicated)):
        kept = region & (ref >= 0)  # a tie is no reference
        k = int(np.sum(ref[kept] != model[val][kept]))
        bounds[name] = noisy_error_upper_bound(k, int(kept.sum()), confidence=0.95,
                                               reference_error=rho)
    pool = slice(n_val, None)
    accepted = conf[pool] >= threshold
    realized = float(np.mean(model[pool][accepted] != truth[pool][accepted]))
    assert bounds["adjudicated"] >= realized  # the bound holds against the truth
    assert bounds["adjudicated"] < 0.6 * bounds["single"]  # second opinions: visibly tighter
    assert bounds["single"] > 0.05  # one fallible answer each cannot certify 2%
    assert n_val < cost < 1.5 * n_val  # at less than half an extra answer per item
