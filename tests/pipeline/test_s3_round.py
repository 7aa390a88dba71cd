"""A round on a project whose images are in S3 (a local moto endpoint): the round's ingest lists
the prefix, training reads the objects, and the predict step gives the probabilities the same
champion gives for the same images on local disk."""

from pathlib import Path

import numpy as np
import pytest

from labeling.selections import picks
from labeling.store import NewLabel
from pipeline.datasets import export_dataset, read_labels_csv
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import select as select_step
from pipeline.round import train as train_step
from pipeline.round.ingest import ingest_new
from pipeline.round.labeled import champion_model_path
from tests.pipeline.conftest import CLASSES, QUICK
from training.checkpoint import load_checkpoint
from training.predict import predict

pytestmark = pytest.mark.slow


def test_a_round_on_images_in_s3_predicts_as_on_local_disk(s3, tmp_path):
    export_dataset("digits", tmp_path / "data")
    rows = read_labels_csv(tmp_path / "data/labels.csv")[:300]
    local = {}  # s3 path -> (local path, true class)
    for path, label in rows:
        local[s3.put(f"digits/{Path(path).name}", Path(path).read_bytes())] = (path, label)
    init_project(tmp_path / "proj", images=f"s3://{s3.name}/digits", classes=CLASSES,
                 name="s3-digits")
    config_path = tmp_path / "proj" / "labelloop.toml"
    text = config_path.read_text()
    for old, new in QUICK.items():
        text = text.replace(old, new)
    config_path.write_text(text)
    proj = open_project(find_config(tmp_path / "proj"))
    try:
        assert ingest_new(proj, progress=False)["added"] == 300
        rid = proj.store.start_round()
        assert select_step.select_batch(proj, rid, {})["picked"] > 0  # the cold-start batch
        paths = {i.key: i.path for i in proj.store.items()}
        proj.store.add_labels([NewLabel(k, local[paths[k]][1], "human", who="oracle")
                               for k in picks(proj.store)])
        trained = train_step.train_challenger(proj, rid, progress=False)
        promote_step.decide_promotion(proj, trained.get("version"))
        predicted = predict_step.predict_pool(proj, rid, progress=False)
        assert predicted["predicted"] > 0
        keys, probs, _ = predict_step.load_predictions(predicted["file"])
        _, ckpt = champion_model_path(proj)
        on_disk = predict(load_checkpoint(ckpt), [local[paths[k]][0] for k in keys])
        assert np.array_equal(probs, on_disk.probs)
        assert ingest_new(proj, progress=False) == {
            "folder": f"s3://{s3.name}/digits", "added": 0, "unchanged": 300, "quarantined": 0,
            "released": 0}
    finally:
        proj.close()
