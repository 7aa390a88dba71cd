"""The promotion rule on the same held-out items: the challenger is promoted unless the
champion is right on more of the items where the two differ beyond chance."""

from __future__ import annotations

import numpy as np

from pipeline.round.promote import paired_rule


def _score(right: list[int], log_loss: float) -> dict:
    return {"_right": np.array(right, dtype=bool), "log_loss": log_loss,
            "accuracy": float(np.mean(right))}


def test_more_items_right_where_they_differ_promotes_whatever_the_log_loss():
    better, why = paired_rule(_score([1, 1, 1, 0], 2.0), _score([1, 1, 0, 0], 0.5))
    assert better and "right on 1 item(s) the champion missed, wrong on 0" in why


def test_a_tie_promotes_the_challenger_whatever_the_log_loss():
    # Choosing the better of two equals on the items that then certify it would certify luck.
    assert paired_rule(_score([1, 0, 1], 0.9), _score([0, 1, 1], 0.4))[0]
    assert paired_rule(_score([1, 1], 0.9), _score([1, 1], 0.4))[0]


def test_a_one_item_lead_on_a_small_set_does_not_keep_a_much_worse_champion():
    # The photo quickstart's case: 36 held-out items, the champion right on one more.
    champion = [1] * 31 + [0] * 5
    challenger = [1] * 27 + [0, 0, 0, 0] + [1, 1, 1, 0, 0]  # 4 lost, 3 won: 30 of 36
    better, why = paired_rule(_score(challenger, 0.37), _score(champion, 1.39))
    assert better and "within chance" in why
    assert paired_rule(_score(challenger, 1.5), _score(champion, 1.39))[0]


def test_a_lead_beyond_chance_keeps_the_champion_even_against_a_lower_log_loss():
    champion = [1] * 40
    challenger = [1] * 32 + [0] * 8  # 8 lost, none won: p = 0.004
    better, why = paired_rule(_score(challenger, 0.1), _score(champion, 0.3))
    assert not better and "beyond chance" in why


def test_the_chance_boundary_is_the_sign_tests():
    # The champion ahead 4-0 on the differing items: p = 0.0625, within chance; 5-0: 0.031;
    # 9-3: 0.073, within; 10-2: 0.019, beyond.
    for won, lost, kept in ((0, 4, False), (0, 5, True), (3, 9, False), (2, 10, True)):
        champion = [1] * 20 + [0] * won
        challenger = [1] * (20 - lost) + [0] * lost + [1] * won
        better, why = paired_rule(_score(challenger, 0.1), _score(champion, 0.3))
        assert better is not kept, why
