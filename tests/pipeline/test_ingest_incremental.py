"""Incremental ingest: a second ingest reads only new or changed files, and loses nothing."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipeline.ingest as ingest_module
from pipeline.ingest import ingest_folder
from tests.data.make_corpus import bomb_png, encoded, write_file
from tests.pipeline.conftest import calls_to

RNG = np.random.default_rng(3)


def _png() -> bytes:
    # Uncompressed: every such file has the same size, so only the times tell them apart.
    return encoded(Image.fromarray(RNG.integers(0, 256, (20, 20, 3), dtype=np.uint8)), "PNG",
                   compress_level=0)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for i in range(6):
        write_file(root / f"sub{i % 2}/img{i}.png", _png())
    return root.resolve()


@pytest.fixture
def reads(monkeypatch):
    """The paths ingest hashes (reads the bytes of), in order."""
    return calls_to(monkeypatch, ingest_module, "file_key")


def test_unchanged_files_are_not_read_again_and_still_count_as_present(store, folder, reads):
    first = ingest_folder(store, folder)
    assert len(first.added) == 6 and len(reads) == 6
    reads.clear()
    write_file(folder / "sub0/new.png", _png())
    again = ingest_folder(store, folder)
    assert reads == [str(folder / "sub0/new.png")]
    assert [i.path for i in again.added] == [str(folder / "sub0/new.png")]
    assert again.unread == 6 and len(again.already_present) == 6
    assert len(store.items()) == 7


def test_a_changed_file_is_read_again_even_with_its_old_modification_time(store, folder, reads):
    ingest_folder(store, folder)
    reads.clear()
    target = folder / "sub1/img1.png"
    old = os.stat(target)
    write_file(target, _png())  # other bytes; then the old mtime back, as `cp -p` would
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    now = os.stat(target)
    assert (now.st_size, now.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    again = ingest_folder(store, folder)
    assert reads == [str(target)]
    assert [i.path for i in again.added] == [str(target)]


def test_a_deleted_file_that_comes_back_is_read_again(store, folder, reads):
    ingest_folder(store, folder)
    kept = folder.parent / "kept.png"
    shutil.move(folder / "sub0/img0.png", kept)
    ingest_folder(store, folder)
    reads.clear()
    shutil.move(kept, folder / "sub0/img0.png")
    again = ingest_folder(store, folder)
    # Its bytes are an item already: read (hashed) once, not added twice.
    assert reads == [str(folder / "sub0/img0.png")]
    assert again.added == [] and str(folder / "sub0/img0.png") in again.already_present
    assert len(store.items()) == 6


def test_reread_reads_every_file(store, folder, reads):
    ingest_folder(store, folder)
    reads.clear()
    again = ingest_folder(store, folder, reread=True)
    assert len(reads) == 6 and again.unread == 0 and len(again.already_present) == 6


def test_a_quarantined_file_is_read_again_next_time(store, tmp_path, reads, ledger):
    # Too large at the first limit, fine at a higher one: the index must not hide it.
    root = tmp_path / "big"
    write_file(root / "large.png", bomb_png(300, 300))
    first = ingest_folder(store, root, max_pixels=1000)
    assert [Path(q.path).name for q in first.quarantined] == ["large.png"]
    again = ingest_folder(store, root, max_pixels=1_000_000)
    assert [Path(i.path).name for i in again.added] == ["large.png"]
    assert store.quarantined() == []
    ledger.bad_input("image over max_pixels, re-ingested with a higher limit",
                     outcome="item")


def test_losing_the_index_costs_one_full_read_and_no_item(store, folder, reads):
    ingest_folder(store, folder)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM seen_files")
    reads.clear()
    again = ingest_folder(store, folder)
    assert len(reads) == 6 and again.added == [] and len(store.items()) == 6


def test_a_renamed_or_moved_file_keeps_its_item_under_the_new_path(store, folder):
    from labeling.store import NewLabel

    ingest_folder(store, folder)
    key_of = {i.path: i.key for i in store.items()}
    renamed, moved = folder / "sub0/img0.png", folder / "sub1/img1.png"
    store.add_labels([NewLabel(key_of[str(renamed)], "cat", "human", who="ann")],
                     classes=("cat", "dog"))
    # One of them was sent to Label Studio: its task names the old file, so it stays.
    shown = folder / "sub1/img3.png"
    store.record_tasks(7, {key_of[str(shown)]: 11})
    renamed.rename(folder / "sub0/renamed.png")
    (folder / "sub2").mkdir()
    moved.rename(folder / "sub2/img1.png")
    shown.rename(folder / "sub1/shown-renamed.png")
    again = ingest_folder(store, folder)
    assert again.added == []
    assert again.moved == sorted([str(folder / "sub0/renamed.png"), str(folder / "sub2/img1.png")])
    assert again.not_moved == [str(folder / "sub1/shown-renamed.png")]
    paths = {i.key: i.path for i in store.items()}
    assert len(paths) == 6
    assert paths[key_of[str(renamed)]] == str(folder / "sub0/renamed.png")
    assert paths[key_of[str(moved)]] == str(folder / "sub2/img1.png")
    assert paths[key_of[str(shown)]] == str(shown)  # left: its task shows this name
    assert store.current_classes()[key_of[str(renamed)]] == "cat"  # the label came along
    # A copy (the old file still there) is not a move: the item keeps its first path.
    (folder / "sub0/copy.png").write_bytes((folder / "sub0/img2.png").read_bytes())
    assert ingest_folder(store, folder).moved == []


def test_a_file_copied_first_and_deleted_later_is_followed(store, folder):
    # cp, an ingest (a round) that reads the copy as the same item, then rm: the item moves
    # to the copy when its own file goes, though no ingest reads the copy again.
    ingest_folder(store, folder)
    old = folder / "sub0/img0.png"
    key = {i.path: i.key for i in store.items()}[str(old)]
    shutil.copy(old, folder / "sub1/copied.png")
    assert ingest_folder(store, folder).moved == []  # both there: a copy, not a move
    old.unlink()
    again = ingest_folder(store, folder)
    assert again.moved == [str(folder / "sub1/copied.png")]
    assert store.item(key).path == str(folder / "sub1/copied.png")


def test_a_copy_changed_since_it_was_read_is_not_taken_for_the_gone_file(store, folder):
    # a.png and its copy b.png read; then a.png deleted and another image saved as b.png:
    # the item of a.png must not move onto b.png, whose bytes are now another image's.
    ingest_folder(store, folder)
    old = folder / "sub0/img0.png"
    key = {i.path: i.key for i in store.items()}[str(old)]
    shutil.copy(old, folder / "sub0/b.png")
    ingest_folder(store, folder)
    old.unlink()
    write_file(folder / "sub0/b.png", _png())
    again = ingest_folder(store, folder)
    assert again.moved == [] and [i.path for i in again.added] == [str(folder / "sub0/b.png")]
    assert store.item(key).path == str(old)  # left where it was: its file is gone
    assert sorted(i.path for i in store.items()).count(str(folder / "sub0/b.png")) == 1


def test_two_swapped_files_swap_their_items_and_export_each_label_with_its_own_image(
        store, folder, tmp_path):
    from labeling.store import NewLabel
    from pipeline.export import export_labels

    ingest_folder(store, folder)
    a, b = folder / "sub0/img0.png", folder / "sub0/img2.png"
    key_of = {i.path: i.key for i in store.items()}
    store.add_labels([NewLabel(key_of[str(a)], "cat", "human", who="ann"),
                      NewLabel(key_of[str(b)], "dog", "human", who="ann")],
                     classes=("cat", "dog"))
    a.rename(folder / "t.png")
    b.rename(a)
    (folder / "t.png").rename(b)
    again = ingest_folder(store, folder)
    assert again.added == [] and again.moved == sorted([str(a), str(b)])
    assert store.item(key_of[str(a)]).path == str(b)  # the cat image now lives at b
    report = export_labels(store, tmp_path / "out", format="imagefolder",
                           classes=("cat", "dog"))
    assert report.by_source == {"human": 2} and "changed_file" not in report.left_out
    assert (tmp_path / "out/cat/img2.png").read_bytes() == b.read_bytes()
    assert (tmp_path / "out/dog/img0.png").read_bytes() == a.read_bytes()


def test_a_file_overwritten_with_another_image_takes_no_label_to_the_export(
        store, folder, tmp_path):
    from labeling.store import NewLabel
    from pipeline.export import export_labels

    ingest_folder(store, folder)
    path = folder / "sub1/img1.png"
    old_key = {i.path: i.key for i in store.items()}[str(path)]
    store.add_labels([NewLabel(old_key, "cat", "human", who="ann")], classes=("cat", "dog"))
    old_bytes = path.read_bytes()
    write_file(path, _png())
    # Before any ingest reads the new bytes, the export already leaves the label out.
    early = export_labels(store, tmp_path / "early.csv", format="csv")
    assert early.rows == 0 and early.left_out["changed_file"] == 1
    again = ingest_folder(store, folder)
    assert [i.path for i in again.added] == [str(path)] and again.replaced == [str(path)]
    assert store.current_classes()[old_key] == "cat"  # kept, with no file: nothing lost
    late = export_labels(store, tmp_path / "late.csv", format="csv")
    assert late.rows == 0 and late.left_out["changed_file"] == 1
    assert ingest_folder(store, folder).replaced == []  # reported once, when it happened
    # The old image put back under another name: its item follows it, its label exports.
    write_file(folder / "back.png", old_bytes)
    assert ingest_folder(store, folder).moved == [str(folder / "back.png")]
    back = export_labels(store, tmp_path / "back.csv", format="csv")
    assert back.rows == 1 and "changed_file" not in back.left_out


def test_hidden_folders_such_as_the_workspace_are_not_walked(store, folder):
    # `labelloop init --images .` puts the workspace (.labelloop: reports with their plots)
    # inside the image folder; its images, and .git's, are no part of the pool.
    write_file(folder / ".labelloop/reports/r_files/plot.png", _png())
    write_file(folder / "sub0/.git/logo.png", _png())
    report = ingest_folder(store, folder)
    assert len(report.added) == 6
    assert not any("/." in i.path for i in store.items())
    assert report.hidden_folders == [str(folder / ".labelloop"), str(folder / "sub0/.git")]


def test_an_export_after_an_imagefolder_export_reads_no_image_again(store, folder, tmp_path,
                                                                     monkeypatch):
    # The imagefolder export hard-links every file, which changes its change time; the check
    # that a file still holds its item's bytes must not then hash the whole dataset each time.
    import pipeline.export as export_module
    from labeling.store import NewLabel
    from pipeline.export import export_labels

    ingest_folder(store, folder)
    store.add_labels([NewLabel(i.key, "cat", "human", who="ann") for i in store.items()],
                     classes=("cat", "dog"))
    export_labels(store, tmp_path / "folder", format="imagefolder", classes=("cat", "dog"))
    hashed = calls_to(monkeypatch, export_module, "file_key")
    assert export_labels(store, tmp_path / "labels.csv", format="csv").rows == 6
    assert hashed == []


def test_an_overwritten_file_whose_copy_is_still_there_moves_its_item_to_the_copy(store, folder):
    ingest_folder(store, folder)
    path = folder / "sub0/img0.png"
    key = {i.path: i.key for i in store.items()}[str(path)]
    shutil.copy(path, folder / "copy.png")
    ingest_folder(store, folder)  # the copy read: the same item, it stays at img0.png
    write_file(path, _png())
    again = ingest_folder(store, folder)
    assert again.moved == [str(folder / "copy.png")] and again.replaced == []
    assert store.item(key).path == str(folder / "copy.png")


def test_a_file_and_its_copy_both_overwritten_are_reported(store, folder):
    ingest_folder(store, folder)
    path = folder / "sub0/img0.png"
    shutil.copy(path, folder / "copy.png")
    ingest_folder(store, folder)
    write_file(path, _png())
    write_file(folder / "copy.png", _png())
    assert ingest_folder(store, folder).replaced == [str(path)]  # where the item still points
