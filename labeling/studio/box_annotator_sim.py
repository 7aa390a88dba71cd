"""A simulated crowd drawing boxes: works through a detection project's pending tasks through
the real API, answering from a ``boxes.json`` answer key with the faults people make
(``labeling.box_faults``), some skips, and, where a task shows the model's boxes, keeping them
as they are at ``keep_rate`` (right or wrong), as a hurried person does. One person
(``simulate_box_annotations``) answers what nobody answered; several (``simulate_box_crowd``)
fill each task up to its overlap, each person at most once per task.

Files are matched to tasks by content (the item key is the SHA-256 of the file). Annotations
are created one request each and never retried: a re-run continues with what is still pending.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

import numpy as np

from labeling.box_faults import answer_with_pre_annotation, simulate_box_answer_with_faults
from labeling.boxes import image_matches
from labeling.boxes_file import ImageBoxes, read_boxes_json
from labeling.studio.annotator_sim import LEAD_TIME_S
from labeling.studio.connection import Studio
from labeling.studio.crowd import TASK_FIELDS, still_to_answer
from labeling.studio.errors import StudioError
from labeling.studio.project import StudioProject
from labeling.studio.remote import item_key_of, iter_tasks, pending_tasks


@dataclass(frozen=True)
class BoxSimReport:
    """What the simulated crowd did. ``right``/``wrong``: answers against the truth (an image
    is right when every object is matched at IoU >= 0.5 with its class and no box is extra);
    ``kept_shown``: answers that kept the model's boxes unchanged; ``faults``: kind -> count."""

    answered: int = 0
    right: int = 0
    wrong: int = 0
    skipped: int = 0
    kept_shown: int = 0
    no_truth: int = 0
    pending_left: int = 0
    faults: dict | None = None


def load_box_truth(boxes_json: Path) -> dict[str, ImageBoxes]:
    """Item key (``sha256:<hex>`` of the file) -> its true boxes, from a ``boxes.json``."""
    read = read_boxes_json(boxes_json)
    truth = {}
    for path, image in read.images.items():
        with Path(path).open("rb") as f:
            truth["sha256:" + hashlib.file_digest(f, "sha256").hexdigest()] = image
    return truth


def simulate_box_annotations(
    studio: Studio,
    project: StudioProject,
    truth: Mapping[str, ImageBoxes],
    *,
    fault_rate: float = 0.05,
    skip: float = 0.02,
    keep_rate: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BoxSimReport:
    """Answer up to ``limit`` pending tasks (no annotation, no skip), oldest first."""
    _check(project, truth, fault_rate, skip, keep_rate)
    rng = np.random.default_rng(seed)
    pending = pending_tasks(studio, project.id, fields="predictions")
    answerable = [(tid, key, t) for tid, key, t in pending if key in truth]
    chosen = answerable if limit is None else answerable[:limit]
    counts = dict.fromkeys(("answered", "right", "wrong", "skipped", "kept_shown"), 0)
    faults: dict[str, int] = {}
    for done, (tid, key, task) in enumerate(chosen, start=1):
        _answer_task(studio, project, tid, truth[key], task, rng, counts, faults,
                     fault_rate=fault_rate, skip=skip, keep_rate=keep_rate)
        if progress is not None:
            progress(done, len(chosen))
    return BoxSimReport(**counts, no_truth=len(pending) - len(answerable),
                        pending_left=len(answerable) - len(chosen), faults=faults)


def simulate_box_crowd(
    people: Sequence[tuple[int, Studio]],
    project: StudioProject,
    truth: Mapping[str, ImageBoxes],
    *,
    fault_rate: float = 0.05,
    skip: float = 0.02,
    keep_rate: float = 0.0,
    seed: int = 0,
) -> BoxSimReport:
    """Several people drawing boxes, each through their own connection (``(user id,
    connection)``): every task gets answers up to its overlap, each from a person who has not
    answered it yet, so a task whose overlap labelloop raised for a second opinion goes to a
    different person. Each answer has the faults ``simulate_box_annotations``'s have."""
    _check(project, truth, fault_rate, skip, keep_rate)
    rng = np.random.default_rng(seed)
    tasks = sorted(iter_tasks(people[0][1], project.id, all_fields=True, include=TASK_FIELDS),
                   key=lambda t: int(t["id"]))
    counts = dict.fromkeys(("answered", "right", "wrong", "skipped", "kept_shown"), 0)
    faults: dict[str, int] = {}
    no_truth = 0
    for task in tasks:
        key = item_key_of(task)
        if key not in truth:
            no_truth += 1
            continue
        for _, studio in still_to_answer(task, people, itemgetter(0), rng):
            _answer_task(studio, project, int(task["id"]), truth[key], task, rng, counts,
                         faults, fault_rate=fault_rate, skip=skip, keep_rate=keep_rate)
    return BoxSimReport(**counts, no_truth=no_truth, faults=faults)


def _check(project: StudioProject, truth: Mapping[str, ImageBoxes], *rates: float) -> None:
    if not all(0.0 <= p <= 1.0 for p in rates):
        raise ValueError(f"fault_rate, skip and keep_rate are probabilities in [0, 1], got "
                         f"{', '.join(map(str, rates))}")
    unknown = sorted({b["label"] for t in truth.values() for b in t.boxes} - set(project.classes))
    if unknown:
        raise StudioError(f"the answer key has labels that are not classes of the project: "
                          f"{', '.join(unknown[:5])}; valid: {', '.join(project.classes)}")


def _answer_task(studio: Studio, project: StudioProject, tid: int, image: ImageBoxes, task: dict,
                 rng, counts: dict, faults: dict, *, fault_rate: float, skip: float,
                 keep_rate: float) -> None:
    """One person's answer to one task (a skip, or boxes with faults), counted."""
    lead = float(rng.uniform(*LEAD_TIME_S))
    if rng.random() < skip:
        with studio.errors(f"skipping task {tid}"):
            studio.client.annotations.create(id=tid, result=[], was_cancelled=True,
                                             lead_time=lead)
        counts["skipped"] += 1
        return
    answer = _answer(project, image, task, rng, fault_rate=fault_rate, keep_rate=keep_rate)
    value = {"width": image.width, "height": image.height, "boxes": answer.boxes}
    with studio.errors(f"annotating task {tid}"):
        studio.client.annotations.create(
            id=tid, result=project.task.prediction_result(value), lead_time=lead)
    counts["answered"] += 1
    counts["right" if image_matches(image.boxes, answer.boxes) else "wrong"] += 1
    counts["kept_shown"] += answer.kept_pre_annotation
    for fault in answer.faults:
        faults[fault.kind] = faults.get(fault.kind, 0) + 1


def _answer(project: StudioProject, image: ImageBoxes, task: dict, rng, *, fault_rate: float,
            keep_rate: float):
    options = {"classes": project.classes, "clutter": image.clutter}
    shown = _shown_boxes(project, task)
    if shown is None:  # a blind task, or one without a pre-annotation: drawn from scratch
        return simulate_box_answer_with_faults(image.boxes, image.width, image.height, rng=rng,
                                               fault_rate=fault_rate, **options)
    return answer_with_pre_annotation(image.boxes, shown, image.width, image.height, rng=rng,
                                      keep_rate=keep_rate, fault_rate=fault_rate, **options)


def _shown_boxes(project: StudioProject, task: dict) -> list[dict] | None:
    predictions = task.get("predictions") or []
    if not predictions:
        return None
    newest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id", 0)))
    boxes = project.task.answer_values(newest.get("result") or [])
    if project.task.rejection(boxes, project.classes) is not None:
        return None
    return [{k: b[k] for k in ("label", "x", "y", "w", "h")} for b in boxes]
