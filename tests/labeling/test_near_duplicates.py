"""Near-duplicates: an image and its resized or re-encoded copy land in one group at ingest;
distinct digits do not; a held-out item's copy never trains a model."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from labeling.near_duplicates import kept_apart, one_per_group
from labeling.store import LabelStore
from pipeline.ingest import ingest_folder


def _digit(i: int) -> Image.Image:
    pixels = load_digits().images[i] * (255 / 16)
    return Image.fromarray(pixels.astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST)


def test_copies_are_grouped_and_distinct_images_are_not(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(60):
        _digit(i).save(folder / f"d{i:02d}.png")
    _digit(7).resize((64, 64)).convert("RGB").save(folder / "copy-big.jpg", quality=70)
    _digit(7).resize((24, 24)).save(folder / "copy-small.webp")
    store = LabelStore(tmp_path / "labels.db")
    try:
        ingest_folder(store, folder)
        groups = store.near_duplicate_groups()
        path_of = {i.key: i.path.rsplit("/", 1)[-1] for i in store.items()}
        named = {path_of[k]: g for k, g in groups.items()}
        assert set(named) == {"d07.png", "copy-big.jpg", "copy-small.webp"}
        assert len(set(named.values())) == 1
        # Added later, a copy joins the group that is already there.
        (folder / "later").mkdir()
        _digit(7).save(folder / "later" / "again.bmp")
        ingest_folder(store, folder)
        again = store.near_duplicate_groups()
        assert len(again) == 4 and len(set(again.values())) == 1
    finally:
        store.close()


def test_a_held_out_items_copy_is_kept_out_of_training():
    groups = {"a": "g1", "a-copy": "g1", "b": "b", "c": "c"}
    train = {"a-copy": "cat", "b": "dog", "c": "cat"}
    assert kept_apart(train, held_out={"a"}, groups=groups) == {"b": "dog", "c": "cat"}
    assert kept_apart(train, held_out={"b"}, groups=groups) == {"a-copy": "cat", "c": "cat"}


def test_the_strategy_sends_no_copy_of_what_people_have_and_one_of_each_group():
    # People labeled both an image and its copy, and the copy of a held-out item was dropped
    # from training: 14% of the answers in a review's photo run did nothing.
    groups = {"a": "g1", "a-copy": "g1", "b": "g2", "b-copy": "g2", "b-copy2": "g2"}
    candidates = ["a-copy", "b", "b-copy", "c", "b-copy2", "d"]
    assert one_per_group(candidates, groups, taken=["a"]) == ["b", "c", "d"]
    assert one_per_group(candidates, groups, taken=[]) == ["a-copy", "b", "c", "d"]
    assert one_per_group(candidates, {}, taken=["a"]) == candidates
