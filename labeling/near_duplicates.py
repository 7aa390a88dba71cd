"""Near-duplicate images: an image and its resized, re-encoded or lightly edited copy.

An item's fingerprint is its 16x16 grey thumbnail (256 bytes, made at ingest), compared as
the correlation of the two thumbnails (each made zero-mean and unit-norm). Two items are near
duplicates at a correlation of ``SAME_IMAGE`` or more: a 2x-resized JPEG (quality 70) copy of an
MNIST digit scores 0.9994, while no two of MNIST's 5,000 distinct digits, nor two of the 180
photos, reach 0.995 (their maxima: 0.9947 and 0.94). A pixel thumbnail catches copies, not two
photos of one scene; an embedding would, at the price of a model per ingest.

A new item joins the group of the existing item it is most similar to (if any reaches the
level), else starts its own group named by its key. Groups are what the statistics need: no
group may have a held-out member and a training member (the copy would leak the answer into
training and flatter every bound), so ``kept_apart`` drops such training labels.

Vocabulary: ``thumbs`` [N, 256] uint8; ``groups`` item key -> group key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SAME_IMAGE = 0.995
THUMB_SIDE = 16
_BLOCK = 4096  # rows compared at once: memory stays at a few MB whatever the pool


def unit_rows(thumbs: np.ndarray) -> np.ndarray:
    """[N, 256] float32 rows, zero-mean and unit-norm (a flat thumbnail stays all zeros)."""
    rows = np.asarray(thumbs, dtype=np.float32).reshape(len(thumbs), -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def assign_groups(new_keys: Sequence[str], new_thumbs: np.ndarray, old_keys: Sequence[str],
                  old_thumbs: np.ndarray, old_groups: Mapping[str, str]) -> dict[str, str]:
    """Group key for each new item: the group of the most similar earlier item (earlier in
    the store, or earlier in ``new_keys``) at ``SAME_IMAGE`` or more, else its own key."""
    old = unit_rows(old_thumbs) if len(old_keys) else np.zeros((0, THUMB_SIDE ** 2), np.float32)
    new = unit_rows(new_thumbs) if len(new_keys) else np.zeros((0, THUMB_SIDE ** 2), np.float32)
    out: dict[str, str] = {}
    best_old = np.full(len(new_keys), -1)
    if len(old_keys):
        for start in range(0, len(new_keys), _BLOCK):
            sims = new[start:start + _BLOCK] @ old.T
            top = sims.argmax(axis=1)
            hit = sims[np.arange(len(top)), top] >= SAME_IMAGE
            best_old[start:start + _BLOCK] = np.where(hit, top, -1)
    for i, key in enumerate(new_keys):
        if best_old[i] >= 0:
            out[key] = old_groups[old_keys[best_old[i]]]
            continue
        if i:  # a copy ingested in the same batch as its original
            sims = new[:i] @ new[i]
            j = int(sims.argmax())
            if sims[j] >= SAME_IMAGE and np.any(new[i]):
                out[key] = out[new_keys[j]]
                continue
        out[key] = key
    return out


def kept_apart(train: Mapping[str, str], held_out: set[str], groups: Mapping[str, str]
               ) -> dict[str, str]:
    """``train`` without the items whose near-duplicate group has a held-out member."""
    tainted = {groups[k] for k in held_out if k in groups}
    return {k: v for k, v in train.items() if groups.get(k) not in tainted}
