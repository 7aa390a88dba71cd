"""A detection project's export: COCO that pycocotools loads and that matches the store, YOLO
text files, and a CSV row per box, each box with its provenance."""

from __future__ import annotations

import csv

import pytest
from pycocotools.coco import COCO

from labeling.boxes_file import read_boxes_json
from labeling.store import NewLabel
from labeling.tasks.registry import get_task_type
from pipeline.detection_dataset import CLASSES, export_mnist_detection
from pipeline.export import ExportError, export_labels
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project

TASK = get_task_type("detection")


@pytest.fixture
def labeled(tmp_path):
    export_mnist_detection(tmp_path / "data", n_images=12)
    read = read_boxes_json(tmp_path / "data" / "boxes.json")
    init_project(tmp_path / "p", images=tmp_path / "data" / "images", classes=list(CLASSES),
                 name="det-export", task="detection")
    proj = open_project(find_config(tmp_path / "p"))
    ingest_folder(proj.store, proj.config.images_dir)
    by_path = {str(p): image for p, image in read.images.items()}
    items = sorted(proj.store.items(), key=lambda i: i.path)
    labels = []
    for n, item in enumerate(items[:10]):
        image = by_path[item.path]
        value = {"width": image.width, "height": image.height, "boxes": image.boxes}
        text = " ".join(sorted(b["label"] for b in image.boxes)) or "nothing"
        if n < 6:
            labels.append(NewLabel(item.key, text, "human", who="ann1", value=value))
        else:
            value = {**value, "boxes": [dict(b, score=0.9) for b in image.boxes]}
            labels.append(NewLabel(item.key, text, "machine", model_version="3",
                                   confidence=0.97, value=value))
    proj.store.add_labels(labels, classes=None)
    yield proj, by_path, items
    proj.close()


def test_coco_loads_and_matches_the_store(labeled, tmp_path):
    proj, by_path, items = labeled
    out = tmp_path / "labels.coco.json"
    report = export_labels(proj.store, out, format="coco", classes=CLASSES, task=TASK)
    assert report.rows == 10 and report.left_out == {"unlabeled": 2}
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == 10  # images with no object are in it too
    for image in coco.loadImgs(coco.getImgIds()):
        truth = by_path[image["file_name"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert (image["width"], image["height"]) == (truth.width, truth.height)
        assert sorted((CLASSES[a["category_id"] - 1], *a["bbox"]) for a in anns) == sorted(
            (b["label"], b["x"], b["y"], b["w"], b["h"]) for b in truth.boxes)
        source = image["labelloop"]["source"]
        assert all(a["labelloop"]["source"] == source for a in anns)
        if source == "machine":
            assert image["labelloop"]["model_version"] == "3"
            assert all(a["labelloop"]["score"] == 0.9 for a in anns)


def test_yolo_and_csv_give_every_box_relative_and_in_pixels(labeled, tmp_path):
    proj, by_path, items = labeled
    report = export_labels(proj.store, tmp_path / "yolo", format="yolo", classes=CLASSES,
                           task=TASK)
    assert report.rows == 10
    assert (tmp_path / "yolo" / "classes.txt").read_text().split() == list(CLASSES)
    first = items[0]
    truth = by_path[first.path]
    lines = (tmp_path / "yolo" / "labels" / f"{first.path.rsplit('/', 1)[1][:-4]}.txt"
             ).read_text().splitlines()
    assert len(lines) == len(truth.boxes)
    for line, box in zip(sorted(lines), sorted(truth.boxes, key=lambda b: (
            CLASSES.index(b["label"]), (b["x"] + b["w"] / 2) / truth.width)), strict=False):
        k, cx, cy, w, h = line.split()
        assert CLASSES[int(k)] == box["label"]
        assert float(w) == pytest.approx(box["w"] / truth.width, abs=1e-5)
    export_labels(proj.store, tmp_path / "boxes.csv", format="csv", classes=CLASSES, task=TASK)
    with open(tmp_path / "boxes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n_boxes = sum(max(1, len(by_path[i.path].boxes)) for i in items[:10])
    assert len(rows) == n_boxes  # one row per box, one for an image with none
    assert {r["source"] for r in rows} == {"human", "machine"}
    assert all(r["score"] == "0.9" for r in rows if r["source"] == "machine" and r["label"])


def test_a_box_export_refuses_what_it_cannot_write(labeled, tmp_path):
    proj, _, _ = labeled
    with pytest.raises(ExportError, match="valid: csv, coco, yolo"):
        export_labels(proj.store, tmp_path / "x", format="imagefolder", classes=CLASSES,
                      task=TASK)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a labelloop export"):
        export_labels(proj.store, tmp_path / "taken", format="yolo", classes=CLASSES,
                      task=TASK, force=True)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"


def test_coco_and_yolo_refuse_a_class_no_longer_configured_and_csv_writes_it(labeled, tmp_path):
    # A class taken out of labelloop.toml: the export ended in a KeyError traceback.
    proj, _, _ = labeled
    fewer = tuple(c for c in CLASSES if c != "3")
    for fmt, out in (("coco", tmp_path / "l.coco.json"), ("yolo", tmp_path / "y")):
        with pytest.raises(ExportError, match=r"labels '3' \(\d+ box\(es\)\) are not among "
                                              r"\[project\] classes .*--format csv"):
            export_labels(proj.store, out, format=fmt, classes=fewer, task=TASK)
        assert not out.exists()
    report = export_labels(proj.store, tmp_path / "b.csv", format="csv", classes=fewer,
                           task=TASK)
    assert report.rows == 10 and ",3," in (tmp_path / "b.csv").read_text()


def test_yolo_label_files_mirror_the_image_folders(tmp_path):
    # Two images named alike in two folders got x.txt and x-<key>.txt side by side, which no
    # YOLO tool pairs with its image.
    from PIL import Image

    images = tmp_path / "p" / "images"
    for sub in ("s1", "s2"):
        (images / sub).mkdir(parents=True)
        Image.new("RGB", (20, 10), (40 if sub == "s1" else 90, 0, 0)).save(images / sub / "x.png")
    init_project(tmp_path / "p", images=images, classes=list(CLASSES), name="det-yolo",
                 task="detection")
    proj = open_project(find_config(tmp_path / "p"))
    try:
        ingest_folder(proj.store, proj.config.images_dir)
        boxes = {"s1": {"label": "1", "x": 1, "y": 1, "w": 4, "h": 4},
                 "s2": {"label": "2", "x": 5, "y": 2, "w": 8, "h": 6}}
        proj.store.add_labels([NewLabel(i.key, "x", "human", who="a", value={
            "width": 20, "height": 10, "boxes": [boxes[i.path.split("/")[-2]]]})
            for i in proj.store.items()], classes=None)
        export_labels(proj.store, tmp_path / "y", format="yolo", classes=CLASSES, task=TASK)
    finally:
        proj.close()
    labels = tmp_path / "y" / "labels"
    assert sorted(p.relative_to(labels).as_posix() for p in labels.rglob("*.txt")) == [
        "s1/x.txt", "s2/x.txt"]
    assert (labels / "s1" / "x.txt").read_text().split()[0] == str(CLASSES.index("1"))
    assert (labels / "s2" / "x.txt").read_text().split()[0] == str(CLASSES.index("2"))
