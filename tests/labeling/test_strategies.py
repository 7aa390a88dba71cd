"""Query strategies: properties over random probability arrays, and the errors users see."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modAL.batch import ranked_batch as modal_ranked_batch

from labeling.strategies import (
    get_strategy,
    list_strategies,
    select_for_review,
    uncertainty_scores,
)

UNCERTAINTY = ["least_confident", "margin", "entropy"]


@st.composite
def pools(draw, min_items=1, max_items=30):
    """(pred_probs [N, K], features [N, 3], n) with rows that sum to 1."""
    n_items = draw(st.integers(min_items, max_items))
    n_classes = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Mix of peaked and flat rows, with exact zeros, as softmax outputs of real models give.
    alpha = draw(st.sampled_from([0.05, 0.5, 5.0]))
    probs = rng.dirichlet(np.full(n_classes, alpha), size=n_items)
    probs[probs < 1e-9] = 0.0
    probs /= probs.sum(axis=1, keepdims=True)
    features = rng.normal(size=(n_items, 3))
    n = draw(st.integers(0, n_items))
    return probs, features, n


@settings(max_examples=60, deadline=None)
@given(pool=pools(), strategy=st.sampled_from(list_strategies()), seed=st.integers(0, 1000))
def test_every_strategy_returns_n_distinct_indices_in_range(pool, strategy, seed):
    probs, features, n = pool
    picked = select_for_review(
        probs, n, strategy=strategy, rng=np.random.default_rng(seed), features=features
    )
    assert picked.shape == (n,)
    assert np.issubdtype(picked.dtype, np.integer)
    assert len(set(picked.tolist())) == n
    assert ((picked >= 0) & (picked < len(probs))).all()


@settings(max_examples=60, deadline=None)
@given(pool=pools(min_items=2), kind=st.sampled_from(UNCERTAINTY), seed=st.integers(0, 1000))
def test_uncertainty_strategies_take_the_top_scores_in_order(pool, kind, seed):
    probs, _, n = pool
    scores = uncertainty_scores(probs, kind)
    picked = select_for_review(probs, n, strategy=kind, rng=np.random.default_rng(seed))
    chosen = scores[picked]
    assert (np.diff(chosen) <= 0).all(), "most uncertain first"
    rest = np.delete(scores, picked)
    if n and rest.size:
        assert chosen.min() >= rest.max()


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(1, 25),
    n_classes=st.integers(2, 6),
    data=st.data(),
    kind=st.sampled_from(UNCERTAINTY),
)
def test_the_uniform_row_among_confident_ones_is_chosen_first(n_items, n_classes, data, kind):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    confident = np.full((n_items, n_classes), 0.0)
    winners = rng.integers(n_classes, size=n_items)
    top = rng.uniform(0.9, 1.0, size=n_items)
    confident[:] = ((1 - top) / (n_classes - 1))[:, None]
    confident[np.arange(n_items), winners] = top
    where = data.draw(st.integers(0, n_items))
    probs = np.insert(confident, where, np.full(n_classes, 1 / n_classes), axis=0)
    picked = select_for_review(probs, 1, strategy=kind, rng=rng)
    assert picked.tolist() == [where]


def test_scores_point_the_same_way_for_every_kind():
    probs = np.array([[0.98, 0.01, 0.01], [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    for kind in UNCERTAINTY:
        scores = uncertainty_scores(probs, kind)
        assert scores[0] < scores[1] < scores[2], kind
    np.testing.assert_allclose(uncertainty_scores(probs, "least_confident"), [0.02, 0.5, 2 / 3])
    np.testing.assert_allclose(uncertainty_scores(probs, "margin"), [0.03, 0.8, 1.0])
    np.testing.assert_allclose(uncertainty_scores(probs, "entropy")[2], np.log(3))


def test_random_is_reproducible_by_seed_and_differs_across_seeds():
    probs = np.full((200, 4), 0.25)
    first = select_for_review(probs, 20, strategy="random", rng=np.random.default_rng(7))
    again = select_for_review(probs, 20, strategy="random", rng=np.random.default_rng(7))
    other = select_for_review(probs, 20, strategy="random", rng=np.random.default_rng(8))
    assert first.tolist() == again.tolist()
    assert set(first.tolist()) != set(other.tolist())


def test_ties_are_broken_by_the_rng_not_by_position():
    # A cold-start pool: all rows equally uncertain. Picks must not just be the first rows.
    probs = np.full((100, 3), 1 / 3)
    for kind in UNCERTAINTY:
        a = select_for_review(probs, 10, strategy=kind, rng=np.random.default_rng(1))
        b = select_for_review(probs, 10, strategy=kind, rng=np.random.default_rng(1))
        c = select_for_review(probs, 10, strategy=kind, rng=np.random.default_rng(2))
        assert a.tolist() == b.tolist()
        assert a.tolist() != c.tolist()
        assert sorted(a.tolist()) != list(range(10))


def _two_clusters(rng, per_cluster=10):
    a = rng.normal(0.0, 0.01, size=(per_cluster, 2))
    b = rng.normal(0.0, 0.01, size=(per_cluster, 2)) + [10.0, 10.0]
    return np.vstack([a, b])


def test_ranked_batch_takes_one_from_each_of_two_equally_uncertain_clusters():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        features = _two_clusters(rng)
        probs = np.full((20, 2), 0.5)
        picked = select_for_review(probs, 2, strategy="ranked_batch", rng=rng, features=features)
        assert sorted(i // 10 for i in picked) == [0, 1]


def test_uncertainty_alone_takes_near_duplicates_where_ranked_batch_does_not():
    rng = np.random.default_rng(0)
    features = _two_clusters(rng)
    # Cluster 0 slightly more uncertain than cluster 1.
    probs = np.vstack([np.tile([0.55, 0.45], (10, 1)), np.tile([0.6, 0.4], (10, 1))])
    top = select_for_review(probs, 2, strategy="least_confident", rng=rng)
    batch = select_for_review(probs, 2, strategy="ranked_batch", rng=rng, features=features)
    assert sorted(i // 10 for i in top) == [0, 0]
    assert sorted(i // 10 for i in batch) == [0, 1]


def test_ranked_batch_steers_away_from_what_is_already_labeled():
    rng = np.random.default_rng(3)
    features = _two_clusters(rng)
    probs = np.full((20, 2), 0.5)
    labeled = rng.normal(0.0, 0.01, size=(3, 2))  # three labeled items inside cluster 0
    picked = select_for_review(
        probs, 1, strategy="ranked_batch", rng=rng, features=features, labeled_features=labeled
    )
    assert picked[0] >= 10


def test_ranked_batch_matches_modal_when_there_is_a_labeled_set():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        features = rng.normal(size=(40, 4))
        labeled = rng.normal(size=(6, 4))
        probs = rng.dirichlet(np.ones(3), size=40)
        ours = select_for_review(
            probs, 8, strategy="ranked_batch", rng=rng,
            features=features, labeled_features=labeled,
        )
        learner = SimpleNamespace(on_transformed=False, X_training=labeled)
        theirs, _ = modal_ranked_batch(
            learner, features, uncertainty_scores(probs, "least_confident"), 8,
            metric="euclidean", n_jobs=None,
        )
        assert ours.tolist() == theirs.tolist()


def test_ranked_batch_cold_start_begins_with_the_most_uncertain_item():
    rng = np.random.default_rng(0)
    probs = np.tile([0.9, 0.1], (10, 1))
    probs[6] = [0.5, 0.5]
    picked = select_for_review(
        probs, 3, strategy="ranked_batch", rng=rng, features=rng.normal(size=(10, 2))
    )
    assert picked[0] == 6


# ---- errors ---------------------------------------------------------------------------------
GOOD = np.array([[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]])


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((3, 1)), "at least 2 classes"),
        (np.array([[0.7, 0.7], [0.5, 0.5]]), "sum to 1"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), "NaN"),
        (np.array([[1.5, -0.5], [0.5, 0.5]]), "negative"),
    ],
)
def test_bad_probabilities_are_refused_with_the_reason(probs, message):
    with pytest.raises(ValueError, match=message):
        select_for_review(probs, 1, strategy="margin", rng=np.random.default_rng(0))


@pytest.mark.parametrize("n", [-1, 4, 1.5, True])
def test_n_outside_zero_to_n_items_is_an_error(n):
    with pytest.raises(ValueError, match="n must be"):
        select_for_review(GOOD, n, strategy="entropy", rng=np.random.default_rng(0))


def test_n_as_numpy_integer_is_accepted():
    picked = select_for_review(GOOD, np.int64(3), strategy="entropy", rng=np.random.default_rng(0))
    assert sorted(picked.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("rng", [0, np.random.RandomState(0), None])
def test_rng_must_be_a_generator(rng):
    with pytest.raises(TypeError, match="default_rng"):
        select_for_review(GOOD, 1, strategy="random", rng=rng)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="least_confident, margin, random, ranked_batch"):
        get_strategy("bald")
    with pytest.raises(ValueError, match="valid: badge, core_set, entropy"):
        select_for_review(GOOD, 1, strategy="uncertainty", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid: entropy, least_confident, margin"):
        uncertainty_scores(GOOD, "bald")


def test_ranked_batch_needs_matching_features():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="needs features"):
        select_for_review(GOOD, 1, strategy="ranked_batch", rng=rng)
    with pytest.raises(ValueError, match="2 rows but pred_probs has 3"):
        select_for_review(GOOD, 1, strategy="ranked_batch", rng=rng, features=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same embedding size"):
        select_for_review(
            GOOD, 1, strategy="ranked_batch", rng=rng,
            features=np.zeros((3, 4)), labeled_features=np.zeros((5, 2)),
        )
