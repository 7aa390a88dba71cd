"""Boxes: validation with errors that name the image, IoU, one-to-one matching, and the
boxes.json reader."""

from __future__ import annotations

import json

import pytest

from labeling.boxes import BoxError, box_iou, check_boxes, clip_box, image_matches, match_boxes
from labeling.boxes_file import ImageBoxes, boxes_json_text, read_boxes_json


def box(label, x, y, w, h):
    return {"label": label, "x": x, "y": y, "w": w, "h": h}


TRUTH = [box("7", 10, 10, 20, 30), box("4", 50, 20, 24, 24), box("1", 80, 60, 6, 20)]


def test_iou_of_known_boxes():
    assert box_iou(box("a", 0, 0, 10, 10), box("b", 0, 0, 10, 10)) == 1.0
    assert box_iou(box("a", 0, 0, 10, 10), box("b", 5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou(box("a", 0, 0, 10, 10), box("b", 10, 0, 10, 10)) == 0.0  # touching
    assert box_iou(box("a", 0, 0, 10, 10), box("b", 2, 2, 5, 5)) == pytest.approx(0.25)


def test_the_truth_matches_itself_in_any_order_and_empty_matches_empty():
    assert image_matches(TRUTH, TRUTH)
    assert image_matches(TRUTH, TRUTH[::-1])
    assert image_matches([], [])


def test_a_missing_box_an_extra_box_a_wrong_class_or_a_shifted_box_is_wrong():
    assert not image_matches(TRUTH, TRUTH[:2])
    assert not image_matches(TRUTH, [*TRUTH, box("3", 100, 5, 10, 10)])
    assert not image_matches([], [box("3", 100, 5, 10, 10)])
    assert not image_matches(TRUTH, [{**TRUTH[0], "label": "1"}, *TRUTH[1:]])
    shifted = {**TRUTH[1], "x": TRUTH[1]["x"] + 10}  # 14/34 of the width overlaps
    assert box_iou(TRUTH[1], shifted) < 0.5
    assert not image_matches(TRUTH, [TRUTH[0], shifted, TRUTH[2]])
    nudged = {**TRUTH[1], "x": TRUTH[1]["x"] + 2}  # a careful person's slip
    assert box_iou(TRUTH[1], nudged) > 0.8
    assert image_matches(TRUTH, [TRUTH[0], nudged, TRUTH[2]])


def test_matching_is_one_to_one_and_finds_the_assignment_greedy_would_miss():
    truth = [box("a", 0, 0, 10, 10), box("a", 4, 0, 10, 10)]
    # The first answer overlaps the second truth best; greedy by IoU would pair them and
    # leave the first truth with an answer below 0.5. Hungarian pairs both.
    answers = [box("a", 3, 0, 10, 10), box("a", 5.5, 0, 10, 10)]
    best = box_iou(truth[1], answers[0])  # the highest IoU of all four pairs
    assert best > box_iou(truth[1], answers[1]) and best > box_iou(truth[0], answers[0])
    assert box_iou(truth[0], answers[1]) < 0.5 <= box_iou(truth[0], answers[0])
    assert sorted(match_boxes(truth, answers)) == [(0, 0), (1, 1)]
    assert image_matches(truth, answers)
    # Two answers on one object: one matches, the other is extra.
    assert not image_matches([truth[0]], [truth[0], truth[0]])
    assert match_boxes([truth[0]], [box("b", 0, 0, 10, 10)]) == []
    assert match_boxes([truth[0]], [box("b", 0, 0, 10, 10)], same_class=False) == [(0, 0)]


def test_invalid_boxes_are_refused_with_what_is_wrong():
    with pytest.raises(BoxError, match="img.png, box 0: zero-area box"):
        check_boxes([box("1", 1, 1, 0, 5)], 50, 50, where="img.png")
    with pytest.raises(BoxError, match="box 1: box x=45.*reaches outside the 50 x 50 image"):
        check_boxes([box("1", 1, 1, 5, 5), box("1", 45, 1, 10, 5)], 50, 50)
    with pytest.raises(BoxError, match="unknown class 'x'; valid: 0, 1"):
        check_boxes([box("x", 1, 1, 5, 5)], 50, 50, classes=["0", "1"])
    with pytest.raises(BoxError, match="keys label, x, y, w, h"):
        check_boxes([{"label": "1", "x": 1}], 50, 50)
    with pytest.raises(BoxError, match="finite numbers"):
        check_boxes([box("1", float("nan"), 1, 5, 5)], 50, 50)


def test_clipping_keeps_a_box_inside_and_never_zero_area():
    assert clip_box(box("1", -5, 40, 20, 20), 50, 50) == box("1", 0.0, 40.0, 15.0, 10.0)
    thin = clip_box(box("1", 60, 10, 5, 5), 50, 50)  # wholly outside: a 1 px sliver remains
    assert thin["w"] == 1.0 and thin["x"] + thin["w"] <= 50
    check_boxes([thin], 50, 50)


# ---- boxes.json -----------------------------------------------------------------------------
def write(tmp_path, images, classes=("0", "1")):
    (tmp_path / "a.png").write_bytes(b"x")
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"classes": list(classes), "images": images}))
    return path


def test_boxes_json_round_trips(tmp_path):
    images = {"a.png": ImageBoxes(40, 30, [box("1", 1.0, 2.0, 3.0, 4.0)], "test",
                                  [{"x": 5.0, "y": 5.0, "w": 2.0, "h": 2.0}])}
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "boxes.json").write_text(boxes_json_text(["0", "1"], images))
    read = read_boxes_json(tmp_path / "boxes.json")
    assert read.classes == ("0", "1")
    assert read.images == {(tmp_path / "a.png").resolve(): images["a.png"]}
    assert read.split("test") == [(tmp_path / "a.png").resolve()] and read.split("pool") == []


def test_reading_boxes_json_names_the_image_and_the_fault(tmp_path):
    def entry(*boxes, **more):
        return {"a.png": {"width": 40, "height": 30, "boxes": list(boxes), **more}}

    bad = {
        "a.png, box 0: box x=35.0.*outside the 40 x 30 image": entry(box("1", 35.0, 1, 10, 5)),
        "a.png, box 1: zero-area box": entry(box("1", 1, 1, 5, 5), box("0", 1, 1, 5, 0)),
        "a.png, box 0: unknown class '7'; valid: 0, 1": entry(box("7", 1, 1, 5, 5)),
        "a.png: unknown split 'train'; valid: pool, test": entry(split="train"),
        "a.png: width and height must be positive whole pixels": {
            "a.png": {"width": 0, "height": 30, "boxes": []}},
        "1 image.* do not exist: b.png": {"b.png": {"width": 4, "height": 4, "boxes": []}},
    }
    for message, images in bad.items():
        with pytest.raises(BoxError, match=message):
            read_boxes_json(write(tmp_path, images))
    with pytest.raises(BoxError, match="boxes file not found.*datasets export mnist-detection"):
        read_boxes_json(tmp_path / "nothing.json")
    (tmp_path / "boxes.json").write_text("{not json")
    with pytest.raises(BoxError, match="not valid JSON"):
        read_boxes_json(tmp_path / "boxes.json")
    assert read_boxes_json(write(tmp_path, entry())).images  # no split given: the pool
