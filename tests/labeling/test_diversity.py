"""Diversity strategies on embeddings: core-set covers the pool farthest-first, BADGE seeds
k-means++ on gradient embeddings it never builds."""

import numpy as np
import pytest

from labeling.diversity import _sq_dist
from labeling.strategies import needs_features, select_for_review
from tests.labeling.test_strategies import _two_clusters


def test_core_set_takes_the_farthest_item_from_everything_labeled_first():
    line = np.arange(11, dtype=float)[:, None]  # items at 0, 1, ..., 10
    probs = np.full((11, 2), 0.5)
    picked = select_for_review(probs, 2, strategy="core_set", rng=np.random.default_rng(0),
                               features=line, labeled_features=np.array([[0.0]]))
    assert picked.tolist() == [10, 5]


def test_core_set_steers_away_from_the_labeled_cluster():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        features = _two_clusters(rng)
        labeled = features[:2] + 0.001
        picked = select_for_review(np.full((20, 2), 0.5), 1, strategy="core_set", rng=rng,
                                   features=features, labeled_features=labeled)
        assert picked[0] >= 10


def test_badge_spreads_a_batch_over_equally_uncertain_clusters():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        features = _two_clusters(rng)
        picked = select_for_review(np.full((20, 2), 0.5), 2, strategy="badge", rng=rng,
                                   features=features)
        assert sorted(i // 10 for i in picked) == [0, 1]


def test_badge_first_takes_the_most_uncertain_of_items_alike():
    rng = np.random.default_rng(0)
    features = np.ones((5, 3))
    probs = np.array([[0.99, 0.01], [0.9, 0.1], [0.5, 0.5], [0.8, 0.2], [0.7, 0.3]])
    picked = select_for_review(probs, 1, strategy="badge", rng=rng, features=features)
    assert picked.tolist() == [2]


def test_badge_distance_from_factors_equals_the_gradient_embedding_distance():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), 30)
    h = rng.normal(size=(30, 7))
    u = p.copy()
    u[np.arange(30), p.argmax(1)] -= 1
    g = (u[:, :, None] * h[:, None, :]).reshape(30, -1)  # the [N, K * D] it never builds
    sq = (u * u).sum(1) * (h * h).sum(1)
    for j in (0, 13, 29):
        assert np.allclose(_sq_dist(u, h, sq, j), ((g - g[j]) ** 2).sum(1))


@pytest.mark.parametrize("strategy", ["core_set", "badge"])
def test_diversity_strategies_need_features(strategy):
    assert needs_features(strategy)
    with pytest.raises(ValueError, match="needs features"):
        select_for_review(np.full((3, 2), 0.5), 1, strategy=strategy,
                          rng=np.random.default_rng(0))


def test_needs_features_knows_every_strategy_and_refuses_unknown_names():
    assert not needs_features("margin")
    with pytest.raises(ValueError, match="unknown query strategy"):
        needs_features("bald")
