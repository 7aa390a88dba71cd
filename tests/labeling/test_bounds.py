"""Error bounds: Clopper-Pearson, and the version that stays valid with fallible references."""

import numpy as np
import pytest

from labeling.bounds import (
    error_upper_bound,
    error_upper_bounds,
    noisy_error_upper_bound,
    precision_interval,
    rate_allowances,
    share_fits,
    wrong_count_upper_bound,
)

K = 10  # classes in the simulated task


def _disagreements(n, rng, *, model_error, rho, other_wrong, eta_right):
    """One validation sample of ``n`` accept-region items with fallible references.

    Annotator errors concentrate where the model errs: on an item the model got wrong the
    reference repeats the model's label with probability ``rho`` and gives another wrong label
    with probability ``other_wrong``; on an item the model got right it is wrong with
    probability ``eta_right``. Returns (#reference != model, the annotators' overall error)."""
    model_wrong = rng.random(n) < model_error
    u = rng.random(n)
    repeats = model_wrong & (u < rho)
    ref_wrong = np.where(model_wrong, u < rho + other_wrong, u < eta_right)
    disagree = ~repeats & (model_wrong | ref_wrong)
    eta = model_error * (rho + other_wrong) + (1 - model_error) * eta_right
    return int(disagree.sum()), eta


def _naive_subtraction_bound(k, n, eta, *, confidence):
    """What not to do: subtract the annotators' error rate from the disagreement bound
    (d = eta + e (1 - c eta) under symmetric noise), here even with the true eta."""
    c = K / (K - 1)
    return max(0.0, (error_upper_bound(k, n, confidence=confidence) - eta) / (1 - c * eta))


SCENARIOS = {  # annotators err 6-7% overall, concentrated where the model errs
    "errors only where the model errs": dict(model_error=0.10, rho=0.5, other_wrong=0.1,
                                             eta_right=0.0),
    "errors also elsewhere": dict(model_error=0.04, rho=0.4, other_wrong=0.1, eta_right=0.05),
}


def coverage(scenario, *, reps=200, n=1000, confidence=0.95, seed=0):
    """(noise-aware coverage, naive-subtraction coverage, annotator error) over ``reps``."""
    rng = np.random.default_rng(seed)
    p = SCENARIOS[scenario]
    aware = naive = 0
    for _ in range(reps):
        k, eta = _disagreements(n, rng, **p)
        aware += noisy_error_upper_bound(k, n, confidence=confidence,
                                         reference_error=p["rho"]) >= p["model_error"]
        naive += _naive_subtraction_bound(k, n, eta, confidence=confidence) >= p["model_error"]
    return aware / reps, naive / reps, eta


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_noise_aware_bound_covers_the_true_error_and_subtraction_does_not(scenario):
    aware, naive, eta = coverage(scenario)
    assert 0.05 <= eta <= 0.10
    # Nominal 95%; 200 repetitions put the Monte-Carlo standard error near 1.5 points.
    assert aware >= 0.92
    assert naive <= 0.5


def test_plain_and_noisy_bounds_agree_at_rho_zero_and_scale_with_rho():
    assert noisy_error_upper_bound(3, 200, confidence=0.95, reference_error=0.0) == \
        error_upper_bound(3, 200, confidence=0.95)
    assert noisy_error_upper_bound(3, 200, confidence=0.95, reference_error=0.5) == \
        pytest.approx(2 * error_upper_bound(3, 200, confidence=0.95))
    assert noisy_error_upper_bound(90, 100, confidence=0.95, reference_error=0.5) == 1.0


def test_vectorised_bounds_match_the_scalar_one():
    errors, n = np.array([0, 3, 10, 5, 0]), np.array([10, 200, 10, 0, 149])
    expected = [error_upper_bound(int(e), int(m), confidence=0.9)
                for e, m in zip(errors, n, strict=True)]
    assert error_upper_bounds(errors, n, confidence=0.9) == pytest.approx(expected)


def test_precision_interval_brackets_the_rate():
    lo, hi = precision_interval(95, 100)
    assert lo < 0.95 < hi
    assert precision_interval(0, 0) == (0.0, 1.0)


def test_reference_error_of_one_or_more_is_refused():
    with pytest.raises(ValueError, match=r"reference_error must be in \[0, 1\)"):
        noisy_error_upper_bound(1, 10, confidence=0.95, reference_error=1.0)
    with pytest.raises(ValueError, match=r"reference_error must be in \[0, 1\)"):
        noisy_error_upper_bound(1, 10, confidence=0.95, reference_error=-0.1)


def test_the_share_wrong_among_delivered_labels_stays_under_its_bound_where_the_rate_would_not():
    # Rates just under their bounds (1.9% for 2%, 0.9% for 1%): the labels delivered are one
    # draw, and the share wrong among them exceeds the rates' mix about a third of the time;
    # the 99% quantile of the count is exceeded at most 1% of the time.

    rng = np.random.default_rng(7)
    draws = 4000
    wrong = rng.binomial(3000, 0.019, draws) + rng.binomial(1000, 0.009, draws)
    count_ub = wrong_count_upper_bound([(3000, 0.02), (1000, 0.01)], confidence=0.99)
    assert np.mean(wrong > count_ub) <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / draws)
    assert np.mean(wrong > 3000 * 0.02 + 1000 * 0.01) > 0.2  # the rates as the share: no bound
    assert count_ub > 70  # but not far above them either (70 at the rates; 90 here)
    assert count_ub < 95


def test_the_wrong_count_bound_refuses_what_is_not_a_count_and_a_rate():
    from labeling.bounds import wrong_count_upper_bound

    assert wrong_count_upper_bound([(10, 1.0), (5, 0.0), (0, 0.3)], confidence=0.95) == 10
    for bad in ([(-1, 0.1)], [(3, 1.5)], [(2.5, 0.1)]):
        with pytest.raises(ValueError, match="count >= 0, rate in"):
            wrong_count_upper_bound(bad, confidence=0.95)
    with pytest.raises(ValueError, match="confidence must be in"):
        wrong_count_upper_bound([(3, 0.1)], confidence=1.0)


def test_rate_allowances_are_the_largest_rates_whose_wrong_count_fits():
    n = np.array([1, 50, 400, 3000, 3000])
    allowed = np.array([0, 20, 30, 80, 10])
    others = [(1000, 0.01)]  # about 10 wrong human labels, 18 at worst of 99 draws in 100
    rates = rate_allowances(n, allowed, others=others, confidence=0.99)
    assert rates[0] == 0 and rates[4] == 0  # the people alone may overrun 0 and 10
    for m, a, r in zip(n[1:4], allowed[1:4], rates[1:4], strict=True):
        assert 0 < r < 1
        assert wrong_count_upper_bound([(int(m), r), *others], confidence=0.99) <= a
        assert wrong_count_upper_bound([(int(m), r + 1e-4), *others], confidence=0.99) > a
    # With people who never err it is the binomial's own quantile; all wrong fits: 1.
    alone = rate_allowances(np.array([3000, 5]), np.array([80, 5]), others=[(1000, 0.0)],
                            confidence=0.99)
    assert wrong_count_upper_bound([(3000, alone[0])], confidence=0.99) == 80
    assert wrong_count_upper_bound([(3000, alone[0] + 1e-4)], confidence=0.99) == 81
    assert alone[1] == 1.0
    # One label, 20 allowed beside people's 12 at worst of 99 draws in 100: it may be wrong.
    # (A review: the bisection's bracket stopped at 0.80 here.)
    assert rate_allowances(np.array([1]), np.array([20]), others=[(1000, 0.005)],
                           confidence=0.99)[0] == 1.0


def test_share_fits_says_yes_up_to_the_allowance_and_no_past_it():
    rng = np.random.default_rng(7)
    n = rng.integers(1, 5000, 300)
    allowed = rng.uniform(0, 120, 300)
    for others in ([(1000, 0.01)], [(2000, 0.0)], [(0, 0.0)]):
        rates = rate_allowances(n, allowed, others=others, confidence=0.99)
        at = share_fits(n, allowed, rates, others=others, confidence=0.99)
        past = share_fits(n, allowed, np.minimum(1.0, rates + 1e-7), others=others,
                          confidence=0.99)
        room = rates > 0
        assert at[room].all()
        assert not past[rates < 1].any()
        assert past[rates == 1].all()
    with pytest.raises(ValueError, match="rates must be in"):
        share_fits(np.array([5]), np.array([2]), np.array([1.5]), others=[], confidence=0.9)


def test_the_wrong_count_quantile_matches_scipy_stats_binomials_to_large_sets():
    # The count's distribution is built from scipy.special (status no longer imports
    # scipy.stats for it); scipy.stats' binomials, convolved in full, are the reference.
    from scipy.stats import binom

    for groups in ([(3141, 0.0205), (859, 0.004)], [(100_000, 0.02)], [(7, 0.3), (5, 0.9)],
                   [(20_000, 0.001), (2_000, 0.05), (50, 0.5)],
                   [(30_000, 0.3), (20_000, 0.4)],  # long enough for the FFT
                   [(1_000_000, 1e-5)]):  # where betaln is least precise (a review)
        pmf = np.ones(1)
        for n, rate in groups:
            pmf = np.convolve(pmf, binom.pmf(np.arange(n + 1), n, rate))
        cdf = np.cumsum(pmf)
        for confidence in (0.9, 0.94, 0.99, 0.999):
            expected = int(np.searchsorted(cdf, confidence - 1e-12))
            assert wrong_count_upper_bound(groups, confidence=confidence) == expected
