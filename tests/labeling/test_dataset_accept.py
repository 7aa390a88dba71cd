"""The dataset-level rule: one error budget for human and machine labels together."""

import numpy as np
import pytest

from labeling.autoaccept import pooled_thresholds
from labeling.dataset_accept import choose_dataset_threshold

CLASSES = ["cat", "dog"]


def _items(n, rng):
    """Confidence uniform in [0.5, 1]; P(wrong | conf c) = 0.6 (1 - c)^1.5, so the error of
    everything at or above t is R(t) = 0.24 (1 - t)^1.5 (2% at t = 0.809)."""
    conf = rng.uniform(0.5, 1.0, n)
    truth = rng.integers(0, 2, n)
    wrong = rng.random(n) < 0.6 * (1 - conf) ** 1.5
    predicted = np.where(wrong, 1 - truth, truth)
    probs = np.empty((n, 2))
    probs[np.arange(n), predicted] = conf
    probs[np.arange(n), 1 - predicted] = 1 - conf
    return probs, truth


def _rate_above(t):
    return 0.24 * (1 - t) ** 1.5


def test_clean_human_labels_leave_slack_that_the_machine_labels_spend():
    rng = np.random.default_rng(0)
    val_probs, val_truth = _items(1500, rng)
    cand = _items(4000, rng)[0].max(axis=1)
    per_label = pooled_thresholds(val_probs, val_truth, CLASSES, target_precision=0.98)
    dataset = choose_dataset_threshold(cand, val_probs, val_truth, n_human=2000,
                                       human_error=0.0, epsilon=0.02)
    assert dataset.threshold is not None and per_label.per_class[0].threshold is not None
    assert dataset.threshold < per_label.per_class[0].threshold  # looser: more accepted
    assert dataset.n_accepted > (cand >= per_label.per_class[0].threshold).sum()
    assert dataset.machine_error_ub > 0.02  # allowed: the human labels carry the slack
    assert dataset.wrong_ub <= 0.02
    assert dataset.accept(cand).sum() == dataset.n_accepted


def test_human_labels_worse_than_the_budget_force_stricter_machine_labels():
    rng = np.random.default_rng(1)
    val_probs, val_truth = _items(1500, rng)
    cand = _items(4000, rng)[0].max(axis=1)
    clean = choose_dataset_threshold(cand, val_probs, val_truth, n_human=2000, human_error=0.0)
    noisy = choose_dataset_threshold(cand, val_probs, val_truth, n_human=2000,
                                     human_error=0.025)
    assert noisy.threshold is None or noisy.threshold > clean.threshold
    if noisy.threshold is not None:
        assert noisy.machine_error_ub < 0.02 and noisy.wrong_ub <= 0.02


def test_nothing_accepted_when_the_first_tested_threshold_fails():
    rng = np.random.default_rng(2)
    val_probs, _ = _items(500, rng)
    wrong_labels = 1 - val_probs.argmax(axis=1)  # every reference disagrees
    result = choose_dataset_threshold(val_probs.max(axis=1), val_probs, wrong_labels,
                                      n_human=100)
    assert result.threshold is None and result.n_accepted == 0
    assert "fails" in result.reason
    assert not result.accept(np.array([0.99, 1.0])).any()


def test_people_whose_bound_alone_passes_the_budget_are_named_as_the_reason():
    # It read "too little validation data above any threshold" with 137 validation items,
    # where the people's bound (0.26) left no room in a budget of 0.05.
    rng = np.random.default_rng(3)
    val_probs, val_truth = _items(137, rng)
    cand = _items(463, rng)[0].max(axis=1)
    result = choose_dataset_threshold(cand, val_probs, val_truth, n_human=137,
                                      human_error=0.26, epsilon=0.05)
    assert result.threshold is None
    assert result.reason.startswith("the people's labels alone may be wrong at up to 26.0% "
                                     "(their bound), against a budget of 5.0%")
    # A number assumed, not measured: [loop] human_error, or reference_error where it is unset.
    assert "lower the people's error assumed ([loop] human_error, else" in result.reason
    few = choose_dataset_threshold(cand, val_probs[:5], val_truth[:5], n_human=137,
                                   human_error=0.0, epsilon=0.05)
    assert few.reason.startswith("too little validation data above any threshold")


def test_expected_delivered_error_stays_within_budget_in_monte_carlo():
    rng = np.random.default_rng(3)
    over, reps = 0, 200
    for _ in range(reps):
        val_probs, val_truth = _items(1000, rng)
        # 51 distinct confidences: the allowance with people's error is a bisection per cut.
        cand = rng.uniform(0.5, 1.0, 3000).round(2)
        r = choose_dataset_threshold(cand, val_probs, val_truth, n_human=1000,
                                     human_error=0.005, epsilon=0.02)
        if r.threshold is not None:
            share = (1000 * 0.005 + r.n_accepted * _rate_above(r.threshold)) / \
                (1000 + r.n_accepted)
            over += share > 0.02
    # The expected share, which the rule before 2026-12-07 kept within the budget (the
    # realized share is the next tests'): nominal 5%, Monte-Carlo error about 1.5 points.
    assert over / reps <= 0.07


def test_bad_inputs_say_what_is_wrong():
    rng = np.random.default_rng(4)
    val_probs, val_truth = _items(100, rng)
    cand = val_probs.max(axis=1)
    with pytest.raises(ValueError, match=r"candidate_conf must be confidences in \[0, 1\]"):
        choose_dataset_threshold(cand + 1, val_probs, val_truth, n_human=10)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        choose_dataset_threshold(cand, -val_probs, val_truth, n_human=10)
    with pytest.raises(ValueError, match=r"labels must be \[100\]"):
        choose_dataset_threshold(cand, val_probs, val_truth[:10], n_human=10)
    with pytest.raises(ValueError, match="epsilon"):
        choose_dataset_threshold(cand, val_probs, val_truth, n_human=10, epsilon=0.0)
    with pytest.raises(ValueError, match="n_human"):
        choose_dataset_threshold(cand, val_probs, val_truth, n_human=-5)
    with pytest.raises(ValueError, match=r"reference_error must be in \[0, 1\)"):
        choose_dataset_threshold(cand, val_probs, val_truth, n_human=10, reference_error=1.0)
    with pytest.raises(ValueError, match=r"human_error must be in \[0, 1\)"):
        choose_dataset_threshold(cand, val_probs, val_truth, n_human=10, human_error=-0.1)


def test_disagreements_at_the_edge_of_the_data_leave_the_thresholds_above_them():
    # 200 validation items, like a perfect-annotator loop round at 800 answers: certifying
    # most of the pool takes about 190 items with no disagreement (the share wrong among 3,300
    # machine labels must stay within the budget, not only their rate), and the 195th-197th
    # most confident are wrong.
    rng = np.random.default_rng(5)
    conf = np.sort(rng.uniform(0.9, 1.0, 200))[::-1]
    truth = np.zeros(200, int)
    truth[194:197] = 1
    probs = np.stack([conf, 1 - conf], axis=1)
    cand = rng.uniform(0.9, 1.0, 3400)
    r = choose_dataset_threshold(cand, probs, truth, n_human=600, epsilon=0.02)
    assert r.threshold is not None and r.threshold > conf[194]
    assert r.disagreements == 0 and r.n_validation <= 194
    assert r.wrong_ub <= 0.02
    assert r.n_accepted > 3000  # most of the pool, where the whole-pool test found 3 wrong


def test_budget_holds_in_monte_carlo_with_the_few_validation_items_of_early_rounds():
    # 600 validation items, 600 human labels: the sequence starts below the items that
    # certify 2% alone and skips the thresholds where no record could pass. Under the rule
    # that kept the rate (not the share) within the budget it accepted in 62% of such runs at
    # 400 items; keeping the share, in 5% at 400 items and 37% at 600 (2026-12-07).
    rng = np.random.default_rng(6)
    over, accepted, reps = 0, 0, 300
    for _ in range(reps):
        val_probs, val_truth = _items(600, rng)
        cand = rng.uniform(0.5, 1.0, 3400)
        r = choose_dataset_threshold(cand, val_probs, val_truth, n_human=600, epsilon=0.02)
        if r.threshold is not None:
            accepted += 1
            kept = cand[cand >= r.threshold]  # each wrong at its confidence's rate
            wrong = (rng.random(len(kept)) < 0.6 * (1 - kept) ** 1.5).sum()
            over += wrong / (600 + len(kept)) > 0.02
    assert accepted >= reps // 4  # the rule does accept here, so the check below has teeth
    assert over / reps <= 0.07  # nominal 6%, Monte-Carlo error about 1.4 points


def test_the_share_wrong_among_the_delivered_labels_stays_within_the_budget_not_only_the_rate():
    # The machine labels err at 2.4% wherever they are, 20,000 validation items pin that rate
    # (bound about 2.6%), and 1,000 right human labels leave the 3,000 candidates an expected
    # 2.67%: a rule that kept the rate within the budget accepted them all, and the share
    # wrong among the 4,000 labels then went over 2% in about one run of seven (more than 80
    # of 3,000 wrong). The share's quantile allows about 2.06% at 3,000, so fewer are taken.
    rng = np.random.default_rng(9)
    over, accepted, reps = 0, 0, 300
    for _ in range(reps):
        conf = rng.uniform(0.5, 1.0, 20000)
        wrong = rng.random(20000) < 0.024
        cand = rng.uniform(0.5, 1.0, 3000).round(3)
        r = choose_dataset_threshold(cand, np.stack([conf, 1 - conf], 1), wrong.astype(int),
                                     n_human=1000, epsilon=0.02)
        if r.threshold is not None:
            accepted += 1
            assert r.wrong_ub <= 0.02
            kept = r.n_accepted
            over += (rng.random(kept) < 0.024).sum() / (1000 + kept) > 0.02
    assert accepted >= reps // 2
    assert over / reps <= 0.06  # nominal: the rates' 5% and the share's 1%


def test_a_stretch_of_candidates_with_no_validation_item_does_not_end_the_scan():
    # 110 validation items above 0.99, none in (0.95, 0.99) where 1,300 candidates are, 50 in
    # [0.90, 0.95]; all right. In the empty stretch the allowance falls below what 110 items
    # can certify; tested, those thresholds would stop the scan at 2,000 candidates.
    rng = np.random.default_rng(8)
    conf = np.concatenate([rng.uniform(0.99, 1.0, 110), rng.uniform(0.90, 0.95, 50)])
    probs = np.stack([conf, 1 - conf], axis=1)
    cand = np.concatenate([rng.uniform(0.99, 1.0, 2000), rng.uniform(0.95, 0.99, 1300),
                           rng.uniform(0.90, 0.95, 100)])
    r = choose_dataset_threshold(cand, probs, np.zeros(160, int), n_human=700, epsilon=0.02)
    assert r.n_accepted == 3400 and r.n_validation == 160 and r.reason == "ok"
    assert r.wrong_ub <= 0.02


def test_budget_holds_where_the_surest_items_are_wrong():
    # A hard case for the scan: the surest 3% of items are all wrong, 2.1% of the rest, and
    # 5,000 human labels give the machine labels a large allowance, so many thresholds sit
    # near it. Taking the loosest threshold that passes, without stopping at the first
    # failure, went over the budget in 29 of these 300 runs; the scan in 3.
    rng = np.random.default_rng(7)

    def rate_above(t, band=0.0152, q=0.021):  # conf ~ U(0.5, 1); wrong in the top band
        return (max(0.0, 1 - max(t, 1 - band)) + max(0.0, 1 - band - t) * q) / (1 - t)

    over, accepted, reps = 0, 0, 300
    for _ in range(reps):
        conf = rng.uniform(0.5, 1, 400)
        wrong = rng.random(400) < np.where(conf > 1 - 0.0152, 1.0, 0.021)
        cand = rng.uniform(0.5, 1, 3400)
        r = choose_dataset_threshold(cand, np.stack([conf, 1 - conf], 1), wrong.astype(int),
                                     n_human=5000, epsilon=0.02)
        if r.threshold is not None:
            accepted += 1
            over += r.n_accepted * rate_above(r.threshold) / (5000 + r.n_accepted) > 0.02
    assert accepted >= reps // 2
    assert over / reps <= 0.05
