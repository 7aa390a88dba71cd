"""Export of a detection project's labels: COCO JSON, YOLO text files, or a CSV row per box,
each box with its provenance (human or machine, who, the model version, its score).

- ``coco``: one JSON file; ``images`` (every labeled image, also those with no object: "nothing
  here" is a label), ``annotations`` (``bbox`` = [x, y, w, h] in pixels, as COCO has it) and
  ``categories`` (ids 1..K in the project's class order). Each annotation and image carries
  labelloop's provenance under ``"labelloop"``, which COCO readers ignore.
- ``yolo``: ``OUT/labels/<folder>/<image stem>.txt`` (the images' folders below the one they
  share, mirrored; ``class x_centre y_centre width height``, all
  relative to the image's size, as Ultralytics reads them), ``OUT/classes.txt`` (one name per
  line, in class-index order) and ``OUT/provenance.csv`` (a row per box, as the CSV export).
  The images stay where they are; ``provenance.csv`` names each one's path.
- ``csv``: a row per box (an image without any box: one row with the box columns empty).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from pipeline.export_rows import PROVENANCE_FILE, ExportError, ExportRow
from pipeline.files import replace_folder, temp_folder_beside, write_file_atomic

BOX_COLUMNS = ("path", "label", "x", "y", "w", "h", "score", "source", "who", "model_version",
               "image_confidence", "round", "labeled_at", "item_key")


def write_boxes(out: Path, rows: list[ExportRow], *, format: str,
                classes: tuple[str, ...]) -> None:
    """Write ``rows`` (each with its boxes as ``value``) to ``out`` as ``format``."""
    missing = [r.path for r in rows if not isinstance(r.value, dict)]
    if missing:
        raise ExportError(f"{len(missing)} label(s) have no boxes stored (e.g. {missing[0]}); "
                          "they were not made by a detection project")
    unsized = [r.path for r in rows if not r.value.get("width") or not r.value.get("height")]
    if unsized:
        raise ExportError(f"{len(unsized)} label(s) do not record their image's size (e.g. "
                          f"{unsized[0]}); a sync of their task records it again")
    if format != "csv":
        _check_classes(rows, classes, format)
    if format == "coco":
        write_file_atomic(out, lambda tmp: tmp.write_text(
            json.dumps(coco(rows, classes), indent=1), encoding="utf-8"))
    elif format == "csv":
        write_file_atomic(out, lambda tmp: _write_box_csv(tmp, rows))
    else:
        _write_yolo(out, rows, classes)


def _check_classes(rows: list[ExportRow], classes: tuple[str, ...], format: str) -> None:
    """COCO and YOLO number the classes: a box whose label the config no longer lists (a
    class removed or renamed in labelloop.toml) has no number. Raises ``ExportError``."""
    known = set(classes)
    unknown: dict[str, int] = {}
    for row in rows:
        for box in row.value["boxes"]:
            if box["label"] not in known:
                unknown[box["label"]] = unknown.get(box["label"], 0) + 1
    if unknown:
        listed = ", ".join(f"{label!r} ({n} box(es))" for label, n in sorted(unknown.items()))
        raise ExportError(f"labels {listed} are not among [project] classes (removed or "
                          f"renamed in labelloop.toml?), so a {format} export cannot number "
                          "them: put them back in the classes, or export --format csv, which "
                          "writes labels as text")


def coco(rows: list[ExportRow], classes: tuple[str, ...]) -> dict:
    """The COCO detection dict of ``rows``."""
    category = {c: i + 1 for i, c in enumerate(classes)}
    images, annotations = [], []
    for image_id, row in enumerate(rows, start=1):
        value = row.value
        images.append({"id": image_id, "file_name": row.path, "width": value.get("width"),
                       "height": value.get("height"), "labelloop": _provenance(row)})
        for box in value["boxes"]:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": category[box["label"]],
                "bbox": [box["x"], box["y"], box["w"], box["h"]], "area": box["w"] * box["h"],
                "iscrowd": 0, "labelloop": {"source": row.source, "score": box.get("score")}})
    return {"info": {"description": "labelloop export"}, "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": c} for c, i in category.items()]}


def _provenance(row: ExportRow) -> dict:
    return {"source": row.source, "who": row.who, "model_version": row.model_version,
            "image_confidence": row.confidence, "round": row.round,
            "labeled_at": row.labeled_at, "item_key": row.item_key}


def _box_rows(rows: list[ExportRow]):
    for row in rows:
        tail = [row.source, row.who, row.model_version, row.confidence, row.round,
                row.labeled_at, row.item_key]
        boxes = row.value["boxes"]
        if not boxes:
            yield [row.path, "", "", "", "", "", "", *tail]
        for b in boxes:
            yield [row.path, b["label"], b["x"], b["y"], b["w"], b["h"], b.get("score"), *tail]


def _write_box_csv(path: Path, rows: list[ExportRow]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(BOX_COLUMNS)
        for line in _box_rows(rows):
            writer.writerow(["" if v is None else v for v in line])
        f.flush()
        os.fsync(f.fileno())


def _common_folder(paths: list[str]) -> str:
    """The folder all ``paths`` are in ("" for none, or files here and in S3 together)."""
    try:
        return os.path.commonpath([str(Path(p).parent) for p in paths]) if paths else ""
    except ValueError:
        return ""


def _write_yolo(out: Path, rows: list[ExportRow], classes: tuple[str, ...]) -> None:
    index = {c: i for i, c in enumerate(classes)}
    tmp = temp_folder_beside(out)
    try:
        (tmp / "labels").mkdir()
        # labels/ mirrors the images' folders, as YOLO tools pair an image with the label file
        # of its name: flattened, two images named alike (s1/x.png, s2/x.png) had one x.txt
        # and one x-<key>.txt, which no tool pairs with its image.
        root = _common_folder([r.path for r in rows])
        taken: set[str] = set()
        for row in rows:
            folder = os.path.relpath(Path(row.path).parent, root) if root else "."
            name = str(Path(folder) / Path(row.path).stem)
            if name.lower() in taken:  # x.png beside x.jpg: the item key tells them apart
                name = f"{name}-{row.item_key.split(':')[-1][:12]}"
            taken.add(name.lower())
            (tmp / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
            width, height = float(row.value["width"]), float(row.value["height"])
            lines = [f"{index[b['label']]} {(b['x'] + b['w'] / 2) / width:.6f} "
                     f"{(b['y'] + b['h'] / 2) / height:.6f} {b['w'] / width:.6f} "
                     f"{b['h'] / height:.6f}" for b in row.value["boxes"]]
            (tmp / "labels" / f"{name}.txt").write_text(
                "".join(line + "\n" for line in lines), encoding="utf-8")
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in classes), encoding="utf-8")
        _write_box_csv(tmp / PROVENANCE_FILE, rows)
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
