"""The push step: picked items without a task go to Label Studio with the champion's
predictions; pending tasks' predictions are brought up to the champion's version. Blind items
(held-out references and the blind check, ``pipeline.round.blind``) go without one, and so do
items the champion is unsure of (``[loop] preannotate_min_confidence``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labeling.schema import PEOPLE_SOURCES
from labeling.seen_files import unusable_items
from labeling.selections import picks
from labeling.studio.push import PushItem, push_tasks, refresh_predictions, resign_images
from pipeline.project.project import Project
from pipeline.round.blind import blind_keys
from pipeline.round.predict import load_predictions
from pipeline.round.session import model_version_name, session


def pre_annotations(project: Project, predicted: dict) -> dict[str, tuple[Any, float]]:
    """Item key -> (predicted class, its probability) from the predict step's file."""
    if "file" not in predicted:
        return {}
    keys, probs, _ = load_predictions(predicted["file"])
    classes = project.classes
    # Whole-array argmax and max: one per row in Python took seconds at 1,000,000 items.
    best, score = probs.argmax(axis=1).tolist(), probs.max(axis=1).tolist()
    return {k: (classes[b], s) for k, b, s in zip(keys, best, score, strict=True)}


def unsure(project: Project, predictions: dict[str, tuple[Any, float]], keys) -> set[str]:
    """The keys whose prediction scores under ``[loop] preannotate_min_confidence``: their
    tasks go without a pre-annotation, as blind ones do."""
    floor = project.config.loop.preannotate_min_confidence
    if floor <= 0:
        return set()
    return {k for k in keys if k in predictions and predictions[k][1] < floor}


def image_problem(sp, unusable: dict[str, str], key: str, path: str) -> str | None:
    """Why item ``key``'s image cannot be shown to people now, or None: its file now holds
    another image, was gone or broken at the last ingest (``unusable``: ``unusable_items``),
    or ``sp.images.problem`` (gone now, outside the image folder)."""
    if key in unusable:
        return (f"item {path}: {unusable[key]}; put this item's image back under that name "
                f"(its labels are kept)")
    return sp.images.problem(path)


def push(project: Project, round_id: int, predicted: dict, *,
         load: Callable[[Project, dict], dict[str, tuple[Any, float]]] = pre_annotations) -> dict:
    """Send picked items that have no task yet, with the champion's predictions (``load``:
    item key -> (value, score), per task type); bring pending tasks' predictions up to the
    champion's version. Tasks of S3 items whose presigned image URL has less than half of
    ``[studio] s3_url_expiry_s`` left get a fresh one."""
    studio, sp = session(project)
    store = project.store
    version = predicted.get("version")
    predictions = load(project, predicted)
    human = store.current_classes(sources=PEOPLE_SOURCES)
    held = store.tasks(sp.id)
    todo = [k for k in picks(store) if k not in held and k not in human]
    paths = {k: i.path for k, i in store.items_by_key(todo).items()}
    # An image people cannot be shown (its file gone or outside the image folder, or holding
    # another image now) stays picked and waits, reported, instead of stopping the round or
    # making a broken task, or one whose answer would be about the other image.
    unusable = unusable_items(store)
    problems = {k: why for k in todo if (why := image_problem(sp, unusable, k, paths[k]))}
    todo = [k for k in todo if k not in problems]
    blind_new = blind_keys(project, todo) | unsure(project, predictions, todo)
    items = [PushItem(k, paths[k], *((None, None) if k in blind_new else
                                     predictions.get(k) or (None, None))) for k in todo]
    mv = model_version_name(version) if version else ""
    result = push_tasks(studio, store, sp, items, model_version=mv, round_id=round_id)
    refreshed = 0
    if version and predictions:
        tasks = store.tasks(sp.id)
        blind = blind_keys(project, tasks) | unsure(project, predictions, tasks)
        pending = {k: predictions[k] for k in tasks
                   if k not in human and k in predictions and k not in blind}
        refreshed = refresh_predictions(studio, store, sp, pending, model_version=mv).updated
    resigned = 0
    if project.config.images_remote:
        # Every task's item, not only this push's: earlier rounds' URLs expire too.
        shown = {k: i.path for k, i in store.items_by_key(store.tasks(sp.id)).items()}
        resigned = resign_images(studio, sp, shown,
                                 within_s=project.config.studio.s3_url_expiry_s / 2)
    # Predictions Label Studio dropped from the import are among those refreshed here.
    return {"pushed": len(result.created), "already_there": len(result.existing),
            "predictions_dropped": result.predictions_dropped, "refreshed": refreshed,
            "blind": len(blind_new), "resigned": resigned,
            **({"held_back": len(problems), "held_back_why": next(iter(problems.values()))}
               if problems else {}),
            "model_version": mv or None, "project_id": sp.id}


