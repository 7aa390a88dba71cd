"""A picked image people cannot be shown (its file deleted, outside the image folder, or
overwritten with another image) waits in the pool, reported by the push and by `labelloop
status`, instead of stopping the round or becoming a task with a broken image or another
image; it is sent once the file is back."""

from __future__ import annotations

import shutil

import pytest

from labeling.selections import Pick, record_picks
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.ingest import ingest_folder
from pipeline.round import push as push_step
from pipeline.round.session import session
from pipeline.status import project_status
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration]


def test_a_picked_image_that_cannot_be_shown_waits_and_is_reported(studio_server, digits_export,
                                                                   tmp_path):
    images = studio_server.images_dir.parent / f"held-back-{tmp_path.name}"
    images.mkdir()
    for source in sorted((digits_export / "images").glob("*.png"))[:5]:
        shutil.copy(source, images / source.name)
    elsewhere = tmp_path / "elsewhere"  # outside the server's document root
    elsewhere.mkdir()
    shutil.copy(sorted((digits_export / "images").glob("*.png"))[5], elsewhere / "x.png")
    project, _, _ = make_project(studio_server, digits_export, tmp_path / "proj",
                                 f"held-back-{tmp_path.name[-12:]}", images=images)
    try:
        store = project.store
        ingest_folder(store, elsewhere)  # the Python API does not refuse it; the CLI does
        paths = {i.key: i.path for i in store.items()}
        record_picks(store, [Pick(k, "random") for k in paths], round_id=None)
        # Another image in a picked item's file: its task would show that image under its key.
        overwritten = sorted(images.glob("*.png"))[1]
        shutil.copy(sorted((digits_export / "images").glob("*.png"))[6], overwritten)
        assert ingest_folder(store, images).replaced == [str(overwritten.resolve())]
        gone = sorted(images.glob("*.png"))[0]
        kept = gone.read_bytes()
        gone.unlink()
        rid = store.start_round()
        first = push_step.push(project, rid, {})
        store.finish_round(rid, {"push": first})
        studio, sp = session(project)
        on_server = {item_key_of(t) for t in iter_tasks(studio, sp.id, include="id,data")}
        shown = {paths[k] for k in on_server}
        assert first["pushed"] == 3 and first["held_back"] == 3
        assert str(gone.resolve()) not in shown and str(elsewhere / "x.png") not in shown
        assert str(overwritten.resolve()) not in shown
        warnings = project_status(project)["warnings"]
        assert any("3 picked item(s) not sent to Label Studio" in w for w in warnings), warnings

        gone.write_bytes(kept)  # the file is back: the next push sends it, and only it
        rid = store.start_round()
        second = push_step.push(project, rid, {})
        store.finish_round(rid, {"push": second})
        assert second["pushed"] == 1 and second["already_there"] == 0
        assert second["held_back"] == 2 and second["held_back_why"] == (
            f"item {overwritten.resolve()}: the file now holds another image; put this item's "
            f"image back under that name (its labels are kept)")
        assert "outside the image folder" in sp.images.problem(str(elsewhere / "x.png"))
        assert len({item_key_of(t) for t in iter_tasks(studio, sp.id, include="id,data")}) == 4
    finally:
        project.close()
