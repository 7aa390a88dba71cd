"""The detection quickstart (``labelloop quickstart --task detection``): canvases of real MNIST
digits through the detection loop against its own embedded Label Studio, a line per round, a
COCO file that pycocotools loads with the store's boxes, and a second run that continues."""

import json
import re

import pytest
from pycocotools.coco import COCO

from labeling.boxes import image_matches
from labeling.boxes_file import BOXES_FILE, read_boxes_json
from labeling.studio import server
from pipeline.detection_dataset import CLASSES
from pipeline.project.workspace import find_config
from pipeline.quickstart_boxes import prepare, run_detection_quickstart
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Small enough for two cores: 60 canvases (48 in the pool, 12 test), a short training.
SMALL = (("port = 8080", None), ("epochs = 15", "epochs = 2"),
         ("min_steps = 300", "min_steps = 10"),
         ("batch_size = 16", "batch_size = 8"), ("initial_random = 200", "initial_random = 30"),
         ("min_new_labels = 50", "min_new_labels = 5"), ("batch_size = 100", "batch_size = 10"),
         ("min_validation_points = 10", "min_validation_points = 5"))


def test_the_detection_quickstart_runs_rounds_exports_coco_and_continues(tmp_path, capsys):
    folder = tmp_path / "boxes"
    config_path, truth, test_rows = prepare(folder, 60)
    assert (len(truth), len(test_rows)) == (48, 12)
    text = config_path.read_text()
    for old, new in SMALL:
        assert text.count(old) == 1, old
        text = text.replace(old, new or f"port = {free_port()}")
    config_path.write_text(text)
    config = find_config(config_path)
    try:
        run_detection_quickstart(folder, rounds=2, noise=0.0, seed=0, env={}, n_images=60)
        first = capsys.readouterr().out
        run_detection_quickstart(folder, rounds=1, noise=0.0, seed=0, env={}, n_images=60)
        second = capsys.readouterr().out
    finally:
        server.stop(config.studio_dir)
    assert re.findall(r"round +(\d+):", first) == ["1", "2"]
    assert re.findall(r"round +(\d+):", second) == ["3"]
    assert "pool: 48 images (48 new)" in first and "(0 new)" in second
    # Round 1 sent 30 random canvases to the simulated person (who skips one in fifty).
    answered = int(re.search(r"round  1: images labeled by people +0 .* answered (\d+)",
                             first).group(1))
    assert 27 <= answered <= 30, first
    # Round 2 synced those and trained a detector, scored by mAP on the 12 test canvases.
    assert re.search(rf"round  2: images labeled by people +{answered} .* champion test "
                     r"mAP@0\.5 [01]\.\d{4} \(v1\)", first), first
    people, last = map(int, re.search(r"round  3: images labeled by people +(\d+) .* "
                                      r"answered (\d+)", second).groups())
    assert answered < people <= answered + 10  # round 2's answers arrived, none twice
    assert "Certificate (" in second and "Label Studio: http://127.0.0.1:" in second
    # The COCO file holds every labeled canvas with its provenance, the people's boxes right.
    coco = COCO(str(folder / "labels.coco.json"))
    images = coco.loadImgs(coco.getImgIds())
    sources = [image["labelloop"]["source"] for image in images]
    cert = json.loads((folder / "labels.coco.certificate.json").read_text())
    assert cert["exported_rows"] == len(images)
    # ... round 3's answers too (read before the export; they were left out).
    assert last > 0 and sources.count("human") == people + last
    assert re.search(rf"COCO, {len(images)} images with provenance", second)
    drawn = {path.name: image.boxes for path, image in
             read_boxes_json(folder / "mnist-detection-export" / BOXES_FILE).images.items()}
    for image in images:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        if image["labelloop"]["source"] == "human":
            # Noise 0: every object boxed with its class (edges within a person's precision).
            boxes = [{"label": CLASSES[a["category_id"] - 1], "x": a["bbox"][0],
                      "y": a["bbox"][1], "w": a["bbox"][2], "h": a["bbox"][3]} for a in anns]
            assert image_matches(drawn[image["file_name"].rsplit("/", 1)[-1]], boxes)
