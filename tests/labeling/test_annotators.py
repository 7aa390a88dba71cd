"""Annotator error bounds from items several people answered."""

import numpy as np
import pytest

from labeling.annotators import AnnotatorErrorBound, annotator_error_bound, split_alpha
from labeling.bounds import error_upper_bound, noisy_error_upper_bound

NAN = np.nan


def test_single_answer_disagreement_with_the_others_is_counted_once_per_item():
    answers = np.array([
        [0, 0, NAN],  # agree
        [1, 0, 0],  # first answer disagrees with the others' plurality
        [2, 2, 2],  # agree
        [1, 0, 2],  # the others tie: counted as a disagreement (conservative)
        [3, NAN, NAN],  # one answer: not a trial
    ])
    bound = annotator_error_bound(answers, confidence=0.9)
    assert (bound.n_items, bound.n_events) == (4, 2)
    assert bound.rate_ub == error_upper_bound(2, 4, confidence=0.9)
    assert bound.alpha == pytest.approx(0.1)


def test_with_model_labels_it_measures_how_often_people_repeat_the_models_error():
    answers = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 1], [2, 0, 0]])
    model = np.array([1, 1, 1, 1])
    bound = annotator_error_bound(answers, model_labels=model)
    # Rows 0, 1, 3: the others say 0, the model said 1. Row 0's first answer repeats it.
    assert (bound.n_items, bound.n_events) == (3, 1)
    assert "repeats the model" in bound.measured


def test_rho_holds_where_a_third_person_is_asked_only_if_the_first_two_differ():
    # The checks' design: two people, a third only where they differ. Each person repeats the
    # model's wrong label at rate 0.3, independently. Counting the third answer made an event
    # (first repeats the model, second not) need the third to side with the second, and the
    # rate measured was p / (1 + p): the 98.75% bound fell below 0.3 in 58% of trials.
    rng = np.random.default_rng(9)
    p, trials, misses = 0.3, 300, 0
    for _ in range(trials):
        answers = np.where(rng.random((400, 3)) < p, 1, 0).astype(float)  # 1: the model's
        answers[answers[:, 0] == answers[:, 1], 2] = NAN
        bound = annotator_error_bound(answers, confidence=0.9875, model_labels=np.ones(400))
        misses += bound.rate_ub < p
    assert misses / trials <= 0.035  # 1.25% claimed; 300 trials


def _overlap(n, rng, *, model_error, rho, eta_right, people=3):
    """Items answered by ``people`` annotators; errors concentrate where the model errs."""
    truth = rng.integers(0, 10, n)
    wrong = rng.random(n) < model_error
    model = np.where(wrong, (truth + 1 + rng.integers(0, 9, n)) % 10, truth)
    u = rng.random((n, people))
    answers = np.where(wrong[:, None] & (u < rho), model[:, None], truth[:, None])
    flip = ~wrong[:, None] & (u < eta_right)
    answers = np.where(flip, (truth[:, None] + 1) % 10, answers).astype(float)
    return answers, model


def test_single_answer_rate_underestimates_rho_when_errors_concentrate():
    # People err 7% overall, but repeat the model's mistake 40% of the time where it errs: the
    # single-answer rate is no bound on rho there; the model-conditioned rate is.
    rng = np.random.default_rng(0)
    answers, model = _overlap(3000, rng, model_error=0.08, rho=0.4, eta_right=0.04)
    single = annotator_error_bound(answers)
    direct = annotator_error_bound(answers, model_labels=model)
    assert single.rate_ub < 0.4 <= direct.rate_ub


def test_measured_rho_keeps_the_total_alpha_in_monte_carlo():
    # rho measured at 99% on 600 overlap items, the error bound at the 4% that is left: the
    # pair should cover the true error in >= 95% of repetitions.
    rng = np.random.default_rng(1)
    e, rho, hits, reps, n = 0.08, 0.4, 0, 200, 800
    for _ in range(reps):
        answers, model = _overlap(600, rng, model_error=e, rho=rho, eta_right=0.0)
        bound = annotator_error_bound(answers, confidence=0.99, model_labels=model)
        wrong = rng.random(n) < e
        repeats = wrong & (rng.random(n) < rho)
        k = int((wrong & ~repeats).sum())
        left = split_alpha(0.95, reference_error=bound)["left"]
        hits += noisy_error_upper_bound(k, n, confidence=1 - left,
                                        reference_error=bound.rate_ub) >= e
    assert hits / reps >= 0.95


def test_split_alpha_counts_a_bound_once_and_numbers_as_free():
    b = AnnotatorErrorBound(0.05, 0.01, 100, 2, "test")
    other = AnnotatorErrorBound(0.05, 0.02, 100, 2, "test")
    assert split_alpha(0.95, a=b, c=b)["left"] == pytest.approx(0.04)
    assert split_alpha(0.95, a=b, c=other)["left"] == pytest.approx(0.02)
    assert split_alpha(0.95, a=0.05)["left"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="spend alpha"):
        split_alpha(0.98, a=b, c=other)


def test_bad_answers_are_clear_errors():
    with pytest.raises(ValueError, match=r"\[N, M\]"):
        annotator_error_bound(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="class indices"):
        annotator_error_bound(np.array([[0, 1.5]]))
    with pytest.raises(ValueError, match="no usable items"):
        annotator_error_bound(np.array([[0, NAN], [1, NAN]]))
    with pytest.raises(ValueError, match=r"model_labels must be \[2\]"):
        annotator_error_bound(np.array([[0, 0], [1, 1]]), model_labels=[0])
