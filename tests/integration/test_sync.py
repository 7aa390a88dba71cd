"""Syncing annotations into the store: provenance, skips, several annotators, later changes,
deleted tasks, unknown labels, and a server that goes away mid-sync."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import update

from labeling.schema import Task
from labeling.studio import server
from labeling.studio.connection import connect
from labeling.studio.errors import StudioUnreachable
from labeling.studio.push import PushItem, push_tasks
from labeling.studio.sync import sync_annotations
from labeling.studio.sync_store import load_cursor
from labeling.tasks.classification import choice_result

pytestmark = pytest.mark.integration
_user_numbers = itertools.count()


@pytest.fixture
def pushed(studio, store, project, make_items):
    """Four items pushed with the prediction "cat"; returns (items, key -> task id)."""
    items = make_items(4)
    result = push_tasks(studio, store, project,
                        [PushItem(i.key, i.path, "cat", 0.55) for i in items],
                        model_version="m1")
    return items, result.created


@pytest.fixture
def annotators(studio, request):
    """Make ``n`` extra Label Studio users; returns their (id, email)."""

    def make(n: int) -> list[tuple[int, str]]:
        users = []
        for _ in range(n):
            email = f"annotator{next(_user_numbers)}-{request.node.name[:20]}@example.com"
            with studio.errors("creating a user"):
                user = studio.client.users.create(username=email.split("@")[0], email=email,
                                                  password="not-used-0123456789")
            users.append((int(user.id), email))
        return users

    return make


def annotate(studio, task_id, label, *, user=None, lead_time=3.0):
    extra = {} if user is None else {"completed_by": user}
    with studio.errors("annotating"):
        return studio.client.annotations.create(id=task_id, result=choice_result(label),
                                                lead_time=lead_time, **extra).id


def skip(studio, task_id, *, user=None):
    extra = {} if user is None else {"completed_by": user}
    with studio.errors("skipping"):
        return studio.client.annotations.create(id=task_id, result=[], was_cancelled=True,
                                                **extra).id


def test_human_labels_arrive_with_provenance(studio, store, project, pushed):
    items, tasks = pushed
    kept = annotate(studio, tasks[items[0].key], "cat", lead_time=2.5)
    changed = annotate(studio, tasks[items[1].key], "dog", lead_time=7.0)
    report = sync_annotations(studio, store, project)
    assert sorted(report.labeled) == sorted([items[0].key, items[1].key])
    assert (report.tasks, report.read, report.annotations) == (4, 2, 2)
    labels = store.current_labels()
    same, other = labels[items[0].key], labels[items[1].key]
    assert (same.label, same.source, same.who) == ("cat", "human", studio.user_email)
    assert same.extra["annotation_ids"] == [kept] and same.extra["lead_time"] == 2.5
    assert same.extra["changed_prediction"] is False and same.extra["predicted"] == "cat"
    assert same.extra["prediction_version"] == "m1"
    assert same.extra["studio"] == {"project": project.id, "task": tasks[items[0].key]}
    assert same.extra["annotated_at"].startswith("20")
    assert other.label == "dog" and other.extra["changed_prediction"] is True
    assert other.extra["annotation_ids"] == [changed]
    # Incremental: nothing changed, nothing read, nothing written.
    again = sync_annotations(studio, store, project)
    assert (again.read, again.labeled) == (0, [])
    assert len(store.history(items[0].key)) == 1


def test_a_skip_marks_the_item_skipped_without_a_label(studio, store, project, pushed):
    items, tasks = pushed
    skip(studio, tasks[items[0].key])
    report = sync_annotations(studio, store, project)
    assert report.skipped == [items[0].key] and report.labeled == []
    assert items[0].key not in store.current_labels()
    assert store.item(items[0].key).status == "skipped"


def test_three_annotators_majority_wins(studio, store, project, pushed, annotators):
    items, tasks = pushed
    (a, a_mail), (b, b_mail), (c, _) = annotators(3)
    task = tasks[items[0].key]
    annotate(studio, task, "dog", user=a)
    annotate(studio, task, "dog", user=b)
    annotate(studio, task, "bird", user=c)
    sync_annotations(studio, store, project)
    label = store.current_labels()[items[0].key]
    assert label.label == "dog"
    assert label.extra["votes"] == {"dog": 2, "bird": 1}
    assert sorted(label.extra["annotators"]) == sorted([a_mail, b_mail])
    assert store.item(items[0].key).status == "ok"


def test_a_tie_is_a_disagreement_until_resolved(studio, store, project, pushed, annotators):
    items, tasks = pushed
    (a, _), (b, _), (c, _) = annotators(3)
    task = tasks[items[0].key]
    annotate(studio, task, "dog", user=a)
    annotate(studio, task, "bird", user=b)
    report = sync_annotations(studio, store, project)
    assert report.disagreements == [items[0].key]
    assert items[0].key not in store.current_labels()
    assert store.item(items[0].key).status == "disagreement"
    # A third opinion resolves it.
    annotate(studio, task, "bird", user=c)
    report = sync_annotations(studio, store, project)
    assert report.labeled == [items[0].key]
    assert store.current_labels()[items[0].key].label == "bird"
    assert store.item(items[0].key).status == "ok"


def test_updated_and_deleted_annotations_are_followed(studio, store, project, pushed):
    items, tasks = pushed
    annotation = annotate(studio, tasks[items[0].key], "dog")
    sync_annotations(studio, store, project)
    assert store.current_labels()[items[0].key].label == "dog"

    with studio.errors("updating"):
        studio.client.annotations.update(id=annotation, result=choice_result("bird"))
    report = sync_annotations(studio, store, project)
    assert report.labeled == [items[0].key]
    assert store.current_labels()[items[0].key].label == "bird"
    assert [lab.label for lab in store.history(items[0].key)] == ["dog", "bird"]

    with studio.errors("deleting"):
        studio.client.annotations.delete(id=annotation)
    report = sync_annotations(studio, store, project)
    assert report.retracted == [items[0].key]
    assert items[0].key not in store.current_labels()
    assert store.item(items[0].key).status == "ok"


def test_a_task_deleted_in_label_studio_is_marked_deleted_and_its_label_stays(
        studio, store, project, pushed):
    items, tasks = pushed
    annotate(studio, tasks[items[0].key], "dog")
    sync_annotations(studio, store, project)
    with studio.errors("deleting tasks"):
        studio.client.tasks.delete(id=tasks[items[0].key])
        studio.client.tasks.delete(id=tasks[items[1].key])
    report = sync_annotations(studio, store, project)
    assert report.deleted_tasks == sorted([tasks[items[0].key], tasks[items[1].key]])
    assert set(store.tasks(project.id)) == {items[2].key, items[3].key}
    assert store.tasks(project.id, include_deleted=True)[items[0].key] == tasks[items[0].key]
    assert store.current_labels()[items[0].key].label == "dog"
    assert sync_annotations(studio, store, project).deleted_tasks == []


def test_an_item_skipped_on_a_task_since_deleted_is_pending_again(studio, store, project,
                                                                    pushed):
    # Its status stayed "skipped" with no task left to hold the skip: counted as skipped for
    # good, and sent again without the pre-annotation a pending item gets.
    items, tasks = pushed
    skip(studio, tasks[items[0].key])
    skip(studio, tasks[items[1].key])
    sync_annotations(studio, store, project)
    with studio.errors("deleting a task"):
        studio.client.tasks.delete(id=tasks[items[0].key])
    report = sync_annotations(studio, store, project)
    assert report.deleted_tasks == [tasks[items[0].key]]
    assert store.item(items[0].key).status == "ok"
    assert store.item(items[1].key).status == "skipped"
    assert store.count_items(status="skipped") == 1
    # The project itself deleted (or left for a new one): every skip in it goes with it.
    store.mark_project_deleted(project.id)
    assert store.count_items(status="skipped") == 0


def test_a_task_marked_deleted_that_label_studio_still_holds_is_taken_back(
        studio, store, project, pushed):
    # As a sync whose listing began before a round made the task left it (before the lock):
    # marked deleted, its item was never asked about again.
    items, tasks = pushed
    sync_annotations(studio, store, project)
    with store.transaction() as s:
        s.execute(update(Task).where(Task.task_id == tasks[items[2].key]).values(deleted=True))
    assert items[2].key not in store.tasks(project.id)
    assert sync_annotations(studio, store, project).deleted_tasks == []
    assert store.tasks(project.id)[items[2].key] == tasks[items[2].key]


def test_a_label_outside_the_class_list_is_rejected_and_reported(studio, store, project, pushed):
    items, tasks = pushed
    bad = annotate(studio, tasks[items[0].key], "horse")
    report = sync_annotations(studio, store, project)
    [rejected] = report.rejected
    assert (rejected.annotation_id, rejected.item_key) == (bad, items[0].key)
    assert "'horse' is not a class" in rejected.reason
    assert store.current_labels() == {}
    assert "horse" not in {lab.label for k in (i.key for i in items) for lab in store.history(k)}


def test_a_server_stopped_during_a_sync_loses_nothing(studio_server, studio, store, project,
                                                      pushed, monkeypatch, ledger):
    items, tasks = pushed
    for item in items:
        annotate(studio, tasks[item.key], "bird")
    listing = studio.get_json
    stopped = []

    def list_then_stop_the_server(*args, **kwargs):
        answer = listing(*args, **kwargs)
        if not stopped:  # after the first listing: the server goes away mid-sync
            stopped.append(server.stop(studio_server.data_dir))
        return answer

    monkeypatch.setattr(studio, "get_json", list_then_stop_the_server)
    try:
        with pytest.raises(StudioUnreachable) as caught:
            sync_annotations(studio, store, project)
    finally:
        studio_server.restart()
    assert stopped == [True]
    text = str(caught.value)
    assert "cannot reach" in text and studio_server.token not in text
    assert store.current_labels() == {} and load_cursor(store, project.id) == {}

    report = sync_annotations(connect(studio_server.url, studio_server.token), store, project)
    ledger.fault("server stopped during a sync, then restarted",
                 outcome="stopped with a message; next sync completed",
                 lost_labels=len(items) - len(store.current_labels()), duplicate_tasks=0)
    assert sorted(report.labeled) == sorted(i.key for i in items)
    assert {lab.label for lab in store.current_labels().values()} == {"bird"}


def test_answers_on_tasks_whose_files_were_swapped_on_disk_label_nothing(studio, store,
                                                                         project, pushed):
    # Two files swapped while their tasks waited: each task showed the other's picture, and
    # the answers became the wrong items' labels, exported as people's with a 0% bound.
    items, tasks = pushed
    a, b = Path(items[0].path), Path(items[1].path)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    annotate(studio, tasks[items[0].key], "dog")
    annotate(studio, tasks[items[1].key], "bird")
    report = sync_annotations(studio, store, project)
    reasons = {r.item_key: r.reason for r in report.rejected}
    assert "now holds another image" in reasons[items[0].key]
    assert "now holds another image" in reasons[items[1].key]
    assert store.current_labels() == {}
    a.write_bytes(a_bytes)  # put back, then answered again: it counts
    b.write_bytes(b_bytes)
    annotate(studio, tasks[items[0].key], "cat")
    sync_annotations(studio, store, project)
    assert store.current_labels()[items[0].key].label == "cat"


def test_a_task_whose_image_was_edited_in_label_studio_does_not_label_its_item(
        studio, store, project, pushed, ledger):
    """Answers on a task that now shows another picture, or a file outside the image folder,
    are about something else: rejected with the reason, and a label synced earlier is
    retracted; putting the image back makes them count again."""
    items, tasks = pushed
    swapped, outside = tasks[items[0].key], tasks[items[1].key]
    own_image = project.images.url_for(items[0].path)
    annotate(studio, swapped, "dog")
    annotate(studio, outside, "bird")
    sync_annotations(studio, store, project)
    assert store.current_labels()[items[0].key].label == "dog"

    with studio.errors("editing tasks"):
        studio.client.tasks.update(id=swapped, data={
            "image": project.images.url_for(items[2].path), "item_key": items[0].key})
        studio.client.tasks.update(id=outside, data={
            "image": "/data/local-files/?d=../../../etc/hostname", "item_key": items[1].key})
    report = sync_annotations(studio, store, project)
    reasons = {r.task_id: r.reason for r in report.rejected}
    for task_id in (swapped, outside):
        ledger.bad_input("task image edited in Label Studio",
                         outcome=f"rejected: {reasons.get(task_id, 'NOT REJECTED')}")
    assert "not item" in reasons[swapped] and items[2].path in reasons[swapped]
    assert "outside the image folder" in reasons[outside]
    assert sorted(report.retracted) == sorted([items[0].key, items[1].key])
    assert store.current_labels() == {}

    with studio.errors("restoring a task"):
        studio.client.tasks.update(id=swapped, data={"image": own_image,
                                                     "item_key": items[0].key})
    report = sync_annotations(studio, store, project)
    assert report.labeled == [items[0].key]
    assert {k: v.label for k, v in store.current_labels().items()} == {items[0].key: "dog"}
