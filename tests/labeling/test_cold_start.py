"""The typical cold start (TypiClust) on embeddings: one pick per dense region, its most typical
item, coverage of what is already labeled respected, and the errors users see."""

import numpy as np
import pytest

from labeling.cold_start import typical_picks

CENTRES = np.array([[0, 0], [12, 0], [0, 12], [12, 12]], dtype=float)


def _blobs(sizes, seed=0, dims=2):
    """Gaussian blobs around CENTRES, the blob of each row. Past 2 dims, the other dimensions
    carry a little noise each (embeddings spread over many directions, weakly)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(CENTRES[i], 1.0, (n, 2)) for i, n in enumerate(sizes)])
    if dims > 2:
        x = np.hstack([x, rng.normal(0, 0.1, (len(x), dims - 2))])
    return x, np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_pick_per_region_however_unequal_their_sizes(seed):
    x, blob = _blobs([400, 150, 40, 12], seed)
    picked = typical_picks(x, 4, rng=np.random.default_rng(seed))
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3]
    # Random picks of the same size miss the small regions most of the time.
    rng = np.random.default_rng(seed)
    covered = [len(set(blob[rng.choice(len(x), 4, replace=False)])) for _ in range(200)]
    assert np.mean(covered) < 3


def test_the_pick_of_a_region_is_typical_not_an_outlier():
    x, blob = _blobs([300, 300, 300, 300])
    picked = typical_picks(x, 4, rng=np.random.default_rng(0))
    dist = np.linalg.norm(x[picked] - CENTRES[blob[picked]], axis=1)
    assert (dist < 0.8).all(), dist  # the blob's spread is 1: these are near the centre


def test_regions_already_labeled_are_covered_and_picks_go_elsewhere_first():
    x, blob = _blobs([200, 200, 200, 200])
    labeled = x[blob == 0][:1] + 0.01  # a label in region 0
    picked = typical_picks(x, 3, rng=np.random.default_rng(0), labeled_features=labeled)
    assert sorted(blob[picked].tolist()) == [1, 2, 3]


def test_high_dimensional_embeddings_are_projected_and_still_covered():
    x, blob = _blobs([300, 100, 30, 20], dims=1280)
    picked = typical_picks(x, 4, rng=np.random.default_rng(0))
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3]


def test_picks_are_distinct_reproducible_and_can_take_the_whole_pool():
    x, _ = _blobs([6, 5, 4, 3])
    every = typical_picks(x, len(x), rng=np.random.default_rng(3))
    assert sorted(every.tolist()) == list(range(len(x)))
    one = typical_picks(x, 7, rng=np.random.default_rng(5))
    assert one.tolist() == typical_picks(x, 7, rng=np.random.default_rng(5)).tolist()
    assert typical_picks(x, 0, rng=np.random.default_rng(0)).shape == (0,)


@pytest.mark.parametrize(("n", "labeled", "message"), [
    (-1, None, "between 0 and"),
    (19, None, "between 0 and"),
    (2, np.zeros((3, 5)), r"labeled_features must be \[L, 2\]"),
])
def test_bad_arguments_are_refused_with_the_reason(n, labeled, message):
    x, _ = _blobs([6, 5, 4, 3])
    with pytest.raises(ValueError, match=message):
        typical_picks(x, n, rng=np.random.default_rng(0), labeled_features=labeled)
