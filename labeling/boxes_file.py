"""``boxes.json``: the answer key of a detection dataset, written and read in one place.

Format (pixels; see ``labeling.boxes`` for the box)::

    {"classes": ["0", ..., "9"],
     "images": {"images/00000.png": {"width": 131, "height": 104, "split": "pool",
                                     "boxes": [{"label": "7", "x": 12.0, "y": 30.0,
                                                "w": 20.0, "h": 27.0}, ...],
                                     "clutter": [{"x": 80.0, "y": 5.0, "w": 7.0, "h": 9.0}]},
                ...}}

Image paths are relative to the file's folder. ``split`` is ``"pool"`` (to be labelled) or
``"test"`` (held out to measure models); it may be left out and then means ``"pool"``.
``clutter`` (optional) lists the regions that hold ink which is *not* an object (stroke
fragments, blobs), so that a simulated annotator can draw its rare extra box on one; it is
never part of the truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labeling.boxes import BoxError, check_boxes

BOXES_FILE = "boxes.json"
SPLITS = ("pool", "test")


@dataclass(frozen=True)
class ImageBoxes:
    """The truth of one image: its size, its split, its boxes and its clutter regions."""

    width: int
    height: int
    boxes: list[dict]
    split: str = "pool"
    clutter: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class BoxesFile:
    """A read ``boxes.json``: ``images`` maps absolute image paths to their truth."""

    classes: tuple[str, ...]
    images: dict[Path, ImageBoxes]

    def split(self, name: str) -> list[Path]:
        """The images of split ``name`` ("pool" or "test"), in file order."""
        if name not in SPLITS:
            raise BoxError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return [path for path, image in self.images.items() if image.split == name]


def boxes_json_text(classes: Sequence[str], images: Mapping[str, ImageBoxes]) -> str:
    """The text of a ``boxes.json`` for ``images`` (relative path -> truth), one line per
    image so that a diff or a ``grep`` shows one image at a time."""
    lines = []
    for rel, image in images.items():
        entry = {"width": image.width, "height": image.height, "split": image.split,
                 "boxes": image.boxes}
        if image.clutter:
            entry["clutter"] = image.clutter
        lines.append(f"  {json.dumps(rel)}: {json.dumps(entry)}")
    body = ",\n".join(lines)
    return (f'{{"classes": {json.dumps(list(classes))},\n "images": {{\n{body}\n }}}}\n'
            if lines else f'{{"classes": {json.dumps(list(classes))}, "images": {{}}}}\n')


def read_boxes_json(path: str | Path, *, check_files: bool = True) -> BoxesFile:
    """Read and validate a ``boxes.json``. With ``check_files``, every image it names must
    exist (relative to the file's folder).

    Raises ``BoxError`` naming the image for a box outside its image, a zero-area box, an
    unknown class, a bad size or split; and for a missing file, bad JSON or missing images.
    """
    json_path = Path(path).expanduser().absolute()
    if not json_path.is_file():
        raise BoxError(f"boxes file not found: {json_path}; export one with "
                       "`labelloop datasets export mnist-detection DIR`")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BoxError(f"{json_path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) \
            or not isinstance(data.get("images"), dict):
        raise BoxError(f"{json_path} must be an object with a \"classes\" list and an "
                       "\"images\" object (path -> width, height, boxes)")
    classes = data["classes"]
    if not classes or not all(isinstance(c, str) and c for c in classes) \
            or len(set(classes)) != len(classes):
        raise BoxError(f"{json_path}: classes must be distinct non-empty strings, got {classes}")
    images: dict[Path, ImageBoxes] = {}
    missing: list[str] = []
    for rel, entry in data["images"].items():
        image = _read_image(rel, entry, classes, json_path)
        absolute = (json_path.parent / rel).resolve()
        if check_files and not absolute.is_file():
            missing.append(rel)
        images[absolute] = image
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise BoxError(f"{len(missing)} image(s) listed in {json_path} do not exist: "
                       f"{', '.join(missing[:5])}{more}")
    return BoxesFile(tuple(classes), images)


def _read_image(rel: str, entry, classes: list[str], json_path: Path) -> ImageBoxes:
    where = f"{json_path.name}: {rel}"
    if not isinstance(entry, dict) or not {"width", "height", "boxes"} <= set(entry):
        raise BoxError(f"{where}: an image entry needs width, height and boxes")
    width, height = entry["width"], entry["height"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
               for v in (width, height)):
        raise BoxError(f"{where}: width and height must be positive whole pixels, got "
                       f"{width!r} x {height!r}")
    split = entry.get("split", "pool")
    if split not in SPLITS:
        raise BoxError(f"{where}: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if not isinstance(entry["boxes"], list):
        raise BoxError(f"{where}: boxes must be a list")
    boxes = check_boxes(entry["boxes"], width, height, classes=classes, where=where)
    clutter = entry.get("clutter", [])
    if not isinstance(clutter, list):
        raise BoxError(f"{where}: clutter must be a list")
    # Clutter has no class; checked as boxes with a placeholder label.
    checked = check_boxes([{"label": "clutter", **c} if isinstance(c, dict) else c
                           for c in clutter], width, height, where=f"{where} clutter")
    return ImageBoxes(width, height, boxes, split,
                      [{k: c[k] for k in ("x", "y", "w", "h")} for c in checked])
