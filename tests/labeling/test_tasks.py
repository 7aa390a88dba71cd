"""The task-type seam: classification as the first task type, found by name."""

from __future__ import annotations

import pytest

from labeling.studio.consensus import AnnotationView, decide
from labeling.tasks.classification import choice_result, config_classes, label_config
from labeling.tasks.registry import get_task_type, list_task_types

CLASSES = ("cat", "dog")


def test_an_unknown_task_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown task type 'boxes'; valid: classification"):
        get_task_type("boxes")
    assert "classification" in list_task_types()


def test_classification_round_trips_its_config_and_its_answers():
    task = get_task_type("classification")
    assert task.config_classes(task.label_config(CLASSES)) == CLASSES
    assert task.label_config(CLASSES) == label_config(CLASSES)
    assert config_classes("<View/>") is None
    result = task.prediction_result("dog")
    assert result == choice_result("dog")
    assert task.answer_values(result) == ("dog",)
    assert task.answer_values([{"from_name": "other", "type": "choices",
                                "value": {"choices": ["cat"]}}]) == ()


def test_classification_rejects_what_is_not_one_known_class():
    task = get_task_type("classification")
    assert task.rejection(("cat",), CLASSES) is None
    assert task.rejection((), CLASSES) == "submitted without a choice"
    assert "several choices" in task.rejection(("cat", "dog"), CLASSES)
    assert "not a class of the project" in task.rejection(("emu",), CLASSES)
    with pytest.raises(ValueError, match="valid: cat, dog"):
        task.validate_label("emu", CLASSES)


def test_consensus_counts_votes_through_the_task_type():
    task = get_task_type("classification")
    views = [AnnotationView(i, 10 + i, (label,), False, stamp)
             for i, (label, stamp) in enumerate([("cat", "a"), ("cat", "b"), ("dog", "c"),
                                                  ("emu", "d")], start=1)]
    verdict = decide(views, CLASSES, task)
    assert (verdict.outcome, verdict.label, verdict.winners) == ("labeled", "cat", (1, 2))
    assert set(verdict.rejected) == {4}
    tie = decide(views[1:3], CLASSES, task)
    assert tie.outcome == "disagreement" and tie.label is None
