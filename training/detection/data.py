"""Images and boxes -> detector input: reading files, checking targets once at the public
boundary, and the training-time shift.

Images travel as uint8 ``[3, H, W]`` tensors at their own size (the detector scales those
over ``models.MAX_SIDE`` down inside; grey images replicated to three
channels by ``open_image``, as the ImageNet backbone expects); boxes as float32 ``[M, 4]`` xyxy
pixels and labels as int64 ``[M]`` class indices.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training._progress import progress_bar
from training.images import ImageError, open_image


def check_detection_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """``classes`` as a tuple; ``ValueError`` if empty or any repeat (one class is fine for a
    detector: "object" versus nothing)."""
    classes = tuple(classes)
    if not classes:
        raise ValueError("need at least 1 class to train a detector, got none")
    repeated = sorted(c for c, count in Counter(classes).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate classes {repeated} in {list(classes)}")
    return classes


def check_targets(
    paths: Sequence[str | Path], targets: Sequence[Mapping[str, Any]], classes: tuple[str, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each target as ``(boxes float32 [M, 4], class indices int64 [M])``.

    Raises ``ValueError`` naming the image for: a count of targets other than of paths, a
    target without ``boxes`` and ``labels``, boxes not ``[M, 4]`` finite numbers, a label count
    other than the box count, an unknown class (listing the valid ones), or a box with no area
    (``x1 <= x0`` or ``y1 <= y0``). Whether boxes lie inside their image is checked once the
    image is read (``check_inside``).
    """
    if len(paths) != len(targets):
        raise ValueError(f"got {len(paths)} images but {len(targets)} targets; need one each")
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for path, target in zip(paths, targets, strict=True):
        where = f"target of image {path}"
        if not isinstance(target, Mapping) or not {"boxes", "labels"} <= set(target):
            raise ValueError(f"{where}: need a dict with 'boxes' and 'labels', got {target!r}")
        boxes = np.asarray(target["boxes"], dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise ValueError(f"{where}: boxes must be finite numbers of shape [M, 4] (x0, y0, "
                             f"x1, y1 in pixels), got shape {boxes.shape}")
        labels = list(target["labels"])
        if len(labels) != len(boxes):
            raise ValueError(f"{where}: {len(boxes)} boxes but {len(labels)} labels")
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise ValueError(f"{where}: unknown class {unknown[0]!r}; valid classes: "
                             f"{', '.join(classes)}")
        flat = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
        if flat.size:
            raise ValueError(f"{where}: box {int(flat[0])} {boxes[flat[0]].tolist()} has no "
                             f"area (need x1 > x0 and y1 > y0)")
        out.append((boxes.astype(np.float32), np.array([index[c] for c in labels], np.int64)))
    return out


def check_inside(path: str | Path, boxes: np.ndarray, width: int, height: int) -> None:
    """``ValueError`` naming the image if any box reaches outside its ``width`` x ``height``."""
    outside = np.flatnonzero((boxes[:, 0] < 0) | (boxes[:, 1] < 0)
                             | (boxes[:, 2] > width) | (boxes[:, 3] > height))
    if outside.size:
        raise ValueError(f"target of image {path}: box {int(outside[0])} "
                         f"{boxes[outside[0]].tolist()} lies outside the {width}x{height} image")


def read_image(path: str | Path) -> torch.Tensor:
    """The file as uint8 ``[3, H, W]``; ``ImageError`` naming it if it cannot be read."""
    try:
        img = open_image(path, channels=3)
    except ImageError as err:
        raise ImageError(f"cannot read image {path}: {err}") from None
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def iter_images(
    paths: Sequence[str | Path], *, progress: bool, description: str
) -> Iterator[torch.Tensor]:
    """``read_image`` over ``paths`` in order, with a progress bar when asked for."""
    with progress_bar(progress, description, len(paths)) as bar:
        for path in paths:
            yield read_image(path)
            bar.advance()


def to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> float ``[3, H, W]`` in 0..1, what torchvision detectors take
    (they normalise with the ImageNet statistics themselves)."""
    return image.float().div_(255)


def shift(
    image: torch.Tensor, boxes: torch.Tensor, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the image content (and its boxes) by a random offset that keeps every box whole
    inside the frame; uncovered pixels are black. Teaches position invariance to a detector
    trained on a few hundred images, where each object would otherwise sit in one place."""
    _, h, w = image.shape
    if len(boxes):
        lo_x, lo_y = -float(boxes[:, 0].min()), -float(boxes[:, 1].min())
        hi_x, hi_y = w - float(boxes[:, 2].max()), h - float(boxes[:, 3].max())
    else:
        lo_x, lo_y, hi_x, hi_y = -w / 4, -h / 4, w / 4, h / 4
    u = torch.rand(2, generator=generator)
    dx = int(np.floor(lo_x + float(u[0]) * (hi_x - lo_x)))
    dy = int(np.floor(lo_y + float(u[1]) * (hi_y - lo_y)))
    dx, dy = max(dx, int(np.ceil(lo_x))), max(dy, int(np.ceil(lo_y)))
    out = torch.zeros_like(image)
    src_x, dst_x = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    src_y, dst_y = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    out[:, dst_y, dst_x] = image[:, src_y, src_x]
    return out, boxes + torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)
