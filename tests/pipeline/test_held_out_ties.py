"""Held-out ties (``pipeline.round.labeled.unresolved_held_out``): a tie counts against the
model until a person's label settles it, whatever happens to its task."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from PIL import Image
from sqlalchemy import select, update

from labeling.schema import Item, StudioAnnotation, StudioTaskSync, utcnow
from labeling.selections import Pick, record_picks
from labeling.store import LabelStore, NewLabel
from labeling.studio.opinions import current_votes, disagreed
from pipeline.ingest import ingest_folder
from pipeline.round.labeled import unresolved_held_out


def test_a_tie_stays_through_a_later_skip_and_a_deleted_task_until_a_person_labels_it(tmp_path):
    Image.fromarray(np.full((4, 4), 9, np.uint8), mode="L").save(tmp_path / "x.png")
    store = LabelStore(tmp_path / "labels.db")
    try:
        key = ingest_folder(store, tmp_path).added[0].key
        record_picks(store, [Pick(key, "random", holdout=True)], round_id=None)
        with store.transaction() as s:
            item = s.scalar(select(Item).where(Item.key == key))
            s.add(StudioTaskSync(project_id=1, task_id=10, item_id=item.id,
                                 outcome="disagreement", synced_at=utcnow() - timedelta(hours=1)))
            item.status = "disagreement"
        assert unresolved_held_out(store) == {key}
        # Sent again to a second Label Studio project (the first kept), skipped there: the
        # two votes still stand.
        with store.transaction() as s:
            s.add(StudioTaskSync(project_id=2, task_id=20, item_id=item.id, outcome="skipped",
                                 synced_at=utcnow()))
        assert unresolved_held_out(store) == {key}
        # The first project deleted: still a tie (it was dropped, and the machine labeled it).
        store.mark_project_deleted(1)
        with store.transaction() as s:
            assert s.scalar(select(StudioTaskSync.deleted).where(StudioTaskSync.task_id == 10))
        assert unresolved_held_out(store) == {key}
        # Its status is the task still there's: skipped (it stayed "disagreement" for good).
        assert store.item(key).status == "skipped"
        # A person's label settles it.
        store.add_labels([NewLabel(key, "cat", "human", who="someone")])
        assert unresolved_held_out(store) == set()
        # (A tie on a task still there is one whatever labels came from elsewhere, as before.)
        with store.transaction() as s:
            s.execute(update(StudioTaskSync).where(StudioTaskSync.task_id == 10)
                      .values(deleted=False))
        assert unresolved_held_out(store) == {key}
    finally:
        store.close()


def test_a_held_out_item_everyone_skipped_counts_against_the_model_until_answered(tmp_path):
    # People skip the images they find hard. Dropped from the evaluation, a skipped held-out
    # item flattered the bound, while the unpicked images like it stayed for the machine.
    for name, value in (("x.png", 9), ("y.png", 200)):
        Image.fromarray(np.full((4, 4), value, np.uint8), mode="L").save(tmp_path / name)
    store = LabelStore(tmp_path / "labels.db")
    try:
        held, trained = (a.key for a in ingest_folder(store, tmp_path).added)
        record_picks(store, [Pick(held, "random", holdout=True), Pick(trained, "strategy")],
                     round_id=None)
        with store.transaction() as s:
            for task_id, key in ((10, held), (11, trained)):
                item = s.scalar(select(Item).where(Item.key == key))
                s.add(StudioTaskSync(project_id=1, task_id=task_id, item_id=item.id,
                                     outcome="skipped", synced_at=utcnow()))
                item.status = "skipped"
        assert unresolved_held_out(store) == {held}  # a training pick skipped is no reference
        store.add_labels([NewLabel(held, "cat", "human", who="someone")])
        assert unresolved_held_out(store) == set()
    finally:
        store.close()


def test_people_who_disagreed_on_a_task_deleted_since_still_count_as_disagreeing(tmp_path):
    # Deleting the disputed task in Label Studio turned the certificate's "no error bound
    # (people gave different answers)" into "wrong labels <= 0.00%" (a user's review).
    Image.fromarray(np.full((4, 4), 9, np.uint8), mode="L").save(tmp_path / "x.png")
    store = LabelStore(tmp_path / "labels.db")
    try:
        key = ingest_folder(store, tmp_path).added[0].key
        with store.transaction() as s:
            item = s.scalar(select(Item).where(Item.key == key))
            s.add(StudioTaskSync(project_id=1, task_id=10, item_id=item.id,
                                 outcome="disagreement"))
            item.status = "disagreement"  # as the sync sets it
            for annotation_id, who, choice in ((1, "ann@a.test", "cat"), (2, "bob@a.test", "dog")):
                s.add(StudioAnnotation(annotation_id=annotation_id, project_id=1, task_id=10,
                                       item_id=item.id, who=who, choice=choice,
                                       created_at=f"2026-12-0{annotation_id}T00:00:00Z"))
        # An audit's machine label, kept in force while people tie (export holds it back).
        store.add_labels([NewLabel(key, "cat", "machine", model_version="3", confidence=0.9)])
        assert disagreed(store) == (1, 1)
        store.mark_project_deleted(1)
        assert disagreed(store) == (1, 1)
        assert current_votes(store, None) == {}  # no label comes from a deleted task's votes
        # Asked again (it stayed "disagreement" with no task, picked by no round), and the
        # disputed machine label is not delivered meanwhile.
        assert store.item(key).status == "ok"
        assert key not in store.current_labels()
    finally:
        store.close()
