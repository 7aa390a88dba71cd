"""Auto-accept thresholds hold the target precision and refuse thin or noisy classes."""

import numpy as np
import pytest

from labeling.autoaccept import (
    accept_confident,
    choose_thresholds,
    error_upper_bound,
    pooled_thresholds,
    precision_interval,
)

CLASSES = ["cat", "dog"]


def _synthetic(n, rng, *, noise_below=0.8):
    """Confidence in [0.5, 1]; items below ``noise_below`` are wrong 30% of the time, above
    it 0.5%."""
    conf = rng.uniform(0.5, 1.0, n)
    truth = rng.integers(0, 2, n)
    wrong = rng.random(n) < np.where(conf < noise_below, 0.3, 0.005)
    predicted = np.where(wrong, 1 - truth, truth)
    probs = np.empty((n, 2))
    probs[np.arange(n), predicted] = conf
    probs[np.arange(n), 1 - predicted] = 1 - conf
    return probs, truth


def test_bound_is_above_raw_rate_and_shrinks_with_data():
    assert error_upper_bound(0, 10, confidence=0.95) > 0.2
    assert error_upper_bound(0, 1000, confidence=0.95) < 0.005
    assert error_upper_bound(5, 100, confidence=0.95) > 0.05
    lo, hi = precision_interval(95, 100)
    assert lo < 0.95 < hi


def test_thresholds_meet_target_precision_on_fresh_data():
    rng = np.random.default_rng(0)
    val_probs, val_truth = _synthetic(6000, rng)
    th = choose_thresholds(val_probs, val_truth, CLASSES, target_precision=0.98)
    assert all(c.threshold is not None for c in th.per_class)
    # The noisy band ends at 0.8: a sound threshold cannot go far below it.
    assert all(c.threshold >= 0.78 for c in th.per_class)
    pool_probs, pool_truth = _synthetic(20000, rng)
    accepted = accept_confident(pool_probs, th)
    precision = (pool_probs[accepted].argmax(1) == pool_truth[accepted]).mean()
    # The bound holds the target up to the sampling noise of 20,000 fresh items (~0.2%).
    assert precision >= 0.975
    assert accepted.mean() > 0.3


def test_class_with_thin_validation_gets_no_threshold():
    probs = np.array([[0.99, 0.01]] * 40 + [[0.01, 0.99]] * 3)
    truth = np.array([0] * 40 + [1] * 3)
    th = choose_thresholds(probs, truth, CLASSES, target_precision=0.9, min_points=25)
    cat, dog = th.per_class
    assert cat.threshold is not None and dog.threshold is None
    assert "too little validation data" in dog.reason
    assert not accept_confident(np.array([[0.0, 1.0]]), th)[0]


def test_noisy_class_gets_no_threshold():
    rng = np.random.default_rng(1)
    probs = np.tile([0.995, 0.005], (300, 1))
    truth = (rng.random(300) < 0.1).astype(int)  # 10% wrong even at top confidence
    th = choose_thresholds(probs, truth, CLASSES, target_precision=0.98)
    assert th.per_class[0].threshold is None
    assert "never reached" in th.per_class[0].reason


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        choose_thresholds(np.ones((3, 3)) / 3, np.zeros(3, int), CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        choose_thresholds(np.ones((3, 2)) / 2, np.array([0, 1, 5]), CLASSES)


def test_pooled_threshold_bounds_overall_precision_with_less_data():
    rng = np.random.default_rng(3)
    val_probs, val_truth = _synthetic(400, rng)
    per_class = choose_thresholds(val_probs, val_truth, CLASSES, target_precision=0.98)
    pooled = pooled_thresholds(val_probs, val_truth, CLASSES, target_precision=0.98)
    # 400 validation items cannot certify 98% for each class alone, but can for all together.
    assert any(c.threshold is None for c in per_class.per_class)
    assert all(c.threshold is not None for c in pooled.per_class)
    assert pooled.per_class[0].error_upper_bound <= 0.02
    pool_probs, pool_truth = _synthetic(20000, rng)
    accepted = accept_confident(pool_probs, pooled)
    assert (pool_probs[accepted].argmax(1) == pool_truth[accepted]).mean() >= 0.975
    assert accepted.mean() > 0.2


def test_pooled_gives_no_threshold_to_a_class_absent_from_validation():
    probs = np.array([[0.999, 0.001]] * 300)
    pooled = pooled_thresholds(probs, np.zeros(300, int), CLASSES, target_precision=0.98)
    assert pooled.per_class[0].threshold is not None
    assert pooled.per_class[1].threshold is None
