"""Fixed-sequence scan: starts where a pass is possible, stops at the first failure."""

import numpy as np
import pytest

from labeling.bounds import error_upper_bound
from labeling.fixed_sequence import (
    fallback_scan,
    fixed_sequence_scan,
    points_needed,
    scan_testable_cuts,
)


def test_points_needed_matches_the_clopper_pearson_table():
    # 95%, 2% error, no error seen: 149 items (the notes' table).
    assert points_needed(0.02, confidence=0.95) == 149
    assert error_upper_bound(0, 149, confidence=0.95) <= 0.02 < \
        error_upper_bound(0, 148, confidence=0.95)
    # A fallible reference needs more: the bound is divided by 1 - rho.
    assert points_needed(0.02, confidence=0.95, reference_error=0.3) > 200


def test_scan_skips_cuts_too_thin_to_pass_and_stops_at_the_first_failure():
    n = np.array([50, 100, 150, 200, 300, 400, 600])
    k = np.array([0, 0, 0, 0, 6, 6, 6])  # the cut at 300 fails, 400 and 600 would pass
    scan = fixed_sequence_scan(n, k, 0.02, confidence=0.95)
    assert scan.start == 2  # 50 and 100 items can never certify 2%
    assert np.isnan(scan.bounds[:2]).all()
    assert scan.stopped_at == 4
    assert scan.chosen == 3
    assert error_upper_bound(6, 600, confidence=0.95) <= 0.02  # a looser cut that passes


def test_first_tested_cut_failing_chooses_nothing():
    scan = fixed_sequence_scan(np.array([200, 400]), np.array([3, 3]), 0.02, confidence=0.95)
    assert scan.start == 0 and scan.stopped_at == 0 and scan.chosen is None


def test_min_points_moves_the_start():
    n = np.array([150, 300, 600])
    k = np.array([1, 1, 2])  # one early error: fails at 150, fine at 300 and 600
    assert fixed_sequence_scan(n, k, 0.02, confidence=0.95).chosen is None
    late = fixed_sequence_scan(n, k, 0.02, confidence=0.95, min_points=300)
    assert late.start == 1 and late.chosen == 2 and late.stopped_at is None


def test_per_cut_limits_are_respected():
    n = np.array([200, 400, 800])
    k = np.array([4, 8, 16])  # 2% observed everywhere
    scan = fixed_sequence_scan(n, k, np.array([0.06, 0.04, 0.02]), confidence=0.95)
    assert scan.chosen == 1 and scan.stopped_at == 2


def test_a_planned_start_survives_one_wrong_reference_at_the_top():
    n = np.array([150, 250, 350, 450])
    k = np.array([1, 1, 1, 1])  # one disagreement among the most confident items
    assert fixed_sequence_scan(n, k, 0.02, confidence=0.95).chosen is None
    # Planned without labels at 0.3% disagreements: the start that tolerates one or two.
    planned = fixed_sequence_scan(n, k, 0.02, confidence=0.95, expected=0.003 * n)
    assert planned.start > 0 and planned.chosen is not None
    assert planned.bounds[planned.chosen] <= 0.02
    assert np.isnan(planned.bounds[:planned.start]).all()  # stricter cuts are not tested
    # A plan expecting many disagreements at the looser cuts keeps the strict start.
    strict = fixed_sequence_scan(n, k * 0, 0.02, confidence=0.95,
                                 expected=np.array([0.1, 5.0, 9.0, 14.0]))
    assert strict.start == 0 and strict.chosen == 3  # and goes on while nothing fails


def _cuts():
    return np.arange(10, 400, 10)


def test_the_fallback_scan_survives_a_wrong_item_at_the_top():
    n = _cuts()
    k = np.ones(len(n))  # one disagreement among the surest items, none after it
    assert fixed_sequence_scan(n, k, 0.05, confidence=0.95).chosen is None
    scan = fallback_scan(n, k, 0.05, confidence=0.95)
    assert scan.stopped_at == scan.start  # the strict chain fails at once
    assert scan.chosen is not None and scan.bounds[scan.chosen] <= 0.05
    # The tolerant chain runs on its own share of the budget: half of it.
    assert scan.bounds[scan.chosen] == error_upper_bound(1, n[scan.chosen], confidence=0.975)
    second = np.flatnonzero(~np.isnan(scan.bounds))[1]  # where the tolerant chain starts
    assert error_upper_bound(1, n[second], confidence=0.975) <= 0.05
    assert error_upper_bound(1, n[second - 1], confidence=0.975) > 0.05


def test_the_fallback_scan_keeps_a_cut_passed_before_the_first_disagreements():
    # A crowd's rho puts the start that tolerates one past the first disagreements.
    n = _cuts()
    k = np.where(n <= 110, 0, 3)
    tolerant = fixed_sequence_scan(n, k, 0.05, confidence=0.95, reference_error=0.25,
                                   tolerate=1)
    assert tolerant.chosen is None
    scan = fallback_scan(n, k, 0.05, confidence=0.95, reference_error=0.25)
    assert n[scan.chosen] == 110 and scan.bounds[scan.chosen] <= 0.05


def test_a_chain_that_passes_hands_its_share_on():
    n = _cuts()
    scan = fallback_scan(n, np.zeros(len(n)), 0.05, confidence=0.95)
    assert scan.stopped_at is None and scan.chosen == len(n) - 1
    tested = np.flatnonzero(~np.isnan(scan.bounds))
    assert tested[0] == scan.start and np.all(np.diff(tested) == 1)
    # Past the tolerant start every cut is tested at the whole budget, before it at half.
    assert scan.bounds[-1] == error_upper_bound(0, n[-1], confidence=0.95)
    assert scan.bounds[scan.start] == error_upper_bound(0, n[scan.start], confidence=0.975)


def test_a_start_no_cut_reaches_leaves_the_whole_budget_to_the_other():
    n = np.arange(10, 80, 10)  # too few items for one disagreement to pass at 5%
    scan = fallback_scan(n, np.zeros(len(n)), 0.05, confidence=0.95)
    plain = fixed_sequence_scan(n, np.zeros(len(n)), 0.05, confidence=0.95)
    assert (scan.start, scan.chosen) == (plain.start, plain.chosen)
    assert np.allclose(scan.bounds, plain.bounds, equal_nan=True)


def test_after_the_strict_chain_fails_nothing_is_tested_until_the_tolerant_start():
    n = _cuts()
    k = np.where(n < 90, 0, np.where(n < 200, 1, 12))  # one disagreement, later many
    scan = fallback_scan(n, k, 0.05, confidence=0.95)
    assert n[scan.start] == 80  # 72 items are needed at half the budget with none wrong
    assert scan.bounds[scan.start] <= 0.05 < scan.bounds[scan.start + 1]  # 90 fails
    assert np.isnan(scan.bounds[n == 100]).all()  # between the failure and the next start
    assert not np.isnan(scan.bounds[n == 110]).all()  # one wrong passes from 110 items on
    assert n[scan.chosen] == 190 and n[scan.stopped_at] == 200  # the last chain's failure


def test_the_fallback_scan_starts_no_earlier_than_min_points():
    n = _cuts()
    scan = fallback_scan(n, np.zeros(len(n)), 0.05, confidence=0.95, min_points=150)
    assert n[scan.start] == 150 and np.isnan(scan.bounds[n < 150]).all()


def test_the_fallback_scan_needs_a_start():
    with pytest.raises(ValueError, match="at least one start"):
        fallback_scan(_cuts(), np.zeros(39), 0.05, confidence=0.95, tolerates=())


def _scan_by_hand(n, k, limits, *, confidence, rho, min_points):
    """The testable-cuts scan written out cut by cut, with every limit known."""
    start = chosen = None
    for i in range(len(n)):
        zero = error_upper_bound(0, int(n[i]), confidence=confidence) / (1 - rho)
        if n[i] < min_points or zero > limits[i]:
            continue  # no record could pass here: not in the sequence
        start = i if start is None else start
        bound = min(1.0, error_upper_bound(int(k[i]), int(n[i]), confidence=confidence)
                    / (1 - rho))
        if bound > limits[i]:
            return start, i, chosen
        chosen = i
    return start, None, chosen


def test_the_testable_scan_asks_each_cut_its_limit_and_chooses_as_the_scan_by_hand():
    rng = np.random.default_rng(3)
    for trial in range(200):
        cuts = int(rng.integers(1, 400))
        n = np.sort(rng.integers(0, 600, cuts))
        k = np.minimum(n, np.sort(rng.binomial(n, 0.01)))  # disagreements pile up as n grows
        limits = rng.uniform(0.0, 0.08, cuts)
        rho = float(rng.choice([0.0, 0.1]))
        asked = np.zeros(cuts, int)

        def fits(at, rates, limits=limits, asked=asked):
            asked[at] += 1
            return rates <= limits[at]

        scan = scan_testable_cuts(n, k, fits, confidence=0.95, reference_error=rho, min_points=10,
                             chunk=int(rng.integers(1, 50)))
        assert (scan.start, scan.stopped_at, scan.chosen) == _scan_by_hand(
            n, k, limits, confidence=0.95, rho=rho, min_points=10), trial
        assert asked.max() <= 2  # a limit that is costly is asked about at most twice a cut
        if scan.stopped_at is not None:
            assert np.isnan(scan.bounds[scan.stopped_at + 1:]).all()
