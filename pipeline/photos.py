"""Real labelled photos that install offline: the photo cut-outs of Debian's
``tuxpaint-stamps-default`` (GPL-2), exported as an image folder with a truth file.

Six classes, the photo categories of the package (the rest are drawings and symbols): mammals
65, birds 35, fruit 26, flowers 25, vegetables 18, fish 11 (180 images, median about 134x128,
up to 1226 px). Each class is a folder of the package, subfolders included; ``cartoon``
folders and the package's mirrored and flipped copies are left out. The photos are cut out on
transparency: they are composited onto a light grey background and written as RGB PNGs under
numbered names, so that the folder reveals nothing about the labels (``labels.csv`` does).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline.dataset_files import (
    IMAGES_DIR,
    LABELS_FILE,
    DatasetError,
    build_then_rename,
    labels_csv_text,
)

STAMPS = Path("/usr/share/tuxpaint/stamps")
CLASSES = {"mammals": "animals/mammals", "birds": "animals/birds", "fruit": "food/fruit",
           "flowers": "plants/flowers", "vegetables": "food/vegetables", "fish": "animals/fish"}
BACKGROUND = (200, 200, 200)


def photo_files(root: Path = STAMPS) -> list[tuple[Path, str]]:
    """(file, class) of every photo, in a fixed order."""
    if not root.is_dir():
        raise DatasetError(f"no photo set at {root}: install Debian's tuxpaint-stamps-default "
                           "(apt-get install --no-install-recommends tuxpaint-stamps-default; "
                           "the test command's set-up does)")
    out = []
    for name, folder in CLASSES.items():
        for path in sorted((root / folder).rglob("*.png")):
            if "cartoon" in path.parts or path.stem.endswith(("_mirror", "_flip")):
                continue
            out.append((path, name))
    return out


def export_photos(out_dir: str | Path, *, root: Path = STAMPS) -> Path:
    """Write the photos to ``out_dir`` (``images/00000.png`` ..., ``labels.csv``); returns the
    CSV. An ``out_dir`` that holds this export already is left as it is; one holding anything
    else is refused. Built beside it and renamed into place."""
    out = Path(out_dir).expanduser().absolute()
    files = photo_files(root)
    names = [f"{IMAGES_DIR}/{i:05d}.png" for i in range(len(files))]
    csv_text = labels_csv_text(names, [label for _, label in files])
    if out.is_dir() and any(out.iterdir()):
        if (out / LABELS_FILE).is_file() and \
                (out / LABELS_FILE).read_text(encoding="utf-8") == csv_text:
            return out / LABELS_FILE
        raise DatasetError(f"output folder is not empty and does not hold the photos export: "
                           f"{out}; choose a new or empty folder")

    def write_images(folder: Path) -> None:
        for (source, _), rel in zip(files, names, strict=True):
            with Image.open(source) as image:
                rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, BACKGROUND)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            flat.save(folder / rel)

    return build_then_rename(out, csv_text, write_images)
