"""The random held-out items the accept step tests thresholds on: a tie among people counts
against the model, never leaves the sample."""

from __future__ import annotations

import numpy as np

from pipeline.round.accept import validation_set

CLASSES = ["cat", "dog", "emu"]


def test_a_tied_held_out_item_counts_as_one_the_model_got_wrong():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9], [0.6, 0.3, 0.1]])
    index = {"a": 0, "b": 1, "tie": 2, "unpredicted": 3}
    keys, y = validation_set({"a": "cat", "b": "emu"}, {"tie", "gone"}, index, probs, CLASSES)
    assert keys == ["a", "b", "tie"]  # a tie without predictions ("gone") cannot be scored
    predicted = probs[[index[k] for k in keys]].argmax(axis=1)
    assert list(predicted != y) == [False, True, True]  # the tie is a disagreement
    # A tie that was later broken is a label like any other.
    keys, y = validation_set({"a": "cat", "tie": "emu"}, {"tie"}, index, probs, CLASSES)
    assert keys == ["a", "tie"] and list(y) == [0, 2]
