"""What every dataset export shares: its layout, its error, the truth CSV, and the rule that an
export is built beside its folder and renamed into place (an interrupted one leaves nothing)."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"


class DatasetError(ValueError):
    """Bad dataset name, output folder or labels file; the message says what to do."""


def labels_csv_text(paths: list[str], labels: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label"])
    writer.writerows(zip(paths, labels, strict=True))
    return buffer.getvalue()


def build_then_rename(out: Path, csv_text: str, write_images: Callable[[Path], None]) -> Path:
    """Write the images (``write_images(folder)`` fills ``folder/images``) and the CSV into a
    temporary folder beside ``out``, then rename it to ``out``; returns the CSV's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / IMAGES_DIR).mkdir()
        write_images(tmp)
        (tmp / LABELS_FILE).write_text(csv_text, encoding="utf-8")
        # rename(2) replaces an empty folder atomically; callers refuse a non-empty one.
        tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / LABELS_FILE
