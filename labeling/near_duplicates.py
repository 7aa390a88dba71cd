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
training and flatter every bound), so ``kept_apart`` drops such training labels; and the
strategy does not send people a copy of an item they labeled or were sent (``one_per_group``).

Vocabulary: ``thumbs`` [N, 256] uint8; ``groups`` item key -> group key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

SAME_IMAGE = 0.995
THUMB_SIDE = 16
_BLOCK = 256  # new rows compared at once: _BLOCK x pool floats (100 MB at 100,000)


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
    keys = [*old_keys, *new_keys]
    side = THUMB_SIDE ** 2
    rows = unit_rows(np.concatenate([np.reshape(old_thumbs, (len(old_keys), side)),
                                     np.reshape(new_thumbs, (len(new_keys), side))]))
    groups = [old_groups[k] for k in old_keys] + [""] * len(new_keys)
    for lo in range(len(old_keys), len(keys), _BLOCK):
        hi = min(lo + _BLOCK, len(keys))
        sims = rows[lo:hi] @ rows[:hi].T
        # Each row against the items before it only (so groups are found in ingest order).
        sims[np.arange(hi)[None, :] >= np.arange(lo, hi)[:, None]] = -np.inf
        best = sims.argmax(axis=1)
        for r, i in enumerate(range(lo, hi)):
            j = int(best[r])
            groups[i] = groups[j] if sims[r, j] >= SAME_IMAGE else keys[i]
    return dict(zip(new_keys, groups[len(old_keys):], strict=True))


def kept_apart(train: Mapping[str, str], held_out: set[str], groups: Mapping[str, str]
               ) -> dict[str, str]:
    """``train`` without the items whose near-duplicate group has a held-out member."""
    tainted = {groups[k] for k in held_out if k in groups}
    return {k: v for k, v in train.items() if groups.get(k) not in tainted}


def one_per_group(candidates: Sequence[str], groups: Mapping[str, str], taken: Collection[str]
                  ) -> list[str]:
    """The ``candidates`` a strategy may send people: none whose group has a member in
    ``taken`` (labeled by people, picked before, or drawn for this batch's audit), and one
    member of each other group (the first). A copy's answer teaches nothing new, and next to a
    held-out copy it is dropped from training: people's answers spent for nothing."""
    blocked = {groups[k] for k in taken if k in groups}
    out = []
    for key in candidates:
        group = groups.get(key)
        if group is not None:
            if group in blocked:
                continue
            blocked.add(group)
        out.append(key)
    return out
