"""Detection images made of real handwritten digits: a few MNIST digits pasted at random sizes
and places on a dark canvas, with clutter that is not an object, and the truth box of each.

A digit is cut to its ink, scaled so its longer side is 14-48 px (aspect kept), and cut again
to the pixels brighter than ``INK``: its truth box is exactly that rectangle, so every border
row and column of a box holds ink. Digits are combined with ``max()``, so where two overlap
both stay legible; two digits overlap at most ``MAX_IOU`` and neither covers more than
``MAX_COVER`` of the other (touching and some overlap happen, hiding one inside another does
not). Clutter (a stroke cut from another digit, or a blob) is smaller than any digit and kept
``CLUTTER_GAP`` px away from every digit box, so it never changes a box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

INK = 40  # a pixel brighter than this is ink
CANVAS_PX = (96, 160)  # width and height, each drawn from this range (inclusive)
DIGIT_PX = (14, 48)  # the longer side of a digit before the cut to its ink
# Chance of 0, 1, 2, 3, 4 digits on one canvas: some empty ones, mostly one to three.
DIGIT_COUNT_P = (0.08, 0.25, 0.30, 0.22, 0.15)
MAX_IOU = 0.3
MAX_COVER = 0.5  # of the smaller box
CLUTTER_COUNT = (0, 3)  # items per canvas, inclusive
CLUTTER_PX = (4, 10)  # longer side of a clutter item
CLUTTER_GAP = 2
TRIES = 40  # random positions tried for one item before it is left out


@dataclass(frozen=True)
class Canvas:
    """One image: grayscale pixels ``[H, W]``, its truth boxes and its clutter regions."""

    pixels: np.ndarray
    boxes: list[dict]
    clutter: list[dict]


def digit_canvas(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Canvas:
    """One canvas drawn from ``digits`` (uint8 ``[N, 28, 28]``) with class names ``labels``
    ``[N]``; every random choice comes from ``rng``."""
    width, height = (int(v) for v in rng.integers(CANVAS_PX[0], CANVAS_PX[1] + 1, 2))
    canvas = np.zeros((height, width), dtype=np.uint8)
    boxes: list[dict] = []
    for _ in range(int(rng.choice(len(DIGIT_COUNT_P), p=DIGIT_COUNT_P))):
        k = int(rng.integers(len(digits)))
        patch = _scaled_digit(digits[k], int(rng.integers(DIGIT_PX[0], DIGIT_PX[1] + 1)))
        spot = _free_spot(patch.shape, width, height, rng, lambda box: _fits_digit(box, boxes))
        if spot is not None:
            _paste(canvas, patch, spot)
            boxes.append({"label": str(labels[k]), **spot})
    clutter: list[dict] = []
    for _ in range(int(rng.integers(CLUTTER_COUNT[0], CLUTTER_COUNT[1] + 1))):
        patch = _fragment(digits, rng) if rng.random() < 0.6 else _blob(rng)
        spot = _free_spot(patch.shape, width, height, rng,
                          lambda box: _apart(box, boxes) and _apart(box, clutter, gap=0))
        if spot is not None:
            _paste(canvas, patch, spot)
            clutter.append(spot)
    return Canvas(canvas, boxes, clutter)


def _scaled_digit(digit: np.ndarray, longer_px: int) -> np.ndarray:
    ink = _cut_to(digit, 0)
    scale = longer_px / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    return _cut_to(np.asarray(Image.fromarray(ink).resize(size, Image.BILINEAR)), INK)


def _cut_to(pixels: np.ndarray, above: int) -> np.ndarray:
    """``pixels`` cut to the rows and columns that hold a value above ``above``."""
    rows = np.flatnonzero((pixels > above).any(axis=1))
    cols = np.flatnonzero((pixels > above).any(axis=0))
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _fragment(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A piece of a stroke: a window of a random digit, shrunk below the size of any digit."""
    digit = _cut_to(digits[int(rng.integers(len(digits)))], 0)
    for _ in range(TRIES):
        h, w = (int(rng.integers(5, max(6, min(12, s)) + 1)) for s in digit.shape)
        y = int(rng.integers(0, max(1, digit.shape[0] - h + 1)))
        x = int(rng.integers(0, max(1, digit.shape[1] - w + 1)))
        window = digit[y:y + h, x:x + w]
        if (window > INK).sum() >= 6:
            break
    else:
        return _blob(rng)
    window = _cut_to(window, INK)
    longer = int(rng.integers(CLUTTER_PX[0], CLUTTER_PX[1] + 1))
    scale = min(1.0, longer / max(window.shape))
    size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
    small = np.asarray(Image.fromarray(window).resize(size, Image.BILINEAR))
    return _cut_to(small, INK) if (small > INK).any() else _blob(rng)


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A smudge: an elliptic Gaussian spot."""
    ry, rx = rng.uniform(CLUTTER_PX[0] / 2, CLUTTER_PX[1] / 2, 2)
    yy, xx = np.mgrid[-int(ry):int(ry) + 1, -int(rx):int(rx) + 1]
    peak = rng.uniform(100, 230)
    spot = peak * np.exp(-((yy / (ry / 1.5)) ** 2 + (xx / (rx / 1.5)) ** 2) / 2)
    return _cut_to(np.clip(np.rint(spot), 0, 255).astype(np.uint8), INK)


def _free_spot(shape, width, height, rng, allowed) -> dict | None:
    h, w = shape
    if w > width or h > height:
        return None
    for _ in range(TRIES):
        box = {"x": float(rng.integers(0, width - w + 1)),
               "y": float(rng.integers(0, height - h + 1)), "w": float(w), "h": float(h)}
        if allowed(box):
            return box
    return None


def _paste(canvas: np.ndarray, patch: np.ndarray, spot: dict) -> None:
    x, y = int(spot["x"]), int(spot["y"])
    region = canvas[y:y + patch.shape[0], x:x + patch.shape[1]]
    np.maximum(region, patch, out=region)


def _overlap(a: dict, b: dict, gap: float = 0.0) -> float:
    """Area shared by ``a`` and ``b`` once ``a`` is grown by ``gap`` on every side."""
    iw = min(a["x"] + a["w"] + gap, b["x"] + b["w"]) - max(a["x"] - gap, b["x"])
    ih = min(a["y"] + a["h"] + gap, b["y"] + b["h"]) - max(a["y"] - gap, b["y"])
    return max(iw, 0.0) * max(ih, 0.0)


def _fits_digit(box: dict, placed: list[dict]) -> bool:
    for other in placed:
        inter = _overlap(box, other)
        small = min(box["w"] * box["h"], other["w"] * other["h"])
        union = box["w"] * box["h"] + other["w"] * other["h"] - inter
        if inter / union > MAX_IOU or inter / small > MAX_COVER:
            return False
    return True


def _apart(box: dict, others: list[dict], gap: float = CLUTTER_GAP) -> bool:
    return all(_overlap(box, other, gap) == 0 for other in others)
