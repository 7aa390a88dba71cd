"""The real photo set: Debian's tuxpaint photo cut-outs as an image folder with a truth file."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from pipeline.datasets import DatasetError, export_dataset, load_dataset_arrays, read_labels_csv
from pipeline.photos import photo_files


def test_the_photo_export_has_six_classes_flattened_without_mirrored_copies(tmp_path):
    labels_csv = export_dataset("photos", tmp_path / "photos")
    pairs = read_labels_csv(labels_csv)
    assert Counter(label for _, label in pairs) == {
        "mammals": 65, "birds": 35, "fruit": 26, "flowers": 25, "vegetables": 18, "fish": 11}
    sources = [p.name for p, _ in photo_files()]
    assert not any(n.endswith(("_mirror.png", "_flip.png")) for n in sources)
    with Image.open(pairs[0][0]) as image:
        assert image.mode == "RGB"  # transparency composited onto the background
    # Exported again into the same folder: nothing changes; into another export: refused.
    assert export_dataset("photos", tmp_path / "photos") == labels_csv
    export_dataset("digits", tmp_path / "digits")
    with pytest.raises(DatasetError, match="does not hold the photos export"):
        export_dataset("photos", tmp_path / "digits")


def test_a_machine_without_the_photos_is_told_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install --no-install-recommends tuxpaint"):
        photo_files(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="export them with `labelloop datasets export"):
        load_dataset_arrays("photos")
