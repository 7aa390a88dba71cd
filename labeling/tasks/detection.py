"""Object detection: boxes with a class each, any number per image (none is a real answer).

Labeling config ``<Image name="image" value="$image"/>`` + ``<RectangleLabels name="label"
toName="image">``. Label Studio keeps a box in percent of the image (``x``, ``y`` its top-left
corner, ``width``, ``height``) with the image's ``original_width`` / ``original_height``;
labelloop keeps it in pixels, in the same corner-and-size form (``labeling.boxes``).

A value (a label, a pre-annotation, one person's answer) is ``{"width": W, "height": H,
"boxes": [{"label", "x", "y", "w", "h"}, ...]}``; its label text is the sorted class names of
its boxes ("3 7 7"), or ``nothing`` for an image with no object in it.

Several people's answers are merged box by box: boxes of one class that overlap at IoU >= 0.5
across people are one object (at most one box per person each); an object most people drew
is kept, at the median of their corners; one drawn by exactly half of them is a tie, which
leaves the image a disagreement for another person to settle, as a tied class does.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from labeling.boxes import box_iou, image_matches
from labeling.tasks.base import (
    IMAGE_NAME,
    LABEL_NAME,
    Agreement,
    TaskType,
    control_classes,
    control_config,
)

NOTHING = "nothing"
# Boxes of one object drawn by different people overlap at least this much.
SAME_OBJECT_IOU = 0.5
# An answer "keeps" a shown box it overlaps this much with the same class (a click can move
# a box by a pixel without anyone meaning to change it).
KEPT_IOU = 0.95
# Label Studio lets a box reach the image's edge; a rounding error beyond it is not a fault.
EDGE_SLACK_PX = 0.5
MIN_SIDE_PX = 1.0


def label_config(classes: Sequence[str]) -> str:
    """The labeling config XML for boxes over ``classes``."""
    return control_config("RectangleLabels", "Label", classes)


def config_classes(xml: str) -> tuple[str, ...] | None:
    """The classes of a labelloop-style box config, or ``None`` if it is not one."""
    return control_classes(xml, "RectangleLabels", "Label")


def box_results(value: dict) -> list[dict]:
    """Label Studio ``rectanglelabels`` regions for a value (pixels to percent); a box's
    ``score``, where it has one, goes with its region."""
    width, height = float(value["width"]), float(value["height"])
    out = []
    for i, box in enumerate(value.get("boxes") or []):
        region = {
            "id": f"b{i}", "from_name": LABEL_NAME, "to_name": IMAGE_NAME,
            "type": "rectanglelabels", "original_width": int(width),
            "original_height": int(height), "image_rotation": 0,
            "value": {"x": 100.0 * box["x"] / width, "y": 100.0 * box["y"] / height,
                      "width": 100.0 * box["w"] / width, "height": 100.0 * box["h"] / height,
                      "rotation": 0, "rectanglelabels": [box["label"]]},
        }
        if box.get("score") is not None:
            region["score"] = float(box["score"])
        out.append(region)
    return out


def read_boxes(result: list[dict], size: tuple[int, int] | None = None) -> tuple[dict, ...]:
    """The boxes of a result in pixels, one dict each; a region that is not a box of
    labelloop's element, or cannot be read as one, or (with ``size``, the item's image's
    width and height) says the image has another size, comes back as ``{"problem": why}``."""
    out: list[dict] = []
    for region in result:
        kind, name = region.get("type"), region.get("from_name")
        if kind != "rectanglelabels" or name != LABEL_NAME:
            out.append({"problem": f"a {kind!r} region from {name!r}, not a box of "
                                   f"labelloop's element {LABEL_NAME!r}"})
            continue
        box = _pixels(region)
        if size and "problem" not in box and (
                abs(box["image_w"] - size[0]) > 1 or abs(box["image_h"] - size[1]) > 1):
            # Its pixels would be of another image: a box past the real image's edge passed.
            box = {"problem": f"a box on a {box['image_w']:g} x {box['image_h']:g} image "
                              f"(original_width, original_height); the item's image is "
                              f"{size[0]} x {size[1]}"}
        out.append(box)
    return tuple(out)


def _pixels(region: dict) -> dict:
    value = region.get("value") or {}
    try:
        width, height = float(region["original_width"]), float(region["original_height"])
        x, y = float(value["x"]), float(value["y"])
        w, h = float(value["width"]), float(value["height"])
    except (KeyError, TypeError, ValueError):
        return {"problem": "a box without its position, size or the image's size "
                           "(original_width, original_height)"}
    if float(value.get("rotation") or 0) != 0:
        return {"problem": "a rotated box (labelloop's boxes are upright)"}
    labels = value.get("rectanglelabels") or []
    if len(labels) != 1:
        return {"problem": f"a box with {len(labels)} labels, not one"}
    return {"label": str(labels[0]), "x": x * width / 100, "y": y * height / 100,
            "w": w * width / 100, "h": h * height / 100, "image_w": width, "image_h": height}


def box_problem(box: dict, classes: Sequence[str]) -> str | None:
    """Why one read box is not a valid box of the project, or ``None``."""
    if "problem" in box:
        return box["problem"]
    if box["label"] not in classes:
        return (f"label {box['label']!r} is not a class of the project "
                f"(valid: {', '.join(classes)})")
    if box["w"] < MIN_SIDE_PX or box["h"] < MIN_SIDE_PX:
        return (f"a box of {box['w']:.1f} x {box['h']:.1f} px: too small to be an object "
                f"(at least {MIN_SIDE_PX:g} px a side)")
    inside = (box["x"] >= -EDGE_SLACK_PX and box["y"] >= -EDGE_SLACK_PX
              and box["x"] + box["w"] <= box["image_w"] + EDGE_SLACK_PX
              and box["y"] + box["h"] <= box["image_h"] + EDGE_SLACK_PX)
    if not inside:
        return (f"a box at x={box['x']:.1f}, y={box['y']:.1f}, {box['w']:.1f} x "
                f"{box['h']:.1f} px outside the {box['image_w']:g} x {box['image_h']:g} image")
    return None


def summary(labels: Sequence[str]) -> str:
    """A value's label text: its boxes' classes, sorted; ``nothing`` for no box."""
    return " ".join(sorted(labels))[:200] or NOTHING


def as_value(boxes: Sequence[dict]) -> dict:
    """The store's value of read, valid boxes (the image size from the boxes, if any)."""
    value: dict = {"boxes": [_inside(b) for b in boxes]}
    if boxes:
        value["width"], value["height"] = _size(boxes[0])
    return value


def _size(box: dict) -> tuple[int, int]:
    """The image's size a read box gives, in whole pixels (Label Studio sends floats)."""
    return round(box["image_w"]), round(box["image_h"])


def _inside(box: dict) -> dict:
    """A valid read box as the store keeps it: cut to the image (the edge slack lets a box
    start a fraction of a pixel outside; exports must not), to 0.01 px."""
    width, height = _size(box)  # the size the value keeps
    x0, y0 = max(0.0, box["x"]), max(0.0, box["y"])
    x1, y1 = min(float(width), box["x"] + box["w"]), min(float(height), box["y"] + box["h"])
    return {"label": box["label"], "x": round(x0, 2), "y": round(y0, 2),
            "w": round(x1 - x0, 2), "h": round(y1 - y0, 2)}


def merge_answers(ballots: Sequence[Sequence[dict]]) -> tuple[list[dict], bool]:
    """(the boxes most people drew, whether an object was drawn by exactly half): see the
    module docstring. Each ballot is one person's valid boxes."""
    objects: list[list[tuple[int, dict]]] = []  # per object: (ballot, box)
    for b, boxes in enumerate(ballots):
        taken: set[int] = set()
        # Best overlaps first, so a box joins the object it is most clearly part of.
        pairs = sorted(((box_iou(box, _centre(obj)), i, o) for i, box in enumerate(boxes)
                        for o, obj in enumerate(objects) if obj[0][1]["label"] == box["label"]),
                       key=lambda t: -t[0])
        placed: set[int] = set()
        for iou, i, o in pairs:
            if iou < SAME_OBJECT_IOU or i in placed or o in taken:
                continue
            objects[o].append((b, boxes[i]))
            placed.add(i)
            taken.add(o)
        objects.extend([(b, box)] for i, box in enumerate(boxes) if i not in placed)
    n = len(ballots)
    kept = [_centre(obj) for obj in objects if 2 * len(obj) > n]
    tied = any(2 * len(obj) == n for obj in objects)
    return kept, tied


def _centre(obj: list[tuple[int, dict]]) -> dict:
    """One object's box: the median of its people's corners."""
    boxes = [box for _, box in obj]
    x1, y1 = median(b["x"] for b in boxes), median(b["y"] for b in boxes)
    x2, y2 = median(b["x"] + b["w"] for b in boxes), median(b["y"] + b["h"] for b in boxes)
    first = boxes[0]
    return {"label": first["label"], "x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1,
            "image_w": first["image_w"], "image_h": first["image_h"]}


class Detection(TaskType):
    """Boxes with one class each."""

    name = "detection"
    accept_unit = "image"
    export_formats = ("csv", "coco", "yolo")

    def label_config(self, classes: Sequence[str]) -> str:
        return label_config(classes)

    def config_classes(self, xml: str) -> tuple[str, ...] | None:
        return config_classes(xml)

    def prediction_result(self, value: dict) -> list[dict]:
        return box_results(value)

    def answer_values(self, result: list[dict], size: tuple[int, int] | None = None
                      ) -> tuple[dict, ...]:
        return read_boxes(result, size)

    def rejection(self, values: tuple, classes: Sequence[str]) -> str | None:
        for box in values:
            if (why := box_problem(box, classes)) is not None:
                return why
        return None

    def vote(self, values: tuple) -> str:
        return summary([b["label"] for b in values])

    def agree(self, ballots: Sequence[tuple]) -> Agreement | None:
        if len(ballots) == 1:
            return Agreement(self.vote(ballots[0]), as_value(ballots[0]), (0,))
        boxes, tied = merge_answers(ballots)
        if tied:
            return None
        backers = tuple(i for i, b in enumerate(ballots) if image_matches(boxes, b))
        if not backers:  # nobody drew exactly the merged boxes: all who took part back it
            backers = tuple(range(len(ballots)))
        value = as_value(boxes)
        if not boxes:  # the image's size from any ballot that has a box
            sized = next((b for b in ballots if b), None)
            if sized:
                value["width"], value["height"] = _size(sized[0])
        return Agreement(summary([b["label"] for b in boxes]), value, backers)

    def answer_text(self, values: tuple) -> str | None:
        return self.vote(values) if all("problem" not in b for b in values) else None

    def answer_value(self, values: tuple) -> dict | None:
        if any("problem" in b for b in values):
            return None
        return as_value(values)

    def changed(self, values: tuple, shown: tuple) -> bool:
        return not image_matches(list(shown), list(values), iou=KEPT_IOU)

    def store_classes(self, classes: Sequence[str]) -> None:
        return None  # the text is a summary; every box was checked by ``rejection``
