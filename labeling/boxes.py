"""Boxes on an image: their format, its validation, IoU and matching one answer to the truth.

A box is a dict ``{"label": "7", "x": 12.0, "y": 30.0, "w": 20.0, "h": 27.0}`` in pixels:
``x``, ``y`` the top-left corner (Label Studio's convention, there in percent), ``w``, ``h``
the width and height. A box covers ``[x, x + w) x [y, y + h)``, so a box around the pixel
columns 12..31 has ``x = 12, w = 20``. Plain dicts, not a class, because they are what
``boxes.json``, Label Studio and the simulated annotators exchange.

Matching is Hungarian (``scipy.optimize.linear_sum_assignment``), not greedy: it finds the most
pairs that qualify (IoU at or above the threshold, same class when asked), and among those the
highest total IoU, whatever order the boxes come in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

BOX_KEYS = ("label", "x", "y", "w", "h")
# Slack for boxes computed in floats (a jittered edge clipped to the border) and for JSON.
_EDGE_SLACK = 1e-6


class BoxError(ValueError):
    """A box or a boxes file that is not valid; the message names the image and the box."""


def check_boxes(
    boxes: Sequence[Mapping], width: float, height: float, *,
    classes: Sequence[str] | None = None, where: str = "image",
) -> list[dict]:
    """Validate ``boxes`` on a ``width`` x ``height`` image; return them as plain dicts with
    float coordinates. ``where`` names the image in the error.

    Raises ``BoxError`` for a box that is not a dict with ``label, x, y, w, h``, a coordinate
    that is not a finite number, a zero or negative width or height, a box reaching outside
    the image, or (when ``classes`` is given) a label that is not one of ``classes``.
    """
    if not (_finite(width) and _finite(height) and width > 0 and height > 0):
        raise BoxError(f"{where}: width and height must be positive numbers, got "
                       f"{width!r} x {height!r}")
    known = set(classes) if classes is not None else None
    out: list[dict] = []
    for i, box in enumerate(boxes):
        name = f"{where}, box {i}"
        if not isinstance(box, Mapping) or not set(BOX_KEYS) <= set(box):
            raise BoxError(f"{name}: a box is a dict with keys {', '.join(BOX_KEYS)}; "
                           f"got {box!r}")
        label = box["label"]
        if not isinstance(label, str) or not label:
            raise BoxError(f"{name}: label must be a non-empty string, got {label!r}")
        if known is not None and label not in known:
            raise BoxError(f"{name}: unknown class {label!r}; valid: {', '.join(classes)}")
        x, y, w, h = (box[k] for k in BOX_KEYS[1:])
        if not all(_finite(v) for v in (x, y, w, h)):
            raise BoxError(f"{name}: x, y, w, h must be finite numbers, got {x!r}, {y!r}, "
                           f"{w!r}, {h!r}")
        if w <= 0 or h <= 0:
            raise BoxError(f"{name}: zero-area box (w={w}, h={h}); a box needs w > 0 and h > 0")
        if x < -_EDGE_SLACK or y < -_EDGE_SLACK or x + w > width + _EDGE_SLACK \
                or y + h > height + _EDGE_SLACK:
            raise BoxError(f"{name}: box x={x}, y={y}, w={w}, h={h} reaches outside the "
                           f"{width} x {height} image; clip it to the image")
        out.append({"label": label, "x": float(x), "y": float(y), "w": float(w),
                    "h": float(h)})
    return out


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clip_box(box: Mapping, width: float, height: float, *, min_side: float = 1.0) -> dict:
    """``box`` cut to the image; a side left shorter than ``min_side`` is widened to it (inside
    the image), so the result is never zero-area. Keeps the label."""
    x0, x1 = _clip_span(box["x"], box["x"] + box["w"], width, min_side)
    y0, y1 = _clip_span(box["y"], box["y"] + box["h"], height, min_side)
    return {"label": box["label"], "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}


def _clip_span(lo: float, hi: float, size: float, min_side: float) -> tuple[float, float]:
    lo, hi = min(max(lo, 0.0), size), min(max(hi, 0.0), size)
    side = min(min_side, size)
    if hi - lo < side:
        mid = min(max((lo + hi) / 2, side / 2), size - side / 2)
        lo, hi = mid - side / 2, mid + side / 2
    return float(lo), float(hi)


def box_iou(a: Mapping, b: Mapping) -> float:
    """Intersection over union of two boxes (labels ignored); 0 when they do not touch."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(boxes_a: Sequence[Mapping], boxes_b: Sequence[Mapping]) -> np.ndarray:
    """IoU of every box of ``boxes_a`` with every box of ``boxes_b``: ``[len(a), len(b)]``."""
    a, b = _corners(boxes_a), _corners(boxes_b)  # [A, 4], [B, 4] as x0, y0, x1, y1
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0],
                                                                         b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1],
                                                                         b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _corners(boxes: Sequence[Mapping]) -> np.ndarray:
    if not boxes:
        return np.zeros((0, 4))
    xywh = np.array([[b["x"], b["y"], b["w"], b["h"]] for b in boxes], dtype=float)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def match_boxes(
    truth: Sequence[Mapping], answer: Sequence[Mapping], *, iou: float = 0.5,
    same_class: bool = True,
) -> list[tuple[int, int]]:
    """One-to-one pairs ``(truth index, answer index)`` with IoU >= ``iou`` (and the same label
    when ``same_class``): as many pairs as possible, then the highest total IoU (Hungarian)."""
    overlap = iou_matrix(truth, answer)
    qualifies = overlap >= iou
    if same_class and qualifies.size:
        qualifies &= np.array([[t["label"] == a["label"] for a in answer] for t in truth])
    if not qualifies.any():
        return []
    # A qualifying pair costs -IoU (between -1 and 0); one that does not costs more than all
    # qualifying pairs together could save, so the assignment first takes the most qualifying
    # pairs, then the best IoU among them.
    cost = np.where(qualifies, -overlap, min(qualifies.shape) + 1.0)
    # scipy.optimize takes 0.4 s to import: only where boxes are matched, not in every
    # command that loads the task types (labelloop status).
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if qualifies[r, c]]


def image_matches(truth: Sequence[Mapping], answer: Sequence[Mapping], *,
                  iou: float = 0.5) -> bool:
    """Whether ``answer`` gets the image right: every true box matched one-to-one by an answer
    box of the same class at IoU >= ``iou``, and no answer box left over. Two empty lists
    match ("nothing here" is a label too)."""
    if len(truth) != len(answer):
        return False
    return len(match_boxes(truth, answer, iou=iou)) == len(truth)
