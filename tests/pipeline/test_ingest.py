"""Ingest: good images of every mode become items, bad files are quarantined with their reason."""

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import labeling.store
import pipeline.ingest as ingest_module
from labeling.seen_files import unusable_items
from labeling.store import LabelStore
from pipeline.cli.app import app
from pipeline.ingest import IngestError, ingest_folder
from tests.data.make_corpus import bomb_png, encoded, write_file

RNG = np.random.default_rng(0)


def _noise(shape) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


GOOD_PNG = encoded(Image.fromarray(_noise((64, 64, 3))), "PNG")
GOOD_JPEG = encoded(Image.fromarray(_noise((64, 64, 3))), "JPEG")


def make_good(root: Path) -> dict[str, tuple[int, int]]:
    """Good images in every mode the model must read; file name -> (width, height) decoded."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    files = {
        "gray.png": encoded(Image.fromarray(_noise((12, 30))), "PNG"),
        "rgb.jpg": GOOD_JPEG,
        "sub/rgba.PNG": encoded(Image.fromarray(_noise((12, 30, 4)), "RGBA"), "PNG"),
        "sub/palette.png": encoded(
            Image.fromarray(_noise((12, 30))).convert("P"), "PNG", transparency=0
        ),
        "sub/deeper/cmyk.jpeg": encoded(
            Image.fromarray(_noise((12, 30, 3))).convert("CMYK"), "JPEG"
        ),
        "sub/deeper/sixteen.png": encoded(
            Image.fromarray(RNG.integers(0, 65535, size=(12, 30)).astype(np.uint16)), "PNG"
        ),
        "rotated.JPG": encoded(Image.fromarray(_noise((12, 30, 3))), "JPEG", exif=exif),
    }
    for name, data in files.items():
        write_file(root / name, data)
    sizes = {name: (30, 12) for name in files}
    sizes["rgb.jpg"] = (64, 64)
    sizes["rotated.JPG"] = (12, 30)
    return sizes


BAD = {
    "bad/empty.png": (b"", "empty file"),
    "bad/truncated.png": (GOOD_PNG[: len(GOOD_PNG) // 2], "truncated"),
    "bad/truncated.jpg": (GOOD_JPEG[: len(GOOD_JPEG) // 2], "truncated"),
    "bad/text.png": (b"not an image, just text\n", "not an image"),
    "bad/bomb.png": (bomb_png(20_000, 20_000), "decompression bomb"),
    # Readable, but no browser but Safari shows it: Label Studio showed its task blank.
    "bad/scan.tiff": (encoded(Image.fromarray(_noise((12, 30))), "TIFF"),
                      "TIFF: web browsers, and so Label Studio, cannot show it"),
}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    sizes = make_good(root)
    for name, (data, _) in BAD.items():
        write_file(root / name, data)
    write_file(root / "copies/same_as_rgb.jpeg", GOOD_JPEG)
    write_file(root / "notes.txt", b"ignored")
    write_file(root / "sub/labels.csv", b"path,label\n")
    os.symlink(root, root / "sub/loop")  # a link back up: the walk must not follow it
    os.symlink(root / "gray.png", root / "sub/link.png")  # the same file, not a duplicate
    return root, sizes


def test_good_images_become_items_and_bad_ones_are_quarantined(store, folder):
    root, sizes = folder
    report = ingest_folder(store, root)

    items = {Path(i.path).relative_to(root).as_posix(): i for i in store.items()}
    assert set(items) == set(sizes)
    for name, item in items.items():
        data = (root / name).read_bytes()
        assert item.key == "sha256:" + hashlib.sha256(data).hexdigest()
        assert (item.width, item.height) == sizes[name], name
        assert item.size_bytes == len(data)
        assert Path(item.path).is_absolute()
    assert len(report.added) == len(sizes)

    reasons = {Path(q.path).relative_to(root).as_posix(): q.reason for q in store.quarantined()}
    assert set(reasons) == set(BAD)
    for name, (_, why) in BAD.items():
        assert why in reasons[name], (name, reasons[name])
    assert {Path(p).relative_to(root).as_posix(): r for p, r in report.quarantined} == reasons

    assert [Path(d.path).name for d in report.duplicates] == ["same_as_rgb.jpeg"]
    assert Path(report.duplicates[0].same_as).name == "rgb.jpg"
    assert sorted(Path(p).name for p in report.ignored) == ["labels.csv", "notes.txt"]
    assert report.unreadable_dirs == []


def test_a_second_ingest_adds_nothing_and_decodes_nothing(store, folder, monkeypatch):
    root, sizes = folder
    ingest_folder(store, root)
    # Bad files are decoded again (they may have been fixed); known good ones must not be.
    decoded = []
    real_open = ingest_module.open_image

    def counting_open(path, **kwargs):
        decoded.append(path)
        return real_open(path, **kwargs)

    monkeypatch.setattr(ingest_module, "open_image", counting_open)
    again = ingest_folder(store, root)
    assert again.added == []
    assert len(again.already_present) == len(sizes) + 1  # the copy is known too now
    # (A TIFF is refused by its first bytes, before any decoding.)
    assert {Path(p).relative_to(root).as_posix() for p in decoded} == set(BAD) - {"bad/scan.tiff"}
    assert len(store.items()) == len(sizes)


def test_a_file_fixed_later_leaves_quarantine(store, folder):
    root, _ = folder
    ingest_folder(store, root)
    broken = root / "bad/truncated.png"
    broken.write_bytes(encoded(Image.fromarray(_noise((8, 8, 3))), "PNG"))
    (root / "bad/text.png").unlink()  # deleted files leave the quarantine too

    report = ingest_folder(store, root)
    assert [Path(i.path) for i in report.added] == [broken.resolve()]
    assert sorted(Path(p).name for p in report.released) == ["text.png", "truncated.png"]
    left = {Path(q.path).name for q in store.quarantined()}
    assert left == {"empty.png", "truncated.jpg", "bomb.png", "scan.tiff"}


def test_a_fixed_file_whose_bytes_are_already_known_also_leaves_quarantine(store, tmp_path):
    root = tmp_path / "images"
    write_file(root / "a.png", GOOD_PNG)
    write_file(root / "b.png", GOOD_PNG[:100])
    ingest_folder(store, root)
    (root / "b.png").write_bytes(GOOD_PNG)  # now a copy of a.png, already an item

    report = ingest_folder(store, root)
    assert store.quarantined() == []
    assert [Path(p).name for p in report.released] == ["b.png"]


def test_max_pixels_quarantines_large_images(store, tmp_path):
    root = tmp_path / "images"
    write_file(root / "small.png", encoded(Image.fromarray(_noise((8, 8))), "PNG"))
    write_file(root / "large.png", encoded(Image.fromarray(_noise((20, 20))), "PNG"))
    report = ingest_folder(store, root, max_pixels=100)
    assert [Path(i.path).name for i in report.added] == ["small.png"]
    assert [Path(p).name for p, _ in report.quarantined] == ["large.png"]
    assert "too large" in report.quarantined[0].reason


def test_macos_resource_files_beside_images_are_ignored_not_quarantined(store, tmp_path):
    # A folder copied from a Mac to a USB disk holds "._x.png" beside each "x.png": AppleDouble
    # metadata, not an image. A user's review found them quarantined as broken images.
    root = tmp_path / "images"
    write_file(root / "cat.png", encoded(Image.fromarray(_noise((8, 8))), "PNG"))
    write_file(root / "._cat.png", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    store.quarantine(str(root.resolve() / "._cat.png"), "cannot identify image file")  # before
    report = ingest_folder(store, root)
    assert [Path(i.path).name for i in report.added] == ["cat.png"]
    assert report.quarantined == [] and [Path(p).name for p in report.ignored] == ["._cat.png"]
    # One quarantined by an ingest before this rule leaves the quarantine (it stays on disk,
    # never read again, and would have stayed there for good).
    assert [Path(p).name for p in report.released] == ["._cat.png"]
    assert store.quarantined() == []


def test_the_default_limit_stops_a_bomb_below_pillows_hard_limit(store, tmp_path):
    root = tmp_path / "images"
    write_file(root / "bomb.png", bomb_png(10_000, 10_000))  # 1e8 pixels: over the default 89.5M
    write_file(root / "fine.png", GOOD_PNG)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        report = ingest_folder(store, root)
    assert len(report.added) == 1
    assert "possible decompression bomb" in report.quarantined[0].reason
    # The reason is ours; Pillow's warning text used to reach the user's terminal as well.
    assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_raised_max_pixels_is_ours_to_raise_not_pillows(store, tmp_path):
    # 2.25e8 pixels: over twice Pillow's own limit, which used to refuse the header whatever
    # --max-pixels said. Truncated after its header, so that nothing large is decoded: the
    # reason must be the truncation, not a limit the user raised.
    root = tmp_path / "images"
    write_file(root / "wide.png", bomb_png(15_000, 15_000)[:4_000])
    report = ingest_folder(store, root, max_pixels=300_000_000)
    reason = report.quarantined[0].reason
    assert "decompression bomb" not in reason and "limit" not in reason, reason


def test_identical_bad_files_are_each_quarantined(store, tmp_path):
    root = tmp_path / "images"
    write_file(root / "a.png", b"")
    write_file(root / "b.png", b"")
    write_file(root / "ok.png", GOOD_PNG)
    report = ingest_folder(store, root)
    assert sorted(Path(q.path).name for q in store.quarantined()) == ["a.png", "b.png"]
    assert report.duplicates == []


def test_a_missing_or_wrong_root_is_a_clear_error(store, tmp_path):
    with pytest.raises(IngestError, match="max_pixels must be a positive integer"):
        ingest_folder(store, tmp_path, max_pixels=0)
    with pytest.raises(IngestError, match="folder not found"):
        ingest_folder(store, tmp_path / "nope")
    write_file(tmp_path / "file.png", GOOD_PNG)
    with pytest.raises(IngestError, match="not a folder"):
        ingest_folder(store, tmp_path / "file.png")
    write_file(tmp_path / "docs/readme.txt", b"text")
    with pytest.raises(IngestError, match=r"no image files under .*docs.*1 other file"):
        ingest_folder(store, tmp_path / "docs")
    assert store.items() == [] and store.quarantined() == []


def test_a_folder_emptied_under_a_pool_says_where_its_items_were_and_marks_none_gone(
        store, tmp_path):
    # Every file gone at once (a folder emptied, moved, or a disk not mounted): the error used
    # to read as for a new, empty folder.
    write_file(tmp_path / "imgs/a.png", GOOD_PNG)
    assert len(ingest_folder(store, tmp_path / "imgs").added) == 1
    (tmp_path / "imgs/a.png").unlink()
    with pytest.raises(IngestError, match=r"no image files under .*; the pool's 1 item\(s\) had "
                                          r"their files there: was the folder emptied, moved"):
        ingest_folder(store, tmp_path / "imgs")
    assert len(store.items()) == 1 and not unusable_items(store)
    write_file(tmp_path / "imgs/a.png", GOOD_PNG)
    assert ingest_folder(store, tmp_path / "imgs").already_present == [str(tmp_path / "imgs/a.png")]


def test_unreadable_files_and_folders_are_reported(store, tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_file(root / "ok.png", GOOD_PNG)
    os.symlink(root / "gone.png", root / "dangling.png")  # reading it fails
    locked = write_file(root / "locked.png", GOOD_JPEG)
    private = root / "private"
    write_file(private / "x.png", GOOD_PNG)
    # chmod cannot lock out root (the test may run as root), so reading and listing fail by hand.
    real_scandir = os.scandir

    def guarded_open(path, *args, **kwargs):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    def scandir(path):
        if os.fspath(path) == str(private):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    # Files are hashed (opened first) by the store's file_key.
    monkeypatch.setattr(labeling.store, "open", guarded_open, raising=False)
    report = ingest_folder(store, root)
    assert [Path(i.path).name for i in report.added] == ["ok.png"]
    assert [(Path(p).name, r) for p, r in report.quarantined] == [
        ("dangling.png", "broken symbolic link"),
        ("locked.png", "unreadable: Permission denied"),
    ]
    assert report.unreadable_dirs == [(str(private), "Permission denied")]


# ---- command line ---------------------------------------------------------------------------
def test_cli_prints_a_summary_and_the_quarantined_files(tmp_path, folder):
    root, sizes = folder
    db = tmp_path / "labels.db"
    result = CliRunner().invoke(app, ["ingest", str(root), "--store", str(db)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "added" in result.output and "bad/bomb.png" in result.output
    assert "decompression bomb" in result.output
    store = LabelStore(db)
    assert len(store.items()) == len(sizes)
    store.close()


def test_a_projects_limit_is_not_raised_above_what_its_rounds_read(tmp_path):
    # A user's review: `ingest --max-pixels` let 100-megapixel photos in, and every round
    # after stopped on them (training and prediction read at the default limit).
    root = tmp_path / "images"
    write_file(root / "big.png", bomb_png(10_000, 10_000))
    result = CliRunner().invoke(app, ["ingest", str(root), "--max-pixels", "200000000",
                                      "--config", str(tmp_path / "labelloop.toml")])
    assert result.exit_code == 1
    assert "--max-pixels 200,000,000 is above the 89,478,485 pixels" in result.stderr
    # A plain store feeds no round: there the limit is the caller's to raise.
    db = tmp_path / "labels.db"
    plain = CliRunner().invoke(app, ["ingest", str(root), "--store", str(db),
                                     "--max-pixels", "200000000"])
    assert plain.exit_code == 0, plain.output
    store = LabelStore(db)
    assert [Path(i.path).name for i in store.items()] == ["big.png"]
    store.close()


def test_cli_errors_are_one_line_with_a_non_zero_exit(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "l.db")
    missing = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--store", db])
    assert missing.exit_code == 1
    assert missing.stderr.strip().splitlines() == [f"error: folder not found: {tmp_path / 'nope'}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = runner.invoke(app, ["ingest", str(empty), "--store", db])
    assert no_images.exit_code == 1
    assert "no image files under" in no_images.stderr
    bad_store = runner.invoke(app, ["ingest", str(empty), "--store", str(tmp_path / "x/y/l.db")])
    assert bad_store.exit_code == 1
    assert "label store folder does not exist" in bad_store.stderr
    # A database URL with a password is refused unshown (a Path option folded its '//', so
    # the check never saw a URL and the error printed the password as a folder name).
    secret = runner.invoke(app, ["ingest", str(empty), "--store",
                                 "postgresql+psycopg://alice:S3cretPW@db.example/labels"])
    assert secret.exit_code == 1 and "--store holds a password" in secret.stderr
    assert "S3cretPW" not in secret.output
    # And a sqlite URL names the file it gives, not a folder called "sqlite:".
    write_file(tmp_path / "imgs/a.png", GOOD_PNG)
    as_url = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--store",
                                 f"sqlite:///{tmp_path / 'by-url.db'}"])
    assert as_url.exit_code == 0 and (tmp_path / "by-url.db").is_file()


def test_a_link_to_an_image_in_the_folder_is_counted_as_a_link(store, tmp_path):
    # It was in no row of the table: 31 image files, "added 30", nothing else.
    write_file(tmp_path / "imgs/a.png", GOOD_PNG)
    os.symlink("a.png", tmp_path / "imgs/link-a.png")
    report = ingest_folder(store, tmp_path / "imgs")
    assert len(report.added) == 1 and report.duplicates == []
    assert report.file_links == [str(tmp_path / "imgs/link-a.png")]
