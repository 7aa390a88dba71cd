"""Check class lists and turn labels into class indices, once, at the public entry points."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Return ``classes`` as a tuple; raise ``ValueError`` if fewer than 2 or any repeat."""
    classes = tuple(classes)
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to train a classifier, got {list(classes)}")
    repeated = sorted(c for c, count in Counter(classes).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate classes {repeated} in {list(classes)}")
    return classes


def encode_labels(labels: Sequence[str], classes: tuple[str, ...]) -> np.ndarray:
    """Class-name labels -> int64 indices into ``classes`` [N].

    Raises ``ValueError`` naming the first unknown label and listing the valid classes.
    """
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            raise ValueError(
                f"unknown label {label!r} (item {i}); valid classes: {', '.join(classes)}"
            )
        out[i] = index[label]
    return out


def check_label_idx(label_idx: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Integer class indices [N] as int64; raise ``ValueError`` if any is outside 0..K-1."""
    arr = np.asarray(label_idx)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"label_idx must be a 1-D array of integers, got {arr.dtype} {arr.shape}")
    bad = arr[(arr < 0) | (arr >= n_classes)]
    if bad.size:
        raise ValueError(f"label index {int(bad[0])} out of range for {n_classes} classes")
    return arr.astype(np.int64)


def check_same_length(n_items: int, n_labels: int, what: str = "images") -> None:
    """Raise ``ValueError`` unless there is exactly one label per item."""
    if n_items != n_labels:
        raise ValueError(f"got {n_items} {what} but {n_labels} labels; need one label per item")
