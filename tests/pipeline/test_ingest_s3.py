"""Ingest of an S3 prefix against a local S3 endpoint (moto): the same items as the same files on
disk, bad objects quarantined with their reason, and only new or changed objects read again."""

import numpy as np
import pytest
from PIL import Image

import pipeline.ingest as ingest_module
from labeling.store import LabelStore
from pipeline.ingest import IngestError, ingest_folder
from tests.data.make_corpus import encoded, write_file
from tests.pipeline.conftest import calls_to
from tests.ports import free_port

RNG = np.random.default_rng(11)


def _png() -> bytes:
    return encoded(Image.fromarray(RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8)), "PNG")


@pytest.fixture
def reads(monkeypatch):
    """The objects ingest fetches, in order."""
    return calls_to(monkeypatch, ingest_module, "read_bytes")


@pytest.fixture
def corpus():
    good = [_png() for _ in range(3)]
    return {"photos/a.png": good[0], "photos/sub/b.png": good[1], "photos/c.PNG": good[2],
            "photos/sub/copy-of-a.png": good[0],
            "photos/broken.png": good[1][: len(good[1]) // 2],  # truncated
            "photos/notes.jpg": b"this is text, not a picture",
            "photos/readme.txt": b"not an image key",
            "elsewhere/z.png": _png()}  # outside the prefix


def test_prefix_ingest_keys_by_content_and_quarantines_bad_objects(
        s3, store, tmp_path, corpus, reads, ledger):
    for key, data in corpus.items():
        s3.put(key, data)
    report = ingest_folder(store, f"s3://{s3.name}/photos/")
    prefix = f"s3://{s3.name}/photos"
    assert report.root == prefix
    assert sorted(i.path for i in report.added) == sorted(
        f"{prefix}/{k}" for k in ("a.png", "c.PNG", "sub/b.png"))
    assert [d.same_as for d in report.duplicates] == [f"{prefix}/a.png"]
    assert report.ignored == [f"{prefix}/readme.txt"]
    reasons = {q.path: q.reason for q in report.quarantined}
    assert set(reasons) == {f"{prefix}/broken.png", f"{prefix}/notes.jpg"}
    assert "truncated" in reasons[f"{prefix}/broken.png"]
    assert reasons[f"{prefix}/notes.jpg"] == "not an image Pillow can read"
    assert {q.path: q.reason for q in store.quarantined()} == reasons
    for path, reason in reasons.items():
        ledger.bad_input(f"S3 object {path.rsplit('/', 1)[1]}", outcome=f"quarantined: {reason}")
    assert "elsewhere" not in " ".join(reads)

    # The same bytes on local disk are the same items.
    local = tmp_path / "local"
    for key, data in corpus.items():
        if key.startswith("photos/"):
            write_file(local / key.removeprefix("photos/"), data)
    other = LabelStore(tmp_path / "local.db")
    try:
        on_disk = ingest_folder(other, local)
        assert {i.key for i in on_disk.added} == {i.key for i in report.added}
        item = store.item(report.added[0].key)
        assert (item.width, item.height) == (20, 20)
        assert store.thumbs()[0]  # near-duplicate fingerprints recorded, as for files
    finally:
        other.close()


def test_second_ingest_reads_only_new_or_changed_objects(s3, store, corpus, reads):
    for key, data in corpus.items():
        s3.put(key, data)
    root = f"s3://{s3.name}/photos"
    ingest_folder(store, root)
    reads.clear()
    again = ingest_folder(store, root)
    assert again.added == [] and again.unread == 4
    # The quarantined objects are read again (they may have been fixed), nothing else.
    assert sorted(reads) == [f"{root}/broken.png", f"{root}/notes.jpg"]
    reads.clear()
    new = s3.put("photos/sub/new.png", _png())
    fixed = s3.put("photos/notes.jpg", encoded(Image.new("RGB", (9, 9), "red"), "JPEG"))
    third = ingest_folder(store, root)
    assert sorted(i.path for i in third.added) == sorted([new, fixed])
    assert fixed in third.released
    assert sorted(reads) == sorted([f"{root}/broken.png", fixed, new])
    reads.clear()
    s3.put("photos/a.png", _png())  # replaced: same key, other bytes
    fourth = ingest_folder(store, root)
    assert [i.path for i in fourth.added] == [f"{root}/a.png"]
    assert sorted(reads) == [f"{root}/a.png", f"{root}/broken.png"]
    s3.client.delete_object(Bucket=s3.name, Key="photos/broken.png")
    fifth = ingest_folder(store, root)
    assert fifth.released == [f"{root}/broken.png"] and store.quarantined() == []


def test_missing_bucket_and_empty_prefix_say_what_to_fix(s3, store):
    with pytest.raises(IngestError, match="bucket 'no-such-bucket' does not exist"):
        ingest_folder(store, "s3://no-such-bucket/photos")
    with pytest.raises(IngestError, match="no image files under"):
        ingest_folder(store, f"s3://{s3.name}/nothing-here")
    with pytest.raises(IngestError, match="names no bucket"):
        ingest_folder(store, "s3:///photos")


def test_endpoint_down_is_one_clear_error(s3, store, monkeypatch, ledger):
    import training.sources

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setattr(training.sources, "_clients", {})
    with pytest.raises(IngestError) as err:
        ingest_folder(store, f"s3://{s3.name}/photos")
    message = str(err.value)
    assert "endpoint cannot be reached" in message and "AWS_ENDPOINT_URL" in message
    assert "testing" not in message  # no credential in the message
    ledger.bad_input("S3 endpoint down", outcome=f"IngestError: {message[:60]}...")


def test_no_credentials_is_one_clear_error(s3, store, monkeypatch):
    import training.sources

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    # No instance-metadata lookups: there is no cloud here.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(training.sources, "_clients", {})
    with pytest.raises(IngestError, match="no AWS credentials found.*AWS_ACCESS_KEY_ID"):
        ingest_folder(store, f"s3://{s3.name}/photos")


def test_cli_ingests_a_prefix_and_names_a_missing_bucket(s3, tmp_path, corpus):
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    for key, data in corpus.items():
        s3.put(key, data)
    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", f"s3://{s3.name}/photos", "--store", db],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "not an image Pillow can read" in result.output
    missing = runner.invoke(app, ["ingest", "s3://no-such-bucket/x", "--store", db])
    assert missing.exit_code == 1
    assert "bucket 'no-such-bucket' does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
