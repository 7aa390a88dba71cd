"""The detection task type: boxes through Label Studio's format and back, what is refused, and
how several people's boxes become one label."""

from __future__ import annotations

import pytest

from labeling.studio.consensus import AnnotationView, decide
from labeling.tasks.registry import get_task_type

CLASSES = ("cat", "dog")
TASK = get_task_type("detection")


def value(*boxes, width=200, height=100):
    return {"width": width, "height": height,
            "boxes": [{"label": lab, "x": x, "y": y, "w": w, "h": h} for lab, x, y, w, h in boxes]}


def read(v):
    """What sync reads back from Label Studio for a value sent as a pre-annotation."""
    return TASK.answer_values(TASK.prediction_result(v))


def test_the_config_names_the_classes_and_is_told_apart_from_classification():
    xml = TASK.label_config(CLASSES)
    assert "RectangleLabels" in xml and TASK.config_classes(xml) == CLASSES
    assert get_task_type("classification").config_classes(xml) is None
    assert TASK.config_classes(get_task_type("classification").label_config(CLASSES)) is None


def test_boxes_travel_in_percent_and_come_back_in_pixels():
    sent = value(("cat", 20, 10, 50, 40), ("dog", 100, 50, 99.5, 50))
    regions = TASK.prediction_result(sent)
    assert regions[0]["value"]["x"] == pytest.approx(10.0)  # 20 px of 200
    assert regions[0]["value"]["height"] == pytest.approx(40.0)  # 40 px of 100
    assert regions[0]["original_width"] == 200 and regions[0]["type"] == "rectanglelabels"
    back = read(sent)
    assert TASK.rejection(back, CLASSES) is None
    assert TASK.answer_value(back) == sent
    assert TASK.vote(back) == "cat dog"


def test_an_empty_answer_is_a_label_saying_nothing_is_there():
    assert TASK.rejection((), CLASSES) is None
    assert TASK.vote(()) == "nothing" and TASK.answer_value(()) == {"boxes": []}


@pytest.mark.parametrize("bad, why", [
    (value(("horse", 10, 10, 20, 20)), "not a class of the project"),
    (value(("cat", 190, 10, 20, 20)), "outside the 200 x 100 image"),
    (value(("cat", 10, 10, 0.2, 20)), "too small"),
])
def test_a_box_that_cannot_be_right_is_refused_with_the_reason(bad, why):
    assert why in TASK.rejection(read(bad), CLASSES)


def test_a_region_from_another_element_or_without_a_size_is_refused():
    regions = TASK.prediction_result(value(("cat", 10, 10, 20, 20)))
    wrong_name = [dict(regions[0], from_name="other")]
    assert "not a box of labelloop's element" in TASK.rejection(
        TASK.answer_values(wrong_name), CLASSES)
    no_size = [{k: v for k, v in regions[0].items() if k != "original_width"}]
    assert "image's size" in TASK.rejection(TASK.answer_values(no_size), CLASSES)
    two = [dict(regions[0], value=dict(regions[0]["value"], rectanglelabels=["cat", "dog"]))]
    assert "2 labels" in TASK.rejection(TASK.answer_values(two), CLASSES)


def test_a_box_moved_by_a_pixel_is_kept_one_moved_more_is_changed():
    shown = read(value(("cat", 20, 10, 50, 40)))
    assert not TASK.changed(read(value(("cat", 20.5, 10, 50, 40))), shown)
    assert TASK.changed(read(value(("cat", 30, 10, 50, 40))), shown)
    assert TASK.changed(read(value(("dog", 20, 10, 50, 40))), shown)
    assert TASK.changed((), shown)


def views(*answers):
    return [AnnotationView(i, 10 + i, read(v), False, f"2026-01-0{i}")
            for i, v in enumerate(answers, start=1)]


def test_three_people_keep_the_boxes_most_of_them_drew_at_their_median():
    a = value(("cat", 20, 10, 50, 40), ("dog", 100, 50, 40, 40))
    b = value(("cat", 22, 12, 50, 40), ("dog", 102, 50, 40, 40))
    c = value(("cat", 24, 10, 50, 40))  # missed the dog
    verdict = decide(views(a, b, c), CLASSES, TASK)
    assert verdict.outcome == "labeled" and verdict.label == "cat dog"
    cat = verdict.value["boxes"][0]
    assert (cat["x"], cat["y"]) == (22, 10)
    assert verdict.winners == (1, 2)  # the two whose boxes match the merged label


def test_two_people_who_disagree_on_a_box_or_its_class_leave_a_disagreement():
    a = value(("cat", 20, 10, 50, 40))
    assert decide(views(a, value()), CLASSES, TASK).outcome == "disagreement"
    assert decide(views(a, value(("dog", 20, 10, 50, 40))), CLASSES,
                  TASK).outcome == "disagreement"
    agreed = decide(views(a, value(("cat", 21, 11, 50, 40))), CLASSES, TASK)
    assert agreed.outcome == "labeled" and agreed.winners == (1, 2)


def test_people_agreeing_there_is_nothing_give_an_empty_label():
    verdict = decide(views(value(), value()), CLASSES, TASK)
    assert verdict.outcome == "labeled" and verdict.label == "nothing"
    assert verdict.value["boxes"] == []


def test_a_refused_answer_does_not_vote():
    good = value(("cat", 20, 10, 50, 40))
    verdict = decide(views(good, value(("horse", 20, 10, 50, 40))), CLASSES, TASK)
    assert verdict.outcome == "labeled" and set(verdict.rejected) == {2}
