"""One cut on images' confidence: certified on held-out images, never looser than the bound
allows, and the bound holds in repeated draws."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.bounds import error_upper_bounds
from labeling.image_accept import image_threshold


def draw(n, rng):
    conf = rng.random(n)
    wrong = rng.random(n) < 0.4 * (1 - conf) ** 2  # errors where the model is unsure
    return conf, wrong


def test_the_cut_is_certified_on_what_is_above_it():
    conf, wrong = draw(600, np.random.default_rng(1))
    cut = image_threshold(conf, wrong, target_precision=0.95)
    assert cut.reason == "ok" and cut.threshold is not None
    above = conf >= cut.threshold
    assert (cut.n, cut.wrong) == (int(above.sum()), int((above & wrong).sum()))
    assert cut.bound <= 0.05
    assert cut.bound >= error_upper_bounds(np.array([cut.wrong]), np.array([cut.n]),
                                           confidence=0.95)[0] - 1e-12
    pool = np.array([0.0, cut.threshold, 1.0])
    assert cut.accept(pool).tolist() == [False, True, True]


def test_too_few_or_too_wrong_held_out_images_accept_nothing():
    rng = np.random.default_rng(2)
    few = image_threshold(rng.random(5), np.zeros(5, bool), min_points=10)
    assert few.threshold is None and "too little validation data" in few.reason
    bad = image_threshold(rng.random(300), np.ones(300, bool))
    assert bad.threshold is None and not bad.accept(np.ones(3)).any()


def test_people_who_may_repeat_the_machines_mistake_make_the_cut_stricter():
    conf, wrong = draw(800, np.random.default_rng(3))
    trusted = image_threshold(conf, wrong, reference_error=0.0)
    doubted = image_threshold(conf, wrong, reference_error=0.2)
    assert doubted.threshold is None or doubted.threshold >= trusted.threshold


def test_the_bound_holds_over_repeated_draws():
    # True wrong rate above a cut t: the integral of 0.4 (1 - c)^2 over [t, 1], over 1 - t.
    rng = np.random.default_rng(4)
    broken = 0
    for _ in range(200):
        conf, wrong = draw(400, rng)
        cut = image_threshold(conf, wrong, target_precision=0.95)
        if cut.threshold is not None:
            true_rate = 0.4 * (1 - cut.threshold) ** 2 / 3
            broken += true_rate > 0.05
    assert broken <= 200 * 0.05


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="conf and wrong"):
        image_threshold(np.ones(3), np.ones(2, bool))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        image_threshold(np.array([1.5]), np.array([False]))


def test_one_wrong_image_among_the_surest_does_not_block_every_cut():
    # A detector's surest images can hold one it got wrong with no doubt at all (an object it
    # never saw); with many held-out images a second chain starts where one wrong still
    # passes, on half the error budget.
    rng = np.random.default_rng(5)
    conf = np.sort(rng.uniform(0.5, 1.0, 300))[::-1]
    wrong = np.zeros(300, bool)
    wrong[4] = True  # the fifth surest
    wrong[200:] = rng.random(100) < 0.5  # the least sure are often wrong
    cut = image_threshold(conf, wrong, target_precision=0.95)
    assert cut.threshold is not None and cut.wrong >= 1 and cut.bound <= 0.05
    assert cut.n >= 110  # at 97.5%, one wrong passes from 110 images on
    assert error_upper_bounds(np.array([1]), np.array([cut.n]), confidence=0.975)[0] <= 0.05
    # With too few images for that, the scan starts where none may be wrong, on the whole
    # budget.
    few = image_threshold(conf[:80], np.zeros(80, bool), target_precision=0.95)
    assert few.threshold is not None and few.n == 80 and few.wrong == 0
    # And the wrong one is still counted: too few images around it pass nothing.
    assert image_threshold(conf[:80], wrong[:80], target_precision=0.95).threshold is None


def test_a_crowds_doubt_does_not_push_the_start_past_the_first_wrong_images():
    # A 5%-fault crowd's measured rho (0.25) divides every bound by 0.75: one wrong image
    # passes only from about 150 held-out images on, and here the first wrong ones come
    # among the 130 surest. The start where none may be wrong still certifies the cut above.
    rng = np.random.default_rng(6)
    conf = np.sort(rng.uniform(0.5, 1.0, 250))[::-1]
    wrong = np.zeros(250, bool)
    wrong[[125, 130, 135, 140]] = True
    wrong[200:] = rng.random(50) < 0.5
    cut = image_threshold(conf, wrong, target_precision=0.95, reference_error=0.25)
    assert cut.threshold is not None and cut.wrong == 0 and 100 <= cut.n <= 125
    assert cut.bound <= 0.05
