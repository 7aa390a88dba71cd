"""A simulated person drawing boxes: the truth of one image, copied with the faults people make.

Every box drawn gets a small jitter of its edges (a careful person is off by a pixel or so;
kept at IoU >= 0.85 with the truth, so it still counts as right). On top of that, faults at a
box-level rate ``fault_rate`` (faults made / true boxes, over many images):

- ``miss``: the box is not drawn. Misses go mostly to small objects: given a fault, a box of
  16 px or less is missed three times out of five, a 48 px box about one time in seven.
- ``bad_box``: drawn badly enough to be wrong, IoU < 0.5 (shifted off the object, far too
  loose, or around a part of it).
- ``wrong_class``: the right box with the wrong label; a confusable class (4/9, 3/5, 7/1, ...)
  two times out of three, else any other class.
- ``extra``: a box around something that is not an object (a clutter region when the image has
  any, else an empty spot), one fault in ten; an empty image gets one at rate
  ``fault_rate / 10``, so on a set with few empty images the overall rate stays near
  ``fault_rate``.

The fault probability of a box does not depend on its size (only the kind of fault does), so the
rate holds whatever the sizes of the objects. Deterministic given the Generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labeling.boxes import BoxError, box_iou, check_boxes, clip_box

DIGITS = tuple(str(d) for d in range(10))
# Digits people confuse, each with the classes it is mistaken for (MNIST's usual confusions).
DIGIT_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "0": ("6", "8"), "1": ("7",), "2": ("7",), "3": ("5", "8"), "4": ("9",),
    "5": ("3", "6"), "6": ("0", "5"), "7": ("1", "9"), "8": ("3", "0"), "9": ("4", "7"),
}
FAULT_KINDS = ("miss", "bad_box", "wrong_class", "extra")
EXTRA_SHARE = 0.1  # of all faults
CONFUSABLE_SHARE = 2 / 3  # of wrong classes, where the class has confusable ones
CAREFUL_MIN_IOU = 0.85  # the jitter of a box drawn without a fault stays at or above this
MISS_SIZE_PX = 16.0  # boxes this small (sqrt of the area) or smaller are missed most


@dataclass(frozen=True)
class BoxFault:
    """One fault: its kind, and the index of the true box it concerns (``None`` for extra)."""

    kind: str
    truth_index: int | None


@dataclass(frozen=True)
class BoxAnswer:
    """What the simulated person drew, the faults made, and whether they kept the shown
    pre-annotation unchanged (then ``faults`` is empty: they drew nothing themselves)."""

    boxes: list[dict]
    faults: tuple[BoxFault, ...] = ()
    kept_pre_annotation: bool = False


def simulate_box_answer(
    truth_boxes: Sequence[Mapping], width: float, height: float, *,
    rng: np.random.Generator, fault_rate: float, **options,
) -> list[dict]:
    """The boxes a fallible person draws on a ``width`` x ``height`` image whose true boxes
    are ``truth_boxes``; the options are those of ``simulate_box_answer_with_faults``."""
    return simulate_box_answer_with_faults(
        truth_boxes, width, height, rng=rng, fault_rate=fault_rate, **options).boxes


def simulate_box_answer_with_faults(
    truth_boxes: Sequence[Mapping], width: float, height: float, *,
    rng: np.random.Generator, fault_rate: float, classes: Sequence[str] = DIGITS,
    confusions: Mapping[str, Sequence[str]] = DIGIT_CONFUSIONS,
    clutter: Sequence[Mapping] = (), jitter: float = 0.02,
) -> BoxAnswer:
    """Like ``simulate_box_answer``, with the faults made (see the module docstring).

    ``classes``: the labels a wrong class is drawn from; ``confusions``: class -> the classes
    it is most often mistaken for; ``clutter``: regions with ink that is no object (``x, y,
    w, h``), where an extra box goes; ``jitter``: the standard deviation of a careful edge, as
    a fraction of the box's side. Raises ``BoxError`` for invalid boxes and ``ValueError``
    for a rate or a jitter out of range.
    """
    truth = _check(truth_boxes, width, height, classes, rng, fault_rate, jitter)
    clutter = check_boxes([{"label": "clutter", **c} for c in clutter], width, height,
                          where="clutter")
    return _answer(truth, width, height, rng, fault_rate, tuple(classes), confusions,
                   clutter, jitter)


def answer_with_pre_annotation(
    truth_boxes: Sequence[Mapping], model_boxes: Sequence[Mapping], width: float,
    height: float, *, rng: np.random.Generator, keep_rate: float, fault_rate: float,
    **options,
) -> BoxAnswer:
    """A person shown the model's boxes: with probability ``keep_rate`` they keep them as
    they are (right or wrong: automation bias, or a correct pre-annotation), else they draw
    their own as ``simulate_box_answer_with_faults`` does (same options)."""
    if not 0.0 <= keep_rate <= 1.0:
        raise ValueError(f"keep_rate must be between 0 and 1, got {keep_rate}")
    shown = check_boxes(model_boxes, width, height,
                        classes=options.get("classes", DIGITS), where="model boxes")
    # Drawn first and always, so the person's own answer does not depend on keep_rate.
    own = simulate_box_answer_with_faults(truth_boxes, width, height, rng=rng,
                                          fault_rate=fault_rate, **options)
    if rng.random() < keep_rate:
        return BoxAnswer(shown, (), kept_pre_annotation=True)
    return own


def _check(truth_boxes, width, height, classes, rng, fault_rate, jitter) -> list[dict]:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
    if not 0.0 <= jitter <= 0.2:
        raise ValueError(f"jitter is a fraction of the box side, between 0 and 0.2; got "
                         f"{jitter}")
    if len(classes) < 1:
        raise BoxError("classes must name at least one class")
    return check_boxes(truth_boxes, width, height, classes=classes, where="truth boxes")


def _answer(truth, width, height, rng, fault_rate, classes, confusions, clutter,
            jitter) -> BoxAnswer:
    box_rate = fault_rate * (1.0 - EXTRA_SHARE)
    drawn: list[dict] = []
    faults: list[BoxFault] = []
    for i, box in enumerate(truth):
        faulted, kind_u = rng.random() < box_rate, rng.random()
        careful = _jittered(box, width, height, rng, jitter)
        if not faulted:
            drawn.append(careful)
            continue
        kind = _fault_kind(box, kind_u, classes)
        faults.append(BoxFault(kind, i))
        if kind == "bad_box":
            drawn.append(_bad_box(box, width, height, rng))
        elif kind == "wrong_class":
            drawn.append({**careful, "label": _wrong_class(box["label"], classes, confusions,
                                                           rng)})
    extra_p = min(1.0, fault_rate * EXTRA_SHARE * max(len(truth), 1))
    if rng.random() < extra_p:
        faults.append(BoxFault("extra", None))
        drawn.append(_extra_box(truth, clutter, width, height, classes, rng))
    return BoxAnswer(drawn, tuple(faults))


def _fault_kind(box: dict, u: float, classes: tuple[str, ...]) -> str:
    size = float(np.sqrt(box["w"] * box["h"]))
    miss = 3.0 * min(1.0, (MISS_SIZE_PX / size) ** 2)
    wrong = 1.0 if len(classes) > 1 else 0.0
    weights = np.array([miss, 1.0, wrong])
    pick = int(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"))
    return ("miss", "bad_box", "wrong_class")[min(pick, 2)]


def _jittered(box: dict, width, height, rng, jitter: float) -> dict:
    sides = np.array([box["w"], box["h"], box["w"], box["h"]])
    moves = np.clip(rng.normal(0.0, jitter, 4), -2.5 * jitter, 2.5 * jitter) * sides
    for _ in range(8):  # halve an unlucky draw until it is within a careful person's reach
        x0, y0 = box["x"] + moves[0], box["y"] + moves[1]
        out = clip_box({"label": box["label"], "x": x0, "y": y0,
                        "w": box["x"] + box["w"] + moves[2] - x0,
                        "h": box["y"] + box["h"] + moves[3] - y0}, width, height)
        if box_iou(box, out) >= CAREFUL_MIN_IOU:
            return out
        moves = moves / 2
    return dict(box)


def _bad_box(box: dict, width, height, rng) -> dict:
    cx, cy = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    mode = rng.integers(3)
    for _ in range(10):
        if mode == 0:  # shifted off the object by most of its size
            angle = rng.uniform(0, 2 * np.pi)
            reach = rng.uniform(0.6, 1.2)
            cx2, cy2 = cx + np.cos(angle) * reach * box["w"], cy + np.sin(angle) * reach * box["h"]
            w2, h2 = box["w"], box["h"]
        elif mode == 1:  # far too loose, around the object and much around it
            cx2, cy2, scale = cx, cy, rng.uniform(1.5, 2.5)
            w2, h2 = box["w"] * scale, box["h"] * scale
        else:  # around a part of it only
            scale = rng.uniform(0.35, 0.6)
            w2, h2 = box["w"] * scale, box["h"] * scale
            cx2 = cx + rng.uniform(-0.5, 0.5) * (box["w"] - w2)
            cy2 = cy + rng.uniform(-0.5, 0.5) * (box["h"] - h2)
        out = clip_box({"label": box["label"], "x": cx2 - w2 / 2, "y": cy2 - h2 / 2,
                        "w": w2, "h": h2}, width, height)
        if box_iou(box, out) < 0.5:
            return out
        mode = 2  # clipped back onto the object at the border: a part always works
    half = {"label": box["label"], "x": box["x"], "y": box["y"], "w": box["w"] / 2,
            "h": box["h"] / 2}
    return clip_box(half, width, height)


def _wrong_class(label: str, classes, confusions, rng) -> str:
    near = [c for c in confusions.get(label, ()) if c in classes and c != label]
    if near and rng.random() < CONFUSABLE_SHARE:
        return near[int(rng.integers(len(near)))]
    others = [c for c in classes if c != label]
    return others[int(rng.integers(len(others)))]


def _extra_box(truth, clutter, width, height, classes, rng) -> dict:
    label = classes[int(rng.integers(len(classes)))]
    if clutter:
        spot = clutter[int(rng.integers(len(clutter)))]
        pad = rng.uniform(0.5, 2.0, 4)
        return clip_box({"label": label, "x": spot["x"] - pad[0], "y": spot["y"] - pad[1],
                         "w": spot["w"] + pad[0] + pad[2], "h": spot["h"] + pad[1] + pad[3]},
                        width, height)
    side = min(width, height)
    for _ in range(20):  # an empty spot: one that overlaps no true box much
        w, h = rng.uniform(0.08, 0.2, 2) * side
        box = clip_box({"label": label, "x": rng.uniform(0, width - w),
                        "y": rng.uniform(0, height - h), "w": w, "h": h}, width, height)
        if all(box_iou(box, t) < 0.1 for t in truth):
            return box
    return box
