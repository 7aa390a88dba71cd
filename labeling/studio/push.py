"""Send items to annotators as Label Studio tasks carrying the model's pre-annotation.

Idempotent by the item key in ``data.item_key``: before importing, the project's tasks are
listed, and only items without a task are sent. A push killed half-way (or an import whose
answer timed out while the server finished it) is therefore repaired by running it again; the
store's task table is reconciled from the listing, since the server is the truth about what
exists. Imports go in large batches with the SDK's retries off: a retried POST whose first try
succeeded would duplicate tasks.

Everything is validated before the first request: a prediction naming an unknown class, a bad
score or an image outside the served folder raises and nothing is sent.

Items in S3 go with presigned URLs (``labeling.studio.project``), which expire; ``resign_images``
gives the tasks whose URL is close to expiring a fresh one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from labeling.store import LabelStore
from labeling.studio.connection import Studio
from labeling.studio.errors import InvalidPrediction, StudioError
from labeling.studio.project import StudioProject
from labeling.studio.remote import item_key_of, iter_tasks, iter_tasks_by_id, tasks_by_key
from labeling.tasks.base import IMAGE_NAME

BATCH_SIZE = 1000
IMPORT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PushItem:
    """One item to send: its key, its image (absolute path or http(s) URL) and, optionally,
    the model's prediction (a value of the project's task type: the class, or the boxes) with
    its score (0..1: the probability of that class, or the image's confidence)."""

    key: str
    path: str
    label: Any = None
    score: float | None = None


@dataclass(frozen=True)
class PushResult:
    """Item key -> task id: ``created`` by this push, ``existing`` already in the project.
    ``duplicates``: keys the project holds in several tasks (made outside labelloop).
    ``predictions_dropped``: predictions sent with new tasks that Label Studio did not keep
    (``refresh_predictions`` sends them again)."""

    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    predictions_dropped: int = 0


@dataclass(frozen=True)
class RefreshResult:
    """What ``refresh_predictions`` did to the project's pending tasks."""

    model_version: str
    updated: int = 0
    already_current: int = 0
    without_prediction: int = 0


def push_tasks(
    studio: Studio,
    store: LabelStore,
    project: StudioProject,
    items: Sequence[PushItem],
    *,
    model_version: str = "",
    round_id: int | None = None,
    batch_size: int = BATCH_SIZE,
    timeout: float = IMPORT_TIMEOUT_S,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Create one task per item that the project does not hold yet, with its prediction.

    Task ids are recorded in ``store`` (``record_tasks``). ``progress(sent, to_send)`` is called
    after each batch has landed in Label Studio. When predictions were sent, the project's
    ``model_version`` is set to ``model_version``, so annotators see them (Label Studio shows
    only predictions of the project's version; ``refresh_predictions`` brings older pending
    tasks up to date).
    """
    if not model_version and any(item.label is not None for item in items):
        raise InvalidPrediction("model_version must not be empty with predictions: Label "
                                "Studio shows only predictions whose version is the project's")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    payloads = _validated_tasks(store, project, items, model_version)
    held, duplicates = tasks_by_key(studio, project.id)
    existing = {key: held[key] for key in payloads if key in held}
    known = store.tasks(project.id)
    # Tasks a killed push created but did not record (or the store lost): the server is right.
    unrecorded = {key: tid for key, tid in existing.items() if known.get(key) != tid}
    if unrecorded:
        store.record_tasks(project.id, unrecorded, round_id=round_id)
    # Held in the store too: a task people made by hand and the pool adopted has no item key
    # in its data (labelloop leaves their tasks as they are), but it is that item's task.
    todo = [key for key in payloads if key not in held and key not in known]
    created: dict[str, int] = {}
    sent = dropped = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        tasks = [payloads[k] for k in batch]
        task_ids, kept = _import_batch(studio, project, tasks, timeout=timeout)
        if progress is not None:
            progress(start + len(batch), len(todo))
        mapped = _map_back(studio, project, task_ids, batch)
        store.record_tasks(project.id, mapped, round_id=round_id,
                           model_version=model_version or None)
        created.update(mapped)
        with_prediction = sum(1 for t in tasks if "predictions" in t)
        sent += with_prediction
        dropped += with_prediction - kept if kept is not None else 0
    # Label Studio accepts a project version only once predictions of it exist. It may keep
    # the tasks of an import and drop their predictions (a prediction it fails to validate
    # drops all of them, and the answer is still 201): then the version would be refused.
    if sent > dropped:
        set_model_version(studio, project, model_version)
    return PushResult(created=created, existing=existing, duplicates=duplicates,
                      predictions_dropped=dropped)


def refresh_predictions(
    studio: Studio,
    store: LabelStore,
    project: StudioProject,
    predictions: Mapping[str, tuple[str, float]],
    *,
    model_version: str,
    batch_size: int = BATCH_SIZE,
    timeout: float = IMPORT_TIMEOUT_S,
) -> RefreshResult:
    """Give the project's pending tasks (no submitted annotation; skipped ones included, as
    someone else may still answer them) the new model's predictions (item key -> (label,
    score)), then switch the project to ``model_version``.

    Tasks that already carry a prediction of ``model_version`` are left alone, so a re-run
    after a failure adds nothing twice. Pending tasks without an entry in ``predictions`` are
    counted in ``without_prediction`` (annotators see no pre-annotation on them).
    """
    if not model_version:
        raise InvalidPrediction("model_version must not be empty")
    _check_predictions(project, ((k, lab, s) for k, (lab, s) in predictions.items()))
    pending = iter_tasks(studio, project.id, all_fields=True,
                         include="id,data,total_annotations,predictions_model_versions")
    todo: list[tuple[str, int]] = []
    current = missing = 0
    for task in pending:
        key = item_key_of(task)
        if key is None or int(task.get("total_annotations") or 0) > 0:
            continue
        versions = str(task.get("predictions_model_versions") or "").split(",")
        if model_version in (v.strip() for v in versions):
            current += 1
        elif key in predictions:
            todo.append((key, int(task["id"])))
        else:
            missing += 1
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        request = [{"task": tid, "model_version": model_version, "score": predictions[key][1],
                    "result": project.task.prediction_result(predictions[key][0])}
                   for key, tid in batch]
        with studio.errors(f"importing {len(batch)} predictions into project {project.id}"):
            studio.client.projects.import_predictions(
                id=project.id, request=request,
                request_options={"max_retries": 0, "timeout_in_seconds": timeout})
        store.record_tasks(project.id, dict(batch), model_version=model_version)
    # Switched last: until every pending task has the new prediction, the old ones show.
    # (Label Studio refuses a version that no prediction carries: nothing pending, no switch.)
    if todo or current:
        set_model_version(studio, project, model_version)
    return RefreshResult(model_version=model_version, updated=len(todo),
                         already_current=current, without_prediction=missing)


def resign_images(studio: Studio, project: StudioProject, paths: Mapping[str, str], *,
                  within_s: float, now: float | None = None) -> int:
    """Give every task of an S3 item (item key -> path in ``paths``) whose presigned image URL
    expires within ``within_s`` seconds a freshly signed one; returns how many were updated.

    A task whose image URL is not a signed URL of its item (edited in Label Studio) is left
    as it is: the sync reports it. Answered tasks are re-signed too, so reviews show images.
    """
    images = project.images
    if images.sign is None:
        return 0
    now = time.time() if now is None else now
    todo: list[tuple[int, dict, str]] = []
    for task in iter_tasks(studio, project.id, include="id,data", all_fields=True):
        key = item_key_of(task)
        path = paths.get(key) if key else None
        data = task.get("data") or {}
        url = data.get(IMAGE_NAME)
        # The expiry first: it reads the URL, where signed_for signs the path again.
        if path is None or not isinstance(url, str) or _expires_at(url) - now > within_s:
            continue
        if not images.signed_for(url, path):
            continue
        todo.append((int(task["id"]), dict(data), path))
    for task_id, data, path in todo:
        data[IMAGE_NAME] = images.url_for(path)
        with studio.errors(f"re-signing the image URL of task {task_id}"):
            studio.client.tasks.update(id=task_id, data=data)
    return len(todo)


def _expires_at(url: str) -> float:
    """When a presigned URL expires (seconds since the epoch); 0 if it does not say (SigV4's
    ``X-Amz-Date`` and ``X-Amz-Expires``, or SigV2's ``Expires``)."""
    query = parse_qs(urlsplit(url).query)
    try:
        if "X-Amz-Date" in query:
            signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            return signed.replace(tzinfo=UTC).timestamp() + int(query["X-Amz-Expires"][0])
        return float(query["Expires"][0])
    except (KeyError, ValueError, IndexError):
        return 0.0


def set_model_version(studio: Studio, project: StudioProject, model_version: str) -> None:
    """Make ``model_version`` the project's: the predictions Label Studio shows annotators."""
    found = studio.get_json(f"api/projects/{project.id}", {"include": "id,model_version"},
                            action=f"reading project {project.id}")
    if found.get("model_version") != model_version:
        with studio.errors(f"setting the model version of project {project.id}"):
            studio.client.projects.update(id=project.id, model_version=model_version)


def _validated_tasks(store: LabelStore, project: StudioProject, items: Sequence[PushItem],
                     model_version: str) -> dict[str, dict]:
    """Item key -> task JSON, for every item; raises before anything is sent."""
    _check_predictions(project, ((i.key, i.label, i.score) for i in items if i.label is not None))
    tasks: dict[str, dict] = {}
    for item in items:
        if item.key in tasks:
            raise InvalidPrediction(f"item {item.key} is in the batch twice; push each item once")
        task: dict = {"data": {IMAGE_NAME: project.images.url_for(item.path),
                               "item_key": item.key}}
        if item.label is not None:
            task["predictions"] = [{"model_version": model_version, "score": item.score,
                                    "result": project.task.prediction_result(item.label)}]
        tasks[item.key] = task
    unknown = set(tasks) - store.existing_keys(tasks)
    if unknown:
        raise InvalidPrediction(f"{len(unknown)} item(s) are not in the label store (e.g. "
                                f"{sorted(unknown)[0]}); ingest the images first")
    return tasks


def _check_predictions(project: StudioProject, predictions) -> None:
    """A pre-annotation is checked as an answer of the same task type would be (a class of
    the project; for boxes: known labels, inside the image, of some size), so Label Studio
    is never sent one that its labeling config, or labelloop's sync, would not take."""
    task = project.task
    for key, label, score in predictions:
        why = task.rejection(task.answer_values(task.prediction_result(label)), project.classes)
        if why is not None:
            raise InvalidPrediction(f"the prediction for item {key} does not fit Label Studio "
                                    f"project {project.title!r}: {why}; nothing was sent")
        if score is not None and not (isinstance(score, int | float) and math.isfinite(score)
                                      and 0.0 <= score <= 1.0):
            raise InvalidPrediction(f"prediction score {score!r} for item {key} must be a "
                                    f"probability in [0, 1]; nothing was sent")


def _import_batch(studio: Studio, project: StudioProject, tasks: list[dict], *,
                  timeout: float) -> tuple[list[int], int | None]:
    """The ids of the tasks created, in order, and how many predictions Label Studio kept
    (None if it did not say)."""
    with studio.errors(f"importing {len(tasks)} tasks into project {project.id} (re-running "
                       f"the push is safe: it skips tasks that arrived)"):
        response = studio.client.projects.import_tasks(
            id=project.id, request=tasks, return_task_ids=True,
            request_options={"max_retries": 0, "timeout_in_seconds": timeout})
    task_ids = list(response.task_ids or [])
    if len(task_ids) != len(tasks):
        raise StudioError(f"Label Studio created {len(task_ids)} tasks for {len(tasks)} sent to "
                          f"project {project.id}; run the push again to reconcile")
    # The server answers "prediction_count"; the SDK's model names it "predictions_count".
    kept = getattr(response, "prediction_count", None)
    if kept is None:
        kept = response.predictions_count
    return task_ids, None if kept is None else int(kept)


def _map_back(studio: Studio, project: StudioProject, task_ids: list[int],
              keys: list[str]) -> dict[str, int]:
    """Item key -> task id for a batch just imported.

    Label Studio creates a batch's tasks in the order sent and answers their ids in that order
    (it attaches each task's predictions by that same position). The pairing is checked by
    reading back, by item key, the first and last task of the batch; if either disagrees, the
    whole batch is read back by key (ids are global and need not be consecutive).
    """
    paired = dict(zip(keys, (int(t) for t in task_ids), strict=True))
    ends = {task_ids[0]: keys[0], task_ids[-1]: keys[-1]}
    seen = {int(t["id"]): item_key_of(t)
            for t in iter_tasks_by_id(studio, project.id, ends, include="id,data")}
    if seen == ends:
        return paired
    mapped = {}
    for task in iter_tasks_by_id(studio, project.id, task_ids, include="id,data"):
        key = item_key_of(task)
        if key is not None:
            mapped[key] = int(task["id"])
    lost = set(keys) - mapped.keys()
    if lost:
        raise StudioError(f"{len(lost)} task(s) just imported into project {project.id} are not "
                          f"listed back (deleted meanwhile?); run the push again")
    return {key: mapped[key] for key in keys}
