"""A workspace written before the task-type change still opens and continues.

The fixture is what the previous layout's code wrote: its ``labelloop.toml`` (``labelloop
init`` output, no ``[project] task``) and its label store's schema (``labels.sql``, dumped from
that code's SQLite store). The test fills that schema with items and labels as that code did.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import inspect
from typer.testing import CliRunner

from labeling.migrations import SCHEMA_VERSION, SchemaError
from labeling.store import LabelStore, NewLabel, file_key
from pipeline.cli.app import app
from pipeline.export import export_labels
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "workspace_v1"
STAMP = "2026-11-20 10:00:00.000000"


def _image(path: Path, shade: int) -> None:
    Image.fromarray(np.full((8, 8), shade, dtype=np.uint8), mode="L").save(path)


@pytest.fixture
def old_workspace(tmp_path) -> Path:
    """A project folder as the previous version left it: 4 items, 3 human labels (one of them
    corrected), 1 machine label, one finished round."""
    shutil.copy(FIXTURE / "labelloop.toml", tmp_path / "labelloop.toml")
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / ".labelloop").mkdir()
    db = sqlite3.connect(tmp_path / ".labelloop" / "labels.db")
    db.executescript((FIXTURE / "labels.sql").read_text())
    for i in range(4):
        path = images / f"img{i}.png"
        _image(path, 40 * i)
        key, size = file_key(path)
        db.execute("INSERT INTO items (id, key, path, size_bytes, width, height, status, "
                   "added_at) VALUES (?, ?, ?, ?, 8, 8, 'ok', ?)",
                   (i + 1, key, str(path.resolve()), size, STAMP))
    db.execute("INSERT INTO rounds (id, started_at, finished_at, status, stats) "
               "VALUES (1, ?, ?, 'done', ?)", (STAMP, STAMP, json.dumps({"done": ["sync"]})))
    rows = [  # item, label, source, superseded
        (1, "cat", "human", STAMP), (1, "dog", "human", None), (2, "cat", "human", None),
        (3, "dog", "seed", None), (4, "cat", "machine", None)]
    for item, label, source, superseded in rows:
        db.execute("INSERT INTO labels (item_id, label, source, who, model_version, confidence, "
                   "round_id, created_at, superseded_at, extra) VALUES (?, ?, ?, 'ann@x', "
                   "NULL, NULL, 1, ?, ?, '{}')", (item, label, source, STAMP, superseded))
    db.commit()
    db.close()
    return tmp_path


def test_an_old_workspace_opens_with_its_labels_and_history(old_workspace):
    config = find_config(old_workspace / "labelloop.toml")
    assert config.project.task == "classification"
    project = open_project(config)
    try:
        assert project.store.schema_found == 1
        assert project.task.labels.name == "classification"
        current = project.store.current_labels()
        assert {k: (lab.label, lab.source) for k, lab in current.items()} == {
            k: v for k, v in zip(
                [i.key for i in project.store.items()],
                [("dog", "human"), ("cat", "human"), ("dog", "seed"), ("cat", "machine")],
                strict=True)}
        first = project.store.items()[0].key
        assert [lab.label for lab in project.store.history(first)] == ["cat", "dog"]
        assert all(lab.value is None for lab in current.values())
    finally:
        project.close()


def test_an_old_workspace_continues_ingest_labels_export_and_status(old_workspace):
    config = find_config(old_workspace / "labelloop.toml")
    _image(config.images_dir / "new.png", 250)
    project = open_project(config)
    try:
        report = ingest_folder(project.store, config.images_dir)
        assert len(report.added) == 1 and len(report.already_present) == 4
        new_key = report.added[0].key
        written = project.store.add_labels([NewLabel(new_key, "dog", "human", who="b@x")],
                                           classes=project.classes)
        assert written.written == [new_key]
        out = old_workspace / "labels.csv"
        exported = export_labels(project.store, out, format="csv", classes=project.classes,
                                 task=project.task.labels)
        assert exported.rows == 5
    finally:
        project.close()
    status = CliRunner().invoke(app, ["status", "--json", "--config",
                                      str(old_workspace / "labelloop.toml")])
    assert status.exit_code == 0, status.output
    reopened = LabelStore(config.store_url)
    try:
        assert reopened.schema_found == SCHEMA_VERSION  # migrated once, recorded
        assert len(reopened.current_labels(sources=("human", "seed"))) == 4
        # Version 5's indexes, added to the tables the old store already had.
        indexes = {i["name"] for table in ("items", "labels")
                   for i in inspect(reopened.engine).get_indexes(table)}
        assert {"ix_items_status", "ix_labels_item_current"} <= indexes
    finally:
        reopened.close()


def test_a_store_newer_than_this_code_is_refused_and_left_alone(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    store.close()
    db = sqlite3.connect(tmp_path / "labels.db")
    db.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'",
               (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="newer than this labelloop"):
        LabelStore(tmp_path / "labels.db")
    db = sqlite3.connect(tmp_path / "labels.db")
    assert db.execute("SELECT value FROM store_meta").fetchone() == (str(SCHEMA_VERSION + 1),)
    db.close()


def test_a_label_keeps_its_typed_value(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    try:
        path = tmp_path / "a.png"
        _image(path, 9)
        ingest_folder(store, tmp_path)
        key = store.items()[0].key
        boxes = [{"x": 1, "y": 2, "w": 3, "h": 4, "label": "cat"}]
        store.add_labels([NewLabel(key, "1 box", "human", value=boxes)])
        assert store.current_labels()[key].value == boxes
        again = store.add_labels([NewLabel(key, "1 box", "human", value=boxes)])
        assert again.unchanged == [key]
        moved = [{**boxes[0], "x": 5}]
        assert store.add_labels([NewLabel(key, "1 box", "human", value=moved)]).written == [key]
        assert [lab.value for lab in store.history(key)] == [boxes, moved]
    finally:
        store.close()
