"""The delivered-dataset certificate: human and machine labels together, alpha split."""

import numpy as np
import pytest

from labeling.annotators import AnnotatorErrorBound
from labeling.bounds import error_upper_bound, wrong_count_upper_bound
from labeling.certificate import certify_delivered


def _audit(n, n_wrong):
    return np.r_[np.ones(n - n_wrong), np.zeros(n_wrong)].astype(bool)


def test_certificate_combines_audit_and_human_error_by_count():
    cert = certify_delivered(1000, 3000, 500, _audit(300, 3), human_error=0.01)
    machine = error_upper_bound(3, 300, confidence=0.96)
    assert cert.machine_error_ub == pytest.approx(machine)
    # The people's 1% is a rate: the share wrong among these 1,000 is its 99% quantile.
    people = wrong_count_upper_bound([(1000, 0.01)], confidence=0.99)
    assert people == 18
    assert cert.wrong_ub == pytest.approx((3000 * machine + people) / 4000)
    assert (cert.n_delivered, cert.n_unlabeled, cert.n_audited) == (4000, 500, 300)
    assert cert.alpha == {"human_error": 0.0, "reference_error": 0.0, "total": 0.05,
                          "human_share": 0.01, "audit": 0.04}


def test_measured_bounds_spend_alpha_once_each():
    people = AnnotatorErrorBound(0.03, 0.01, 500, 9, "test")
    cert = certify_delivered(1000, 3000, 0, _audit(300, 3), human_error=people,
                             reference_error=people)
    assert cert.alpha["audit"] == pytest.approx(0.032)  # one bound, one alpha; 0.008 share
    expected = error_upper_bound(3, 300, confidence=0.968) / (1 - 0.03)
    assert cert.machine_error_ub == pytest.approx(expected)
    rho = AnnotatorErrorBound(0.2, 0.02, 80, 9, "test")
    cert = certify_delivered(1000, 3000, 0, _audit(300, 3), human_error=people,
                             reference_error=rho)
    assert cert.alpha["audit"] == pytest.approx(0.016)


def test_machine_labels_without_an_audit_are_not_certified_and_none_cost_nothing():
    assert certify_delivered(100, 900, 0, np.array([], bool)).wrong_ub == pytest.approx(0.9)
    only_people = certify_delivered(1000, 0, 50, np.array([], bool), human_error=0.02)
    assert only_people.wrong_ub == wrong_count_upper_bound([(1000, 0.02)],
                                                           confidence=0.99) / 1000


def test_certificate_covers_the_realized_share_in_monte_carlo():
    # 5,000 machine labels of which exactly 150 wrong, 2,000 human labels of which 20 wrong;
    # audits of 300 drawn with replacement, references that repeat a machine error 30% of the
    # time and err on 2% of the rest.
    rng = np.random.default_rng(0)
    machine_wrong = np.zeros(5000, bool)
    machine_wrong[:150] = True
    true_share = (150 + 20) / 7000
    covered, reps = 0, 200
    for _ in range(reps):
        drawn = machine_wrong[rng.integers(0, 5000, 300)]
        u = rng.random(300)
        agrees = np.where(drawn, u < 0.3, u >= 0.02)  # reference == machine label
        cert = certify_delivered(2000, 5000, 0, agrees, human_error=0.01, reference_error=0.3)
        covered += cert.wrong_ub >= true_share
    assert covered / reps >= 0.95


def test_bad_inputs_say_what_is_wrong():
    audit = _audit(100, 1)
    with pytest.raises(ValueError, match="differ"):
        certify_delivered(10, 100, 0, audit, audit_probs=np.r_[np.full(50, 0.1),
                                                                np.full(50, 0.2)])
    with pytest.raises(ValueError, match=r"audit_probs must be \[100\]"):
        certify_delivered(10, 100, 0, audit, audit_probs=np.full(99, 0.1))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        certify_delivered(10, 100, 0, audit, audit_probs=np.full(100, 1.5))
    with pytest.raises(ValueError, match="counts"):
        certify_delivered(-1, 100, 0, audit)
    with pytest.raises(ValueError, match="nothing is delivered"):
        certify_delivered(0, 0, 10, audit)
    with pytest.raises(ValueError, match="booleans"):
        certify_delivered(10, 100, 0, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"human_error must be in \[0, 1\)"):
        certify_delivered(10, 100, 0, audit, human_error=1.2)
    with pytest.raises(ValueError, match=r"reference_error must be in \[0, 1\)"):
        certify_delivered(10, 100, 0, audit, reference_error=1.0)
    # Equal probabilities are one uniform audit: accepted.
    certify_delivered(10, 100, 0, audit, audit_probs=np.full(100, 0.05))
