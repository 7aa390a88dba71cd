"""Auto-accept thresholds hold the target precision and refuse thin or noisy classes."""

import numpy as np
import pytest

from labeling.annotators import AnnotatorErrorBound
from labeling.autoaccept import (
    accept_confident,
    choose_thresholds,
    error_upper_bound,
    pooled_thresholds,
    precision_interval,
)
from labeling.bounds import error_upper_bounds

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
    # Fixed-sequence scan: with the default start (183 items per class, where zero errors could
    # pass) one early error - cat's item ranked 99th - ends the scan before any cut passes. The
    # old scan kept the loosest passing cut of the ~3,000 it tested: multiple testing.
    # Starting at 800 items tolerates the few errors a 0.5% rate puts there.
    th = choose_thresholds(val_probs, val_truth, CLASSES, target_precision=0.98, min_points=800)
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


# --- Fixed-sequence scan and fallible references -------------------------------------------


def _one_class(wrong_by_rank):
    """Class-0 validation items with distinct confidences, highest first; ``wrong_by_rank``
    [n] says which disagree with the reference."""
    wrong = np.asarray(wrong_by_rank, bool)
    conf = np.linspace(0.999, 0.6, len(wrong))
    probs = np.stack([conf, 1 - conf], axis=1)
    return probs, np.where(wrong, 1, 0)


def _old_loosest_passing(conf, wrong, *, level, max_error, min_points):
    """The scan this module used before: the loosest of all passing cuts (multiple testing)."""
    order = np.argsort(-conf, kind="stable")
    conf, errors = conf[order], np.cumsum(wrong[order])
    best = None
    for m in range(min_points, len(conf) + 1):
        if m < len(conf) and conf[m] == conf[m - 1]:
            continue
        if error_upper_bound(int(errors[m - 1]), m, confidence=level) <= max_error:
            best = (float(conf[m - 1]), m, int(errors[m - 1]))
    return best


def test_scan_stops_at_the_first_failing_cut_even_if_looser_cuts_pass():
    # 200 clean items, then 5 wrong in a row, then 800 clean: the bound fails right after the
    # burst and passes again far below it. Only a stricter threshold than the burst is valid.
    wrong = np.r_[np.zeros(200), np.ones(5), np.zeros(800)]
    probs, labels = _one_class(wrong)
    th = choose_thresholds(probs, labels, CLASSES, target_precision=0.98, split_budget=False)
    cat = th.per_class[0]
    first_failing_conf = probs[204, 0]  # the cut that includes the whole burst fails
    assert cat.threshold is not None and cat.threshold > first_failing_conf
    assert cat.errors == 0
    old = _old_loosest_passing(probs[:, 0], wrong.astype(bool), level=0.95, max_error=0.02,
                               min_points=25)
    assert old[0] < first_failing_conf  # what the invalid scan would have accepted


def test_scan_never_picks_below_the_first_failure_on_random_data():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = 600
        wrong = rng.random(n) < np.linspace(0.0, 0.06, n)  # error rises as confidence falls
        probs, labels = _one_class(wrong)
        cat = choose_thresholds(probs, labels, CLASSES, target_precision=0.97,
                                split_budget=False).per_class[0]
        ucb = error_upper_bounds(np.cumsum(wrong), np.arange(1, n + 1), confidence=0.95)
        start = int(np.argmax(error_upper_bounds(0, np.arange(1, n + 1), confidence=0.95)
                              <= 0.03))
        failing = np.flatnonzero(ucb[start:] > 0.03)
        if cat.threshold is None:
            assert len(failing) and failing[0] == 0
            continue
        assert np.all(ucb[start:cat.n_validation] <= 0.03)  # every stricter cut passed
        if len(failing):
            assert cat.threshold > probs[start + failing[0], 0]


def test_without_reference_error_results_equal_the_old_scan_when_no_cut_fails_early():
    # Errors only below 0.8: the bound passes on every cut down to the noisy band and never
    # again, so the old scan (loosest passing) and the fixed-sequence scan agree.
    rng = np.random.default_rng(5)
    n = 4000
    conf = rng.uniform(0.5, 1.0, n)
    truth = rng.integers(0, 2, n)
    wrong = rng.random(n) < np.where(conf < 0.8, 0.3, 0.0)
    predicted = np.where(wrong, 1 - truth, truth)
    probs = np.empty((n, 2))
    probs[np.arange(n), predicted] = conf
    probs[np.arange(n), 1 - predicted] = 1 - conf
    th = choose_thresholds(probs, truth, CLASSES, target_precision=0.98)
    for k, c in enumerate(th.per_class):
        mine = predicted == k
        old = _old_loosest_passing(conf[mine], (truth != k)[mine], level=0.975,
                                   max_error=0.02, min_points=25)
        assert (c.threshold, c.n_validation, c.errors) == old
        assert c.error_upper_bound == error_upper_bound(c.errors, c.n_validation,
                                                        confidence=0.975)
    pooled = pooled_thresholds(probs, truth, CLASSES, target_precision=0.98)
    old_pooled = _old_loosest_passing(conf, wrong, level=0.95, max_error=0.02, min_points=10)
    assert all(c.threshold == old_pooled[0] for c in pooled.per_class)


def test_reference_error_widens_the_bound_and_tightens_the_threshold():
    rng = np.random.default_rng(7)
    wrong = rng.random(3000) < np.linspace(0.0, 0.05, 3000)
    probs, labels = _one_class(wrong)
    plain = choose_thresholds(probs, labels, CLASSES, split_budget=False).per_class[0]
    noisy = choose_thresholds(probs, labels, CLASSES, split_budget=False,
                              reference_error=0.3).per_class[0]
    assert noisy.threshold > plain.threshold
    # At its cut the noisy bound is the plain one divided by 1 - rho.
    plain_there = error_upper_bound(noisy.errors, noisy.n_validation, confidence=0.95)
    assert noisy.error_upper_bound == pytest.approx(plain_there / 0.7)


def test_a_measured_reference_error_spends_its_alpha_and_both_are_reported():
    probs, labels = _one_class(np.zeros(500))
    rho = AnnotatorErrorBound(0.1, 0.01, 400, 30, "test")
    th = pooled_thresholds(probs, labels, CLASSES, confidence=0.95, reference_error=rho)
    alpha = th.to_dict()["alpha"]
    assert alpha["reference_error"] == 0.01
    assert alpha["thresholds"] == pytest.approx(0.04)
    assert alpha["total"] == pytest.approx(0.05)
    assert th.reference_error == 0.1
    # The threshold test runs at the 0.04 that is left: its bound is the 96% one, over 0.9.
    c = th.per_class[0]
    assert c.error_upper_bound == pytest.approx(
        error_upper_bound(c.errors, c.n_validation, confidence=0.96) / 0.9)


def test_bad_inputs_say_what_is_wrong():
    probs, labels = _one_class(np.zeros(50))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        choose_thresholds(probs * 2, labels, CLASSES)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        pooled_thresholds(probs - 0.7, labels, CLASSES)
    with pytest.raises(ValueError, match=r"labels must be \[50\]"):
        pooled_thresholds(probs, labels[:-1], CLASSES)
    with pytest.raises(ValueError, match=r"reference_error must be in \[0, 1\)"):
        choose_thresholds(probs, labels, CLASSES, reference_error=1.0)
    with pytest.raises(ValueError, match="spend alpha"):
        choose_thresholds(probs, labels, CLASSES, confidence=0.95,
                          reference_error=AnnotatorErrorBound(0.1, 0.05, 100, 5, "test"))
