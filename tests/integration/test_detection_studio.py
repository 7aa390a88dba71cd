"""Boxes through a real Label Studio: pre-annotations pushed as rectangles, people's edits
(moved, added, deleted boxes) synced back in pixels, answers that cannot be right refused
with the reason while everything else is kept, and second opinions where people's boxes and
the model's differ."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from PIL import Image

from labeling.boxes_file import ImageBoxes
from labeling.selections import Pick, record_picks
from labeling.store import NewItem
from labeling.studio.box_annotator_sim import simulate_box_crowd
from labeling.studio.errors import InvalidPrediction
from labeling.studio.opinions import (
    asked_overlaps,
    boxes_differ,
    boxes_text,
    current_votes,
    disagreed,
    human_answers,
    plan,
    request_opinions,
)
from labeling.studio.push import PushItem, push_tasks
from labeling.studio.remote import iter_tasks_by_id
from labeling.studio.sync import sync_annotations
from labeling.tasks.registry import get_task_type

pytestmark = pytest.mark.integration
TASK = get_task_type("detection")
CLASSES = ("cat", "dog")
W, H = 160, 120
_folders = itertools.count()


@pytest.fixture
def boxes_project(new_project):
    return new_project(CLASSES, task=TASK)


@pytest.fixture
def photos(studio_server, store, request):
    """Three distinct 160 x 120 PNGs in the served folder, in the store."""
    folder = studio_server.images_dir / f"det-{next(_folders)}-{request.node.name[:40]}"
    folder.mkdir(parents=True)
    items = []
    for i in range(3):
        seed = int.from_bytes(hashlib.sha256(f"{folder.name}/{i}".encode()).digest()[:4], "big")
        pixels = np.random.default_rng(seed).integers(0, 255, (H, W), dtype=np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(NewItem(key=key, path=str(path.resolve()), size_bytes=path.stat().st_size,
                             width=W, height=H))
    store.add_items(items)
    return items


def boxes(*rows):
    return {"width": W, "height": H,
            "boxes": [{"label": lab, "x": x, "y": y, "w": w, "h": h} for lab, x, y, w, h in rows]}


def answer(studio, task_id, value):
    with studio.errors("annotating"):
        return studio.client.annotations.create(id=task_id, result=TASK.prediction_result(value),
                                                lead_time=4.0).id


def test_boxes_round_trip_and_edits_are_what_the_store_holds(studio, store, boxes_project,
                                                             photos):
    shown = boxes(("cat", 16, 12, 48, 36), ("dog", 90, 40, 40, 60))
    result = push_tasks(studio, store, boxes_project,
                        [PushItem(p.key, p.path, shown, 0.7) for p in photos], model_version="m1")
    tasks = result.created
    [task] = iter_tasks_by_id(studio, boxes_project.id, [tasks[photos[0].key]], all_fields=True)
    [prediction] = task["predictions"]
    region = prediction["result"][0]
    assert region["type"] == "rectanglelabels" and region["original_width"] == W
    assert region["value"]["x"] == pytest.approx(10.0)  # 16 of 160 px, in percent

    kept = answer(studio, tasks[photos[0].key], shown)
    # Moved the cat, deleted the dog, added a second cat.
    edited = boxes(("cat", 30, 20, 48, 36), ("cat", 110, 70, 30, 30))
    answer(studio, tasks[photos[1].key], edited)
    answer(studio, tasks[photos[2].key], boxes())  # nothing here
    report = sync_annotations(studio, store, boxes_project)
    assert sorted(report.labeled) == sorted(p.key for p in photos) and not report.rejected
    labels = store.current_labels()
    same = labels[photos[0].key]
    assert same.value == shown and same.label == "cat dog"
    assert same.extra["changed_prediction"] is False and same.extra["annotation_ids"] == [kept]
    assert same.extra["predicted_value"] == shown
    moved = labels[photos[1].key]
    assert moved.value == edited and moved.label == "cat cat"
    assert moved.extra["changed_prediction"] is True
    empty = labels[photos[2].key]
    assert (empty.label, empty.value) == ("nothing", {"boxes": [], "width": W, "height": H})


@pytest.mark.parametrize("bad, why", [
    (boxes(("cat", 150, 10, 40, 40)), "outside the 160 x 120 image"),
    (boxes(("cat", 10, 10, 0.1, 40)), "too small"),
    (boxes(("horse", 10, 10, 40, 40)), "not a class of the project"),
    # An answer that claims a larger image: its box fits that one, not the item's.
    ({**boxes(("cat", 171, 105, 69, 75)), "width": 333, "height": 480},
     "a box on a 333 x 480 image (original_width, original_height); the item's image is "
     "160 x 120"),
])
def test_a_wrong_answer_is_refused_with_the_reason_and_nothing_else_lost(
        studio, store, boxes_project, photos, bad, why):
    tasks = push_tasks(studio, store, boxes_project,
                       [PushItem(p.key, p.path) for p in photos], model_version="m1").created
    answer(studio, tasks[photos[0].key], boxes(("dog", 10, 10, 40, 40)))
    with studio.errors("annotating"):
        studio.client.annotations.create(id=tasks[photos[1].key],
                                         result=TASK.prediction_result(bad))
    report = sync_annotations(studio, store, boxes_project)
    assert report.labeled == [photos[0].key]
    [refused] = report.rejected
    assert refused.task_id == tasks[photos[1].key] and why in refused.reason
    assert photos[1].key not in store.current_labels()


def test_a_result_from_another_element_is_refused(studio, store, boxes_project, photos):
    tasks = push_tasks(studio, store, boxes_project,
                       [PushItem(p.key, p.path) for p in photos[:1]], model_version="m1").created
    region = dict(TASK.prediction_result(boxes(("cat", 10, 10, 40, 40)))[0], from_name="other")
    with studio.errors("annotating"):
        studio.client.annotations.create(id=tasks[photos[0].key], result=[region])
    report = sync_annotations(studio, store, boxes_project)
    assert report.labeled == []
    [refused] = report.rejected
    assert "not a box of labelloop's element" in refused.reason


def test_a_pre_annotation_outside_the_image_is_refused_before_sending(studio, store,
                                                                     boxes_project, photos):
    bad = boxes(("cat", 150, 10, 40, 40))
    with pytest.raises(InvalidPrediction, match="outside the 160 x 120 image"):
        push_tasks(studio, store, boxes_project,
                   [PushItem(photos[0].key, photos[0].path, boxes()),
                    PushItem(photos[1].key, photos[1].path, bad, 0.5)], model_version="m1")
    assert store.tasks(boxes_project.id) == {}


def test_boxes_that_miss_the_models_go_to_another_person_and_a_majority_decides(
        studio, store, boxes_project, photos, accounts):
    """Second opinions for boxes: a held-out image whose first person's boxes do not get it
    right against the model's goes to a different account; two who agree make the label; two
    who differ get a third."""
    record_picks(store, [Pick(p.key, "random", holdout=True) for p in photos], round_id=None)
    model = boxes(("cat", 16, 12, 48, 36))
    push_tasks(studio, store, boxes_project, [PushItem(p.key, p.path, model, 0.7)
                                              for p in photos], model_version="m1")
    tasks = store.tasks(boxes_project.id)
    moved, jittered, relabeled = (p.key for p in photos)
    (a, ca), (b, cb), (c, cc) = accounts(3)
    answer(ca, tasks[moved], boxes(("cat", 96, 70, 48, 36)))  # IoU 0 with the model's
    answer(ca, tasks[jittered], boxes(("cat", 18, 13, 47, 35)))  # the same object
    answer(ca, tasks[relabeled], boxes(("dog", 16, 12, 48, 36)))  # another class
    held, machine = {p.key for p in photos}, dict.fromkeys(tasks, model)

    def ask() -> dict[str, int]:
        sync_annotations(studio, store, boxes_project)
        requests = plan(current_votes(store, boxes_project.id, values=True), machine, held,
                        tasks, asked_overlaps(store, boxes_project.id),
                        differs=boxes_differ, describe=boxes_text)
        request_opinions(studio, store, boxes_project, requests)
        return {r.key: r.overlap for r in requests}

    assert ask() == {moved: 2, relabeled: 2}
    assert studio.client.tasks.get(id=tasks[moved]).overlap == 2
    assert studio.client.tasks.get(id=tasks[jittered]).overlap == 1
    assert ask() == {}  # nothing is asked twice
    answer(cb, tasks[moved], boxes(("cat", 97, 71, 47, 36)))  # agrees with the first person
    answer(cb, tasks[relabeled], model)  # sides with the model: a tie
    assert ask() == {relabeled: 3}
    labels = store.current_labels()
    [box] = labels[moved].value["boxes"]
    assert (box["label"], round(box["x"])) == ("cat", 96)  # the two people's box, not the model's
    assert relabeled not in labels  # a tie is no label
    answer(cc, tasks[relabeled], boxes(("dog", 17, 12, 48, 36)))
    assert ask() == {}
    assert store.current_labels()[relabeled].value["boxes"][0]["label"] == "dog"  # 2 of 3
    assert human_answers(store) == 6


def test_two_people_boxing_one_class_in_different_places_disagree(studio, store,
                                                                    boxes_project, photos,
                                                                    accounts):
    # The certificate's check compared the answers' text, which lists the classes only: two
    # cats in different places read as agreement, and "people are right" stood.
    push_tasks(studio, store, boxes_project, [PushItem(photos[0].key, photos[0].path, None,
                                                       None)], model_version="m1")
    task = store.tasks(boxes_project.id)[photos[0].key]
    (_, ca), (_, cb) = accounts(2)
    answer(ca, task, boxes(("cat", 16, 12, 48, 36)))
    answer(cb, task, boxes(("cat", 96, 70, 48, 36)))
    sync_annotations(studio, store, boxes_project)
    assert disagreed(store, boxes=True) == (1, 1)
    assert disagreed(store) == (0, 1)  # as text: "cat" and "cat"


def test_the_simulated_box_crowd_fills_each_task_up_to_its_overlap(studio, store, boxes_project,
                                                                   photos, accounts):
    push_tasks(studio, store, boxes_project, [PushItem(p.key, p.path, None, None)
                                              for p in photos[:2]], model_version="m1")
    tasks = store.tasks(boxes_project.id)
    raised, single = (tasks[p.key] for p in photos[:2])
    studio.client.tasks.update(id=raised, overlap=2, is_labeled=False)
    people = [(a.user_id, conn) for a, conn in accounts(2)]
    truth = {p.key: ImageBoxes(W, H, [{"label": "cat", "x": 16, "y": 12, "w": 48, "h": 36}])
             for p in photos[:2]}
    done = simulate_box_crowd(people, boxes_project, truth, fault_rate=0.0, skip=0.0, seed=3)
    assert (done.answered, done.right, done.no_truth) == (3, 3, 0)
    by = {t: sorted(x.completed_by for x in studio.client.annotations.list(id=t))
          for t in (raised, single)}
    assert by[raised] == sorted(u for u, _ in people)  # two different people, not one twice
    assert len(by[single]) == 1
    again = simulate_box_crowd(people, boxes_project, truth, fault_rate=0.0, skip=0.0, seed=4)
    assert again.answered == 0  # every task has what its overlap asks
