"""Labels a team already has: a path,label CSV and an ImageFolder tree come in as labels with
provenance, bad rows are refused with their reason, a person's label stands, twice is once."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labeling.store import NewLabel, file_key
from labeling.tasks.registry import get_task_type
from pipeline.import_labels import import_csv, import_imagefolder
from pipeline.ingest import IngestError

CLASSES = ("cat", "dog")
TASK = get_task_type("classification")


def png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6), value, np.uint8)).save(path)


def test_a_csv_imports_good_rows_and_refuses_bad_ones_with_reasons(tmp_path, store):
    images = tmp_path / "images"
    for i in range(5):
        png(images / f"{i}.png", 10 * i)
    (images / "broken.png").write_bytes(b"not a png")
    png(tmp_path / "elsewhere.png", 200)
    (tmp_path / "labels.csv").write_text(
        "path,label\nimages/0.png,cat\nimages/1.png,dog\nimages/2.png,cat\n"
        "images/3.png,horse\nimages/missing.png,cat\nimages/broken.png,dog\n"
        "elsewhere.png,cat\nimages/4.png,cat,dog\nimages/0.png,\n", encoding="utf-8")
    report = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert report.added == 3
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in report.refused}
    assert "not a class" in reasons["3.png"] and "cat, dog" in reasons["3.png"]
    assert reasons["missing.png"] == "no such file"
    assert any(p.endswith("images/0.png") and r == "no label" for p, r in report.refused)
    assert "quarantined" in reasons["broken.png"]
    assert "outside the image folder" in reasons["elsewhere.png"]
    assert "line 9: more fields than the header" in reasons["4.png"]  # cat? dog? not known
    labels = store.current_labels()
    assert sorted(v.label for v in labels.values()) == ["cat", "cat", "dog"]
    assert {(v.source, v.who) for v in labels.values()} == {("import", "import:labels.csv")}

    again = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert (again.added, again.unchanged) == (0, 3)
    assert sum(len(store.history(k)) for k in labels) == 3  # nothing written twice


def test_a_persons_label_is_not_overwritten_by_an_import(tmp_path, store):
    images = tmp_path / "images"
    png(images / "a.png", 1)
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,cat\n", encoding="utf-8")
    first = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert first.added == 1
    key = next(iter(store.current_labels()))
    store.add_labels([NewLabel(key=key, label="dog", source="human", who="ann1")])
    again = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert again.added == 0 and len(again.kept_people) == 1
    assert store.current_labels()[key].label == "dog"


def test_an_imagefolder_labels_by_class_folder(tmp_path, store):
    root = tmp_path / "tree"
    png(root / "cat" / "a.png", 1)
    png(root / "dog" / "b.png", 2)
    png(root / "dog" / "deep" / "c.png", 3)
    png(root / "bird" / "d.png", 4)
    png(root / "loose.png", 5)
    report = import_imagefolder(store, root, TASK, CLASSES, max_pixels=10**6)
    assert report.added == 3
    assert sorted(v.label for v in store.current_labels().values()) == ["cat", "dog", "dog"]
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in report.refused}
    assert "not a class" in reasons["d.png"]
    assert "not inside a class folder" in reasons["loose.png"]
    again = import_imagefolder(store, root, TASK, CLASSES, max_pixels=10**6)
    assert (again.added, again.unchanged) == (0, 3)


def test_a_csv_without_the_header_or_missing_is_one_clear_error(tmp_path, store):
    images = tmp_path / "images"
    png(images / "a.png", 1)
    (tmp_path / "bad.csv").write_text("file,class\na.png,cat\n", encoding="utf-8")
    with pytest.raises(IngestError, match="header path,label"):
        import_csv(store, tmp_path / "bad.csv", images, TASK, CLASSES, max_pixels=10**6)
    with pytest.raises(IngestError, match="not found"):
        import_csv(store, tmp_path / "nope.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert store.current_labels() == {}


def test_a_csv_saved_with_a_byte_order_mark_imports(tmp_path, store):
    # What a spreadsheet's "CSV UTF-8" writes: the mark is invisible in the header it precedes.
    images = tmp_path / "images"
    png(images / "a.png", 1)
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,dog\n", encoding="utf-8-sig")
    assert (tmp_path / "labels.csv").read_bytes().startswith(b"\xef\xbb\xbfpath")
    report = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert report.added == 1 and not report.refused
    assert store.current_labels()[file_key(images / "a.png")[0]].label == "dog"


def test_an_imported_label_outranks_a_machine_label(tmp_path, store):
    images = tmp_path / "images"
    png(images / "a.png", 1)
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,dog\n", encoding="utf-8")
    key = file_key(images / "a.png")[0]
    import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    written = store.add_labels([NewLabel(key=key, label="cat", source="machine",
                                         model_version="v1")])
    assert store.current_labels()[key].source == "import" and not written.written


def test_labelloop_ingest_labels_prints_what_came_in(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from pipeline.project.workspace import init_project

    images = tmp_path / "images"
    for i in range(3):
        png(images / f"{i}.png", 40 * i)
    (tmp_path / "labels.csv").write_text(
        "path,label\nimages/0.png,cat\nimages/1.png,dog\nimages/2.png,horse\n",
        encoding="utf-8")
    init_project(tmp_path / "proj", images=images, classes=CLASSES, name="cli-import")
    result = CliRunner().invoke(app, ["ingest", "--labels", str(tmp_path / "labels.csv"),
                                      "--config", str(tmp_path / "proj")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "labels imported" in result.output and "Traceback" not in result.output
    assert "not a class" in result.output  # the refused row, with its reason


def test_an_imagefolder_outside_the_image_folder_is_refused_before_anything_comes_in(tmp_path):
    # Label Studio shows people only files from the project's image folder: items from
    # elsewhere could never be sent to them, so ingest says so and adds nothing.
    from typer.testing import CliRunner

    from labeling.store import LabelStore
    from pipeline.cli.app import app
    from pipeline.project.workspace import find_config, init_project

    images, outside = tmp_path / "images", tmp_path / "labeled"
    png(images / "0.png", 10)
    png(outside / "cat" / "1.png", 50)
    init_project(tmp_path / "proj", images=images, classes=CLASSES, name="outside-import")
    runner = CliRunner()
    config = ["--config", str(tmp_path / "proj")]
    refused = runner.invoke(app, ["ingest", "--imagefolder", str(outside), *config],
                            env={"COLUMNS": "300"})
    assert refused.exit_code == 1
    assert "outside the project's image folder" in refused.output
    assert str(images / "labeled") in refused.output  # where to put it instead
    wrong_folder = runner.invoke(app, ["ingest", str(outside), *config], env={"COLUMNS": "300"})
    assert wrong_folder.exit_code == 1 and "nothing was ingested" in wrong_folder.output
    for args in (["--imagefolder", str(tmp_path / "typo")], [str(tmp_path / "typo")]):
        missing = runner.invoke(app, ["ingest", *args, *config], env={"COLUMNS": "300"})
        assert missing.exit_code == 1, missing.output
        assert f"folder not found: {tmp_path / 'typo'}" in missing.output
        assert "outside the project's image folder" not in missing.output
    (images / "labeled").parent.mkdir(exist_ok=True)
    outside.rename(images / "labeled")  # the advised fix works
    moved = runner.invoke(app, ["ingest", "--imagefolder", str(images / "labeled"), *config],
                          env={"COLUMNS": "300"})
    assert moved.exit_code == 0, moved.output
    store = LabelStore(find_config(tmp_path / "proj").database_urls({}).store)
    try:
        assert [(i.path, store.current_classes()[i.key]) for i in store.items()] == [
            (str((images / "labeled" / "cat" / "1.png").resolve()), "cat")]
    finally:
        store.close()


def test_ingest_refuses_a_location_of_the_other_kind_than_the_projects_images(tmp_path):
    # An S3 project's tasks show signed URLs of its objects, a folder project's its files:
    # a local folder in the first, or a prefix in the second, could never be shown.
    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from pipeline.project.workspace import init_project

    png(tmp_path / "local" / "0.png", 10)
    init_project(tmp_path / "s3proj", images="s3://bucket/photos", classes=CLASSES,
                 name="s3-project")
    init_project(tmp_path / "folderproj", images=tmp_path / "local", classes=CLASSES,
                 name="folder-project")
    runner = CliRunner()
    local = runner.invoke(app, ["ingest", str(tmp_path / "local"), "--config",
                                str(tmp_path / "s3proj")], env={"COLUMNS": "300"})
    assert local.exit_code == 1 and "images are in S3 (s3://bucket/photos)" in local.output
    prefix = runner.invoke(app, ["ingest", "s3://bucket/other", "--config",
                                 str(tmp_path / "folderproj")], env={"COLUMNS": "300"})
    assert prefix.exit_code == 1 and "nothing was ingested" in prefix.output


def test_two_rows_that_label_one_image_differently_import_neither(tmp_path, store):
    # The first row's label came in: one of the two is wrong, and in a folder tree "first" is
    # only the walk's order.
    images = tmp_path / "images"
    png(images / "a.png", 10)
    png(images / "copy-of-a.png", 10)  # the same bytes: the same image
    png(images / "b.png", 20)
    (tmp_path / "labels.csv").write_text("path,label\nimages/a.png,cat\nimages/copy-of-a.png,dog\n"
                                         "images/b.png,dog\n", encoding="utf-8")
    report = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert report.added == 1 and [v.label for v in store.current_labels().values()] == ["dog"]
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in report.refused) == ["a.png", "copy-of-a.png"]
    for _, reason in report.refused:
        assert "labeled 'cat' (" in reason and "'dog' (" in reason
        assert "neither is imported" in reason


def test_an_import_refuses_held_out_items_and_items_people_skipped(tmp_path, store):
    # An imported label on a held-out item entered the validation set the bounds rest on; one
    # on a skipped item was counted as added but never trained on nor exported.
    from labeling.schema import Item
    from labeling.selections import Pick, record_picks

    images = tmp_path / "images"
    for i in range(3):
        png(images / f"{i}.png", 30 * i)
    csv_text = "path,label\nimages/0.png,cat\nimages/1.png,dog\nimages/2.png,cat\n"
    (tmp_path / "labels.csv").write_text(csv_text, encoding="utf-8")
    from pipeline.ingest import ingest_folder

    ingest_folder(store, images)
    keys = {i.path.rsplit("/", 1)[-1]: i.key for i in store.items()}
    record_picks(store, [Pick(keys["0.png"], "random", holdout=True)], round_id=None)
    with store.transaction() as s:
        s.query(Item).filter(Item.key == keys["1.png"]).update({"status": "skipped"})
    report = import_csv(store, tmp_path / "labels.csv", images, TASK, CLASSES, max_pixels=10**6)
    assert report.added == 1 and set(store.current_labels()) == {keys["2.png"]}
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in report.refused}
    assert reasons["0.png"].startswith("held out for the random validation sample")
    assert reasons["1.png"].startswith("skipped by people in Label Studio")


def test_a_class_folder_named_decomposed_is_the_class_written_composed(tmp_path, store):
    # macOS writes "café" as "cafe" + a combining accent (NFD): refused as "not a class (valid:
    # café, ...)", two names that look the same; and init took the two spellings as two classes.
    import unicodedata

    from pipeline.project.config import validate_classes

    composed = unicodedata.normalize("NFC", "café")
    root = tmp_path / "tree"
    png(root / unicodedata.normalize("NFD", "café") / "a.png", 1)
    report = import_imagefolder(store, root, TASK, (composed, "thé"), max_pixels=10**6)
    assert report.added == 1 and report.refused == []
    assert [v.label for v in store.current_labels().values()] == [composed]
    with pytest.raises(ValueError, match="duplicate class names"):
        validate_classes([composed, unicodedata.normalize("NFD", "café")])
    # A project whose classes were written decomposed keeps that spelling (its labels and its
    # Label Studio config hold it), and a composed label finds it.
    decomposed = unicodedata.normalize("NFD", "café")
    assert validate_classes([decomposed, "thé"]) == (decomposed, "thé")
