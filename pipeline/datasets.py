"""Small real datasets exported as PNG folders with a labels CSV, for demos and benchmarks.

Layout of an export in ``OUT``::

    OUT/images/00000.png ... one grayscale PNG per image, numbered in the dataset's order
    OUT/labels.csv          header ``path,label``; paths relative to OUT, labels "0".."9"

Images sit in one flat folder, not in one folder per class, so that ingesting ``OUT/images``
reveals nothing about the labels: ``labels.csv`` is the only answer key (the simulated human).
``mnist-detection`` (boxes, not one class per image) has its own layout, in
``pipeline.detection_dataset``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from pipeline.dataset_files import (  # noqa: F401 - DatasetError is this module's error too
    IMAGES_DIR,
    LABELS_FILE,
    DatasetError,
    build_then_rename,
    labels_csv_text,
    load_mnist,
)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    # Pixel values are counts 0..16 (4x4 blocks of a 32x32 bitmap); stretch to 0..255.
    images = np.rint(data.images * (255.0 / 16.0)).astype(np.uint8)
    return images, data.target


# Name -> loader returning (uint8 images [N, H, W], int labels [N]).
_DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _load_digits,
    "mnist": load_mnist,
}


# Exported as files, not arrays (sizes vary): pipeline/photos.py, pipeline/detection_dataset.py.
PHOTOS = "photos"
MNIST_DETECTION = "mnist-detection"


def list_datasets() -> list[str]:
    """Names of the datasets ``export_dataset`` knows, sorted."""
    return sorted([*_DATASETS, PHOTOS, MNIST_DETECTION])


def load_dataset_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The images of dataset ``name`` as uint8 ``[N, H, W]`` (0..255) and labels ``[N]`` as
    class-name strings ("0".."9"), exactly the pixels and labels that ``export_dataset`` writes.

    Raises ``DatasetError`` for an unknown name or a missing optional dependency.
    """
    if name == PHOTOS:
        raise DatasetError("the photos differ in size and are not one array: export them "
                           "with `labelloop datasets export photos DIR`")
    if name == MNIST_DETECTION:
        raise DatasetError("mnist-detection is images with boxes, not one array: export it "
                           "with `labelloop datasets export mnist-detection DIR`")
    if name not in _DATASETS:  # those that are one array (simulate takes these)
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(sorted(_DATASETS))}")
    images, labels = _DATASETS[name]()
    return images, np.asarray(labels).astype(str)


def export_dataset(name: str, out_dir: str | Path, *, progress: bool = False) -> Path:
    """Write dataset ``name`` to ``out_dir`` as PNGs plus ``labels.csv``; return the CSV's path
    (for ``mnist-detection``: ``boxes.json``, see ``pipeline.detection_dataset``).

    ``out_dir`` must not exist or be empty; if it already holds this same export, nothing is
    written. The export is built in a temporary folder beside ``out_dir`` and renamed into place
    at the end, so an interrupted export leaves nothing half-written.
    Raises ``DatasetError`` for an unknown name, a missing optional dependency or an
    ``out_dir`` that holds something else.
    """
    if name not in list_datasets():
        raise DatasetError(f"unknown dataset {name!r}; valid: {', '.join(list_datasets())}")
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path exists and is not a folder: {out}")
    if name == PHOTOS:
        from pipeline.photos import export_photos  # PIL work only an export of photos needs

        return export_photos(out)
    if name == MNIST_DETECTION:
        from pipeline.detection_dataset import export_mnist_detection

        return export_mnist_detection(out, progress=progress)
    images, labels = load_dataset_arrays(name)
    names = [f"{IMAGES_DIR}/{i:05d}.png" for i in range(len(images))]
    csv_text = labels_csv_text(names, labels.tolist())
    if out.is_dir() and any(out.iterdir()):
        if _holds_export(out, names, csv_text):
            return out / LABELS_FILE
        raise DatasetError(
            f"output folder is not empty and does not hold the {name} export: {out}; "
            "choose a new or empty folder"
        )

    def write_images(folder: Path) -> None:
        for rel, pixels in track(
            list(zip(names, images, strict=True)), description=f"writing {name}",
            disable=not progress, transient=True,
        ):
            Image.fromarray(pixels, mode="L").save(folder / rel)

    return build_then_rename(out, csv_text, write_images)


def _holds_export(out: Path, names: list[str], csv_text: str) -> bool:
    labels_file = out / LABELS_FILE
    if not labels_file.is_file() or labels_file.read_text(encoding="utf-8") != csv_text:
        return False
    return all((out / rel).is_file() for rel in names)


def read_labels_csv(path: str | Path) -> list[tuple[Path, str]]:
    """Read a ``path,label`` CSV into ``(absolute image path, label)`` pairs, in file order.

    Relative image paths are taken relative to the CSV's folder. Raises ``DatasetError`` for a
    missing file, missing columns, empty labels or image files that do not exist.
    """
    csv_path = Path(path).expanduser().absolute()
    if not csv_path.is_file():
        raise DatasetError(f"labels file not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if not {"path", "label"} <= set(columns):
            raise DatasetError(
                f"{csv_path} must have a header with columns path,label; found: "
                f"{','.join(columns) or 'no header'}"
            )
        rows = list(reader)
    pairs: list[tuple[Path, str]] = []
    missing: list[str] = []
    for line, row in enumerate(rows, start=2):
        rel, label = (row["path"] or "").strip(), (row["label"] or "").strip()
        if not rel or not label:
            raise DatasetError(f"{csv_path} line {line}: empty path or label")
        image = (csv_path.parent / rel).resolve()
        if not image.is_file():
            missing.append(rel)
        pairs.append((image, label))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DatasetError(
            f"{len(missing)} image(s) listed in {csv_path} do not exist: "
            f"{', '.join(missing[:5])}{more}"
        )
    if not pairs:
        raise DatasetError(f"{csv_path} has a header but no rows")
    return pairs
