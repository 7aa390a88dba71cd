"""Export: labeled items with provenance, as CSV or an image folder; the rest left out."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import pipeline.export as export_module
from labeling.store import LabelStore, NewItem, NewLabel
from pipeline.cli.app import app
from pipeline.export import COLUMNS, PROVENANCE_FILE, ExportError, export_labels
from pipeline.files import EXPORT_MANIFEST
from pipeline.project.config import render_config

CLASSES = ("cat", "dog", "bird")


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def fill_store(store: LabelStore, images: Path) -> dict[str, str]:
    """Items in every state; returns file name -> item key."""
    names = ["seed.png", "human.png", "machine.png", "overruled.png", "unlabeled.png",
             "skipped.png", "disputed.png", "quarantined.png", "deleted.png",
             "a/same.png", "b/same.png"]
    keys, items = {}, []
    for seed, name in enumerate(names):
        path = images / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = png(seed)
        path.write_bytes(data)
        keys[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        items.append(NewItem(keys[name], str(path), len(data), 8, 8))
    store.add_items(items)
    round_id = store.start_round()
    machine = dict(source="machine", model_version="3", confidence=0.99, round_id=round_id)
    store.add_labels([
        NewLabel(keys["seed.png"], "cat", "seed", who="labels.csv"),
        NewLabel(keys["human.png"], "dog", "human", who="alice"),
        NewLabel(keys["machine.png"], "cat", **machine),
        NewLabel(keys["overruled.png"], "cat", **machine),
        NewLabel(keys["skipped.png"], "dog", **machine),
        NewLabel(keys["disputed.png"], "dog", "human", who="bob"),
        NewLabel(keys["quarantined.png"], "cat", "human", who="alice"),
        NewLabel(keys["deleted.png"], "cat", "human", who="alice"),
        NewLabel(keys["a/same.png"], "dog", "human", who="alice"),
        NewLabel(keys["b/same.png"], "dog", "human", who="bob"),
    ])
    store.add_labels([NewLabel(keys["overruled.png"], "dog", "human", who="carol")])
    store.set_status([keys["skipped.png"]], "skipped")
    store.set_status([keys["disputed.png"]], "disagreement")
    # The file changed on disk and re-ingest found it broken: its path is quarantined.
    store.quarantine(str(images / "quarantined.png"), "truncated image")
    store.quarantine(str(images / "broken.png"), "not an image")
    (images / "deleted.png").unlink()
    return keys


@pytest.fixture
def project(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    keys = fill_store(store, tmp_path / "images")
    yield store, keys, tmp_path
    store.close()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_csv_has_every_labeled_item_with_its_provenance(project):
    store, keys, tmp = project
    report = export_labels(store, tmp / "out" / "labels.csv", format="csv")
    rows = {Path(r["path"]).relative_to(tmp / "images").as_posix(): r
            for r in read_csv(tmp / "out" / "labels.csv")}
    assert sorted(rows) == ["a/same.png", "b/same.png", "human.png", "machine.png",
                            "overruled.png", "seed.png"]
    machine = rows["machine.png"]
    assert (machine["label"], machine["source"], machine["model_version"],
            float(machine["confidence"]), machine["who"]) == ("cat", "machine", "3", 0.99, "")
    assert machine["round"] == "1" and machine["item_key"] == keys["machine.png"]
    assert machine["labeled_at"].startswith("20") and machine["labeled_at"].endswith("+00:00")
    # A person's later label wins over the machine's.
    assert (rows["overruled.png"]["label"], rows["overruled.png"]["who"]) == ("dog", "carol")
    assert (rows["seed.png"]["source"], rows["human.png"]["who"]) == ("seed", "alice")
    assert report.rows == 6
    assert report.by_source == {"human": 4, "machine": 1, "seed": 1}
    assert report.left_out == {"disagreement": 1, "missing_file": 1, "quarantined": 1,
                               "skipped": 1, "unlabeled": 1}
    assert report.missing == [str(tmp / "images" / "deleted.png")]
    assert [p.name for p in (tmp / "out").iterdir()] == ["labels.csv"]  # no temp file left


def test_human_only_leaves_machine_labels_out(project):
    store, _, tmp = project
    report = export_labels(store, tmp / "labels.csv", format="csv", human_only=True)
    assert {r["source"] for r in read_csv(tmp / "labels.csv")} == {"human", "seed"}
    assert report.rows == 5 and report.left_out["machine_label"] == 1


def test_imagefolder_has_a_folder_per_class_and_provenance(project):
    store, keys, tmp = project
    out = tmp / "dataset"
    export_labels(store, out, format="imagefolder", classes=CLASSES)
    # ... and the list of the files it wrote (a later --force replaces nothing else).
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_MANIFEST, "bird", "cat", "dog",
                                                     PROVENANCE_FILE]
    assert list((out / "bird").iterdir()) == []
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["machine.png", "seed.png"]
    dog = sorted(p.name for p in (out / "dog").iterdir())
    assert dog == sorted(["human.png", "overruled.png", "same.png",
                          f"same-{keys['b/same.png'][7:19]}.png"])
    rows = read_csv(out / PROVENANCE_FILE)
    assert len(rows) == 6
    for row in rows:
        exported = out / row["path"]
        assert exported.parent.name == row["label"]
        assert "sha256:" + hashlib.sha256(exported.read_bytes()).hexdigest() == row["item_key"]
    # Same filesystem: hard links, no copies.
    seed = out / "cat" / "seed.png"
    assert seed.stat().st_ino == (tmp / "images" / "seed.png").stat().st_ino


def test_imagefolder_copies_when_hard_links_fail(project, monkeypatch):
    store, _, tmp = project

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(export_module.os, "link", no_link)
    export_labels(store, tmp / "dataset", format="imagefolder")
    copied = tmp / "dataset" / "cat" / "seed.png"
    assert copied.read_bytes() == (tmp / "images" / "seed.png").read_bytes()
    assert copied.stat().st_ino != (tmp / "images" / "seed.png").stat().st_ino


def test_an_existing_output_needs_force_and_force_replaces_only_exports(project):
    store, _, tmp = project
    target = tmp / "labels.csv"
    target.write_text("old\n")
    with pytest.raises(ExportError, match="--force"):
        export_labels(store, target, format="csv")
    # A file that is no export is not replaced even with --force: it once was, the label store
    # itself included (--out .labelloop/labels.db), and every label with it.
    with pytest.raises(ExportError, match="is not a labelloop csv export"):
        export_labels(store, target, format="csv", force=True)
    assert target.read_text() == "old\n"
    target.unlink()
    export_labels(store, target, format="csv", human_only=True)
    export_labels(store, target, format="csv", force=True)  # a previous export: replaced
    assert len(read_csv(target)) == 6

    unrelated = tmp / "photos"
    unrelated.mkdir()
    (unrelated / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not a labelloop export"):
        export_labels(store, unrelated, format="imagefolder", force=True)
    assert (unrelated / "holiday.jpg").read_bytes() == b"precious"

    out = tmp / "dataset"
    export_labels(store, out, format="imagefolder")
    with pytest.raises(ExportError, match="not empty"):
        export_labels(store, out, format="imagefolder")
    # A file someone added inside the earlier export: --force deleted it without a word.
    (out / "cat" / "mine.txt").write_text("my notes")
    with pytest.raises(ExportError, match=r"holds 1 file\(s\) the earlier export did not "
                                          r"write \(e\.g\. cat/mine\.txt\)"):
        export_labels(store, out, format="imagefolder", force=True)
    assert (out / "cat" / "mine.txt").read_text() == "my notes"
    (out / "cat" / "mine.txt").unlink()
    export_labels(store, out, format="imagefolder", human_only=True, force=True)
    assert {r["source"] for r in read_csv(out / PROVENANCE_FILE)} == {"human", "seed"}
    assert not (out / "cat" / "machine.png").exists()
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_unknown_format_and_unusable_class_names_are_errors(project):
    store, _, tmp = project
    with pytest.raises(ExportError, match="valid: csv, imagefolder"):
        export_labels(store, tmp / "x", format="coco")
    with pytest.raises(ExportError, match="cannot be folder names"):
        export_labels(store, tmp / "x", format="imagefolder", classes=("a/b", "cat"))
    assert not (tmp / "x").exists()


def test_cli_exports_the_projects_labels(tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "labelloop.toml").write_text(render_config("demo", CLASSES, Path("images")))
    (tmp_path / ".labelloop").mkdir()
    store = LabelStore(tmp_path / ".labelloop" / "labels.db")
    fill_store(store, images)
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--format", "imagefolder", "--out",
                                 str(tmp_path / "dataset"), "--human-only",
                                 "--config", str(tmp_path / "labelloop.toml")])
    assert result.exit_code == 0, result.output
    assert "exported 5 labeled item(s)" in result.output
    assert "1 missing file" in result.output
    assert (tmp_path / "dataset" / "bird").is_dir()
    assert (tmp_path / "dataset.certificate.json").is_file()
    # Folders named by version each get their own certificate: a folder's name has no suffix.
    for version in ("dataset.v1", "dataset.v2"):
        done = runner.invoke(app, ["export", "--format", "imagefolder", "--out",
                                   str(tmp_path / version), "-c", str(tmp_path)])
        assert done.exit_code == 0, done.output
        assert (tmp_path / f"{version}.certificate.json").is_file()
    again = runner.invoke(app, ["export", "--format", "imagefolder", "--out",
                                str(tmp_path / "dataset"), "-c", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.output
    # `dataset.csv` would share the folder's certificate: even --force leaves it alone while
    # the folder it certifies is there.
    csv_too = runner.invoke(app, ["export", "--format", "csv", "--out", str(tmp_path /
                                  "dataset.csv"), "--force", "-c", str(tmp_path)])
    assert csv_too.exit_code == 2 and "is the certificate of" in csv_too.output
    # Without --force too: "pass --force" first only led there (a user's review).
    csv_plain = runner.invoke(app, ["export", "--format", "csv", "--out", str(tmp_path /
                                    "dataset.csv"), "-c", str(tmp_path)])
    assert csv_plain.exit_code == 2 and "is the certificate of" in csv_plain.output
    # A CSV aimed at the folder: said so, not "pass --force".
    at_folder = runner.invoke(app, ["export", "--format", "csv", "--out", str(tmp_path /
                                    "dataset"), "-c", str(tmp_path)])
    assert at_folder.exit_code == 2 and "is a folder" in at_folder.output
    assert not (tmp_path / "dataset.csv").exists()
    certified = json.loads((tmp_path / "dataset.certificate.json").read_text())["export"]
    assert certified == str(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)  # the default config is ./labelloop.toml
    bad = runner.invoke(app, ["export", "--format", "coco", "--out", "x.csv"])
    assert bad.exit_code == 2 and "valid: csv, imagefolder" in bad.output
    # The certificate beside an export is a file like the export: never replaced unasked.
    mine = tmp_path / "rep.certificate.json"
    mine.write_text('{"mine": true}\n')
    taken = runner.invoke(app, ["export", "--format", "csv", "--out", "rep.csv"])
    assert taken.exit_code == 2 and "rep.certificate.json" in taken.output
    assert mine.read_text() == '{"mine": true}\n' and not (tmp_path / "rep.csv").exists()
    forced = runner.invoke(app, ["export", "--format", "csv", "--out", "rep.csv", "--force"])
    assert forced.exit_code == 0 and "exported_rows" in mine.read_text()
    # A format the project has not: said first (not "the certificate exists; pass --force").
    boxes = runner.invoke(app, ["export", "--format", "coco", "--out", "rep.coco"])
    assert boxes.exit_code == 2 and "valid: csv, imagefolder" in boxes.output
    # A file where the export's folder must be: said so, not "[Errno 17] File exists".
    (tmp_path / "afile").write_text("x")
    blocked = runner.invoke(app, ["export", "--format", "csv", "--out", "afile/x.csv"])
    assert blocked.exit_code == 1 and "afile is a file, not a folder" in blocked.output


def test_items_in_s3_are_exported_as_their_paths_and_copied_into_an_imagefolder(s3, tmp_path):
    from pipeline.ingest import ingest_folder

    for name in ("a.png", "b.png"):
        s3.put(f"pool/{name}", png(len(name) + ord(name[0])))
    store = LabelStore(tmp_path / "labels.db")
    try:
        added = ingest_folder(store, f"s3://{s3.name}/pool").added
        store.add_labels([NewLabel(added[0].key, "cat", "human", who="alice"),
                          NewLabel(added[1].key, "dog", "human", who="bob")])
        report = export_labels(store, tmp_path / "labels.csv", format="csv")
        assert report.rows == 2 and report.missing == []
        assert {r["path"] for r in read_csv(tmp_path / "labels.csv")} == {
            f"s3://{s3.name}/pool/a.png", f"s3://{s3.name}/pool/b.png"}
        export_labels(store, tmp_path / "dataset", format="imagefolder", classes=CLASSES)
        rows = read_csv(tmp_path / "dataset" / PROVENANCE_FILE)
        for row in rows:
            exported = tmp_path / "dataset" / row["path"]
            assert hashlib.sha256(exported.read_bytes()).hexdigest() in row["item_key"]
        assert sorted(r["path"] for r in rows) == ["cat/a.png", "dog/b.png"]
    finally:
        store.close()


def test_s3_objects_replaced_or_deleted_after_ingest_are_left_out_not_exported(s3, tmp_path):
    # A labeled object overwritten with another image, one deleted: both went out in the CSV
    # with their old labels, and an imagefolder put the new image in the old label's folder.
    from pipeline.ingest import ingest_folder

    names = ("a.png", "b.png", "c.png", "d.png")
    for name in names:
        s3.put(f"pool/{name}", png(ord(name[0])))
    store = LabelStore(tmp_path / "labels.db")
    try:
        added = {Path(i.path).name: i.key for i in
                 ingest_folder(store, f"s3://{s3.name}/pool").added}
        store.add_labels([NewLabel(added[n], "cat", "human", who="alice") for n in names])
        s3.put("pool/a.png", png(200))  # replaced, and the ingest below sees it
        s3.client.delete_object(Bucket=s3.name, Key="pool/b.png")  # deleted, seen too
        ingest_folder(store, f"s3://{s3.name}/pool")
        s3.put("pool/c.png", png(201))  # replaced after the last ingest: the copy checks it
        report = export_labels(store, tmp_path / "labels.csv", format="csv")
        assert [Path(r["path"]).name for r in read_csv(tmp_path / "labels.csv")] == [
            "c.png", "d.png"]
        # (a.png's new image is a new item, without a label yet)
        assert report.left_out == {"changed_file": 1, "missing_file": 1, "unlabeled": 1}
        assert report.missing == [f"s3://{s3.name}/pool/b.png"]
        assert report.changed == [f"s3://{s3.name}/pool/a.png"]  # named, not only counted
        folder = export_labels(store, tmp_path / "dataset", format="imagefolder",
                               classes=CLASSES)
        rows = read_csv(tmp_path / "dataset" / PROVENANCE_FILE)
        assert [r["path"] for r in rows] == ["cat/d.png"] and folder.rows == 1
        assert folder.left_out == {"changed_file": 2, "missing_file": 1, "unlabeled": 1}
        assert folder.changed == [f"s3://{s3.name}/pool/{n}" for n in ("a.png", "c.png")]
    finally:
        store.close()


def test_an_imagefolder_export_with_s3_out_of_reach_is_one_error_and_writes_nothing(
        s3, tmp_path, monkeypatch):
    from pipeline.ingest import ingest_folder

    s3.put("pool/a.png", png(1))
    store = LabelStore(tmp_path / "labels.db")
    try:
        key = ingest_folder(store, f"s3://{s3.name}/pool").added[0].key
        store.add_labels([NewLabel(key, "cat", "human", who="alice")])
        import training.sources

        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setattr(training.sources, "_clients", {})  # a new process would read it
        with pytest.raises(ExportError, match="cannot read s3://.*nothing was written"):
            export_labels(store, tmp_path / "dataset", format="imagefolder", classes=CLASSES)
        assert not (tmp_path / "dataset").exists()
    finally:
        store.close()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_exports_get_the_umasks_permissions_not_owner_only(project, mask):
    # Written through mkstemp/mkdtemp (0600/0700) and renamed into place: a teammate or a
    # container reading the export got "permission denied".
    store, _, tmp = project
    old = os.umask(mask)
    try:
        export_labels(store, tmp / "labels.csv", format="csv")
        export_labels(store, tmp / "folder", format="imagefolder", classes=("cat", "dog"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp / "labels.csv").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp / "folder").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp / "folder/provenance.csv").stat().st_mode) == 0o666 & ~mask


def test_an_imagefolder_export_refuses_labels_of_a_class_the_config_no_longer_has(project):
    # "nine" renamed "9" in labelloop.toml: the export made a folder for each, 11 classes
    # whose numbers shift in torchvision's ImageFolder (a user's review).
    store, _, tmp = project
    export_labels(store, tmp / "all.csv", format="csv")
    labeled = {r["label"] for r in read_csv(tmp / "all.csv")}
    assert "cat" in labeled
    kept = tuple(sorted(labeled - {"cat"})) + ("kitty",)
    with pytest.raises(ExportError, match=r"labels 'cat' \(\d+ image\(s\)\) are not among"):
        export_labels(store, tmp / "renamed", format="imagefolder", classes=kept)
    assert not (tmp / "renamed").exists()
