"""Pushing tasks with pre-annotations: idempotent, crash-safe, validated before sending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labeling.store import NewItem
from labeling.studio.errors import InvalidPrediction, StudioError
from labeling.studio.push import PushItem, push_tasks, refresh_predictions
from labeling.studio.remote import iter_tasks, tasks_by_key
from labeling.studio.sync import sync_annotations

pytestmark = pytest.mark.integration
WORKER = Path(__file__).with_name("push_worker.py")


def _push_items(items, label="cat", score=0.6):
    return [PushItem(i.key, i.path, label, score) for i in items]


def _all_tasks(studio, project):
    return list(iter_tasks(studio, project.id, all_fields=True))


def test_push_twice_gives_one_task_per_item(studio, store, project, make_items):
    items = make_items(12)
    first = push_tasks(studio, store, project, _push_items(items), model_version="m1",
                       batch_size=5)
    assert len(first.created) == 12 and not first.existing
    again = push_tasks(studio, store, project, _push_items(items), model_version="m1")
    assert not again.created and again.existing == first.created

    held, duplicates = tasks_by_key(studio, project.id)
    assert held == first.created and not duplicates
    assert store.tasks(project.id) == first.created
    task = next(t for t in _all_tasks(studio, project) if t["id"] == first.created[items[0].key])
    assert task["data"]["image"] == project.images.url_for(items[0].path)
    assert task["data"]["item_key"] == items[0].key
    [prediction] = task["predictions"]
    assert (prediction["model_version"], prediction["score"]) == ("m1", 0.6)
    assert prediction["result"][0]["value"]["choices"] == ["cat"]
    assert studio.client.projects.get(id=project.id).model_version == "m1"


def test_a_push_killed_half_way_then_run_again_gives_one_task_per_item(
        studio_server, studio, store, project, make_items, ledger):
    items = make_items(40)
    env = {**os.environ, "LABEL_STUDIO_API_KEY": studio_server.token}
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), studio.url, store.url.removeprefix("sqlite:///"),
         str(project.id), project.title, str(project.images.images_dir), "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = worker.stdout.readline()
        assert line.startswith("landed 10/40"), (line, worker.stderr.read())
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    held, _ = tasks_by_key(studio, project.id)
    assert len(held) == 10
    assert store.tasks(project.id) == {}  # killed before it could record them

    rerun = push_tasks(studio, store, project, _push_items(items, "dog", 0.5),
                       model_version="m1", batch_size=10)
    assert len(rerun.existing) == 10 and len(rerun.created) == 30
    held, duplicates = tasks_by_key(studio, project.id)
    ledger.fault("SIGKILL of a push after 1 of 4 batches", outcome="re-run completed the push",
                 lost_labels=0, duplicate_tasks=len(_all_tasks(studio, project)) - len(held))
    assert len(held) == 40 and not duplicates
    assert len(_all_tasks(studio, project)) == 40
    assert store.tasks(project.id) == held


def test_an_unknown_label_is_refused_before_anything_is_sent(studio, store, project, make_items):
    items = make_items(3)
    batch = _push_items(items[:2]) + [PushItem(items[2].key, items[2].path, "horse", 0.9)]
    with pytest.raises(InvalidPrediction) as caught:
        push_tasks(studio, store, project, batch, model_version="m1")
    assert "'horse'" in str(caught.value) and "cat, dog, bird" in str(caught.value)
    assert _all_tasks(studio, project) == []
    with pytest.raises(InvalidPrediction, match="probability"):
        push_tasks(studio, store, project, _push_items(items, score=1.5), model_version="m1")
    assert _all_tasks(studio, project) == []


def test_an_image_outside_the_served_folder_is_refused_before_sending(
        studio, store, project, tmp_path, ledger):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not really a png")
    store.add_items([NewItem("sha256:" + "0" * 64, str(outside), 16, 1, 1)])
    with pytest.raises(StudioError, match="outside the image folder") as caught:
        push_tasks(studio, store, project, [PushItem("sha256:" + "0" * 64, str(outside))],
                   model_version="m1")
    ledger.bad_input("item path outside the image folder", outcome=f"refused: {caught.value}")
    assert _all_tasks(studio, project) == []


def test_http_urls_pass_through_and_items_without_prediction_work(studio, store, project):
    url = "https://images.example.com/cat%201.png"
    store.add_items([NewItem("sha256:" + "1" * 64, url, 10, 1, 1)])
    result = push_tasks(studio, store, project, [PushItem("sha256:" + "1" * 64, url)],
                        model_version="m1")
    [task] = _all_tasks(studio, project)
    assert task["id"] == result.created["sha256:" + "1" * 64]
    assert task["data"]["image"] == url and task["predictions"] == []


def test_refresh_gives_pending_tasks_the_new_predictions_and_switches_the_version(
        studio, store, project, make_items):
    items = make_items(4)
    pushed = push_tasks(studio, store, project, _push_items(items, "cat", 0.4),
                        model_version="m1")
    done = pushed.created[items[0].key]
    with studio.errors("annotating"):
        studio.client.annotations.create(id=done, result=[
            {"from_name": "label", "to_name": "image", "type": "choices",
             "value": {"choices": ["bird"]}}], lead_time=1.0)
    new = {i.key: ("dog", 0.9) for i in items}
    result = refresh_predictions(studio, store, project, new, model_version="m2")
    assert (result.updated, result.already_current, result.without_prediction) == (3, 0, 0)
    assert studio.client.projects.get(id=project.id).model_version == "m2"
    for task in _all_tasks(studio, project):
        versions = {p["model_version"]: p for p in task["predictions"]}
        if task["id"] == done:
            assert set(versions) == {"m1"}  # what the annotator saw stays as it was
        else:
            assert versions["m2"]["result"][0]["value"]["choices"] == ["dog"]
            assert versions["m2"]["score"] == 0.9
    again = refresh_predictions(studio, store, project, new, model_version="m2")
    assert (again.updated, again.already_current) == (0, 3)
    # The annotation made on m1's pre-annotation is compared with what was shown then.
    report = sync_annotations(studio, store, project)
    assert report.labeled == [items[0].key]
    label = store.current_labels()[items[0].key]
    assert label.extra["predicted"] == "cat" and label.extra["changed_prediction"] is True
