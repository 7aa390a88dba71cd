"""Pull annotations from Label Studio into the label store as human labels, incrementally.

One sync:

1. lists every task of the project, lightly (id, item key, ``updated_at``, annotation ids);
2. compares that with the cursor kept in the store (``studio_task_sync``): only tasks whose
   ``updated_at`` or annotation ids changed are read in full (annotations and predictions);
3. decides each changed task's outcome (``consensus.decide``): labeled, skipped, disagreement
   or pending; an annotation with a label outside the class list is rejected and reported;
4. writes everything (mirror of annotations, labels, item statuses, deleted tasks, cursor) in
   one store transaction.

Reading happens before any write, so a server that goes away mid-sync raises a
``StudioUnreachable`` and leaves the store as it was: the next sync reads the same changes again.

Re-deriving a changed task from all of its current annotations is what makes the store follow
Label Studio: an annotation updated after a sync changes the label; a deleted one is no longer
counted (the last one deleted retracts the human label).

A task whose image was edited in Label Studio (it no longer shows its item's file, or points
outside the image folder) counts as pending: its annotations are reported as rejected with the
reason, and a label synced from it before is retracted, since the answers may be about another
picture.

Tasks deleted in Label Studio are marked deleted in the store's task table, and the human labels
already synced from them stay: a person gave them, and deleting a task is usually housekeeping
(clearing a project), not a verdict on the label. Delete the annotation to withdraw a label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from labeling.store import ItemRecord, LabelStore, file_key
from labeling.studio.connection import Studio
from labeling.studio.consensus import AnnotationView, Verdict, decide
from labeling.studio.errors import StudioError
from labeling.studio.project import ImageSource, StudioProject
from labeling.studio.remote import item_key_of, iter_tasks, iter_tasks_by_id
from labeling.studio.sync_store import (
    AnnotationRecord,
    SyncOutcome,
    TaskSnapshot,
    apply_sync,
    load_cursor,
)
from labeling.tasks.base import IMAGE_NAME, TaskType

LIGHT_FIELDS = "id,data,updated_at,annotations_ids"


@dataclass(frozen=True)
class RejectedAnnotation:
    """An annotation that does not count, with the reason shown to the user."""

    annotation_id: int
    task_id: int
    item_key: str | None
    who: str | None
    reason: str


@dataclass(kw_only=True)
class SyncReport(SyncOutcome):
    """What a sync found and did: what the store write touched (``SyncOutcome``: item keys,
    task ids for the task lists), what was read, and the annotations that did not count."""

    project_id: int
    tasks: int = 0
    read: int = 0
    annotations: int = 0
    rejected: list[RejectedAnnotation] = field(default_factory=list)


def sync_annotations(studio: Studio, store: LabelStore, project: StudioProject, *,
                     task_keys: Mapping[int, str] | None = None,
                     same_image: Callable[[str, str], bool] | None = None) -> SyncReport:
    """Bring the store up to date with the project's annotations; see the module docstring.

    Tasks people made by hand carry no item key in their data; ``task_keys`` (task id -> item
    key, from the store's task table) names the item of those adopted into the pool, and
    ``same_image(url, key)`` says whether their URL is known to show the item's bytes. Neither
    changes anything in Label Studio."""
    def key_of(task: dict) -> str | None:
        # The store's record first: an adopted task may carry an item_key of its own.
        return (task_keys or {}).get(int(task["id"])) or item_key_of(task)

    light = list(iter_tasks(studio, project.id, include=LIGHT_FIELDS, all_fields=True))
    cursor = load_cursor(store, project.id)
    snapshots: list[TaskSnapshot] = []
    to_read: list[int] = []
    for task in light:
        tid, ids = int(task["id"]), _ids(task.get("annotations_ids"))
        seen = cursor.get(tid)
        # A task read before it had an item (imported by hand, adopted since: the store's task
        # table names its item) is read again: its answers were kept as no item's. (A task
        # naming an item this store lacks is not: it would be read at every sync.)
        if seen is not None and (seen.updated_at, seen.annotation_ids) == (
                task["updated_at"], ids) and (seen.has_item or tid not in (task_keys or {})):
            continue
        if ids:
            to_read.append(tid)
        else:  # nothing to read: no annotations now means pending
            snapshots.append(_snapshot(project, task, [], users={}, key=key_of(task)))
    # Every field: ``include`` would also filter the annotations' own fields (to stubs).
    full = list(iter_tasks_by_id(studio, project.id, to_read, all_fields=True)) if to_read else []
    users = _user_emails(studio) if full else {}
    items = store.items_by_key(k for k in map(key_of, full) if k)
    snapshots.extend(_snapshot(project, task, task.get("annotations") or [], users=users,
                               key=key_of(task), size=_size(items.get(key_of(task))),
                               refused=_wrong_image(project.images, items, task, key_of(task),
                                                    same_image))
                     for task in full)
    present = {int(t["id"]) for t in light}
    outcome = apply_sync(store, project, snapshots, present_task_ids=present)
    return SyncReport(
        **vars(outcome), project_id=project.id, tasks=len(light), read=len(full),
        annotations=sum(len(s.annotations) for s in snapshots),
        rejected=[RejectedAnnotation(a.annotation_id, s.task_id, s.item_key, a.who, a.rejected)
                  for s in snapshots for a in s.annotations if a.rejected])


def _size(item: ItemRecord | None) -> tuple[int, int] | None:
    """An item's image (width, height), where the store knows it."""
    return (item.width, item.height) if item is not None and item.width and item.height else None


def _snapshot(project: StudioProject, task: dict, annotations: list[dict], *,
              users: dict[int, str], key: str | None, refused: str | None = None,
              size: tuple[int, int] | None = None) -> TaskSnapshot:
    """The task as read; ``refused``: why none of its annotations count (its image changed);
    ``size``: its item's image (width, height), which answers in pixels must be about."""
    predictions = task.get("predictions") or []
    records = tuple(_record(a, predictions, users, project.task, size) for a in annotations)
    views = [AnnotationView(r.annotation_id, r.user_id, r.values, r.was_cancelled, r.updated_at)
             for r in records]
    if refused is None:
        verdict = decide(views, project.classes, project.task)
    else:
        verdict = Verdict("pending", rejected={r.annotation_id: refused for r in records})
    rejected = verdict.rejected or {}
    records = tuple(r.with_rejection(rejected.get(r.annotation_id)) for r in records)
    return TaskSnapshot(task_id=int(task["id"]), item_key=key,
                        updated_at=str(task.get("updated_at") or ""),
                        annotation_ids=_ids(",".join(str(a["id"]) for a in annotations)),
                        annotations=records, verdict=verdict)


def _wrong_image(images: ImageSource, items: dict[str, ItemRecord], task: dict,
                 key: str | None, same_image: Callable[[str, str], bool] | None = None
                 ) -> str | None:
    """Why the task no longer shows its item's image, or ``None`` if it does.

    A person can edit a task's data in Label Studio; an answer about another picture (or a file
    outside the image folder) must not become this item's label.
    """
    item = items.get(key) if key else None
    if item is None:
        return None  # not one of ours: counted as a foreign task when stored
    url = str((task.get("data") or {}).get(IMAGE_NAME) or "")
    if url == item.path:  # an http(s) image, unchanged
        return None
    if images.signed_for(url, item.path):  # an S3 item's presigned URL, of any date
        return None
    if same_image is not None and same_image(url, key):
        return None  # an adopted hand-made task: its URL was read and had these bytes
    path = images.path_for(url)
    if path is None:
        return (f"the task's image was changed in Label Studio to {url!r}, not item {key}'s "
                f"image {item.path}; restore it or delete the task (it is then sent again)")
    if images.images_dir is None or images.images_dir not in path.parents:
        return (f"the task's image was changed in Label Studio to {path}, outside the image "
                f"folder {images.images_dir}; restore it or delete the task")
    if path == Path(item.path).resolve():
        # The item's own file, but it may hold other bytes now (two files swapped while their
        # tasks waited: each task showed the other's image, and answers went to the wrong item).
        # (A file gone or unreadable now showed no image: an answer to it was given before.)
        if _bytes_key(path) not in (key, None):
            return (f"item {key}'s image file {path} now holds another image, which the task "
                    f"showed; put the item's image back, then answer the task again")
        return None
    if _bytes_key(path) == key:
        return None  # the same bytes under another name
    return (f"the task's image was changed in Label Studio to {path}, not item {key}'s image "
            f"{item.path}; restore it or delete the task (it is then sent again)")


def _bytes_key(path: Path) -> str | None:
    """The key of the bytes in ``path`` now, or None if it cannot be read."""
    try:
        return file_key(path)[0]
    except OSError:
        return None


def _record(annotation: dict, predictions: list[dict], users: dict[int, str],
            task: TaskType, size: tuple[int, int] | None = None) -> AnnotationRecord:
    if "result" not in annotation or "was_cancelled" not in annotation:
        # A stub would read as "no answer" and retract labels: refuse instead.
        raise StudioError(f"Label Studio listed annotation {annotation.get('id')} without its "
                          f"result; this server version is not supported by labelloop's sync")
    user = annotation.get("completed_by")
    user_id = int(user["id"]) if isinstance(user, dict) else (int(user) if user else None)
    shown = _prediction_shown(annotation, predictions)
    predicted = task.answer_values(shown.get("result") or []) if shown else None
    values = task.answer_values(annotation.get("result") or [], size)
    cancelled = bool(annotation.get("was_cancelled"))
    shown_text = task.answer_text(predicted) if predicted is not None else None
    return AnnotationRecord(
        annotation_id=int(annotation["id"]),
        user_id=user_id,
        who=users.get(user_id) if user_id is not None else None,
        values=values,
        was_cancelled=cancelled,
        lead_time=annotation.get("lead_time"),
        created_at=_stamp(annotation.get("created_at")),
        updated_at=_stamp(annotation.get("updated_at")),
        predicted=shown_text,
        prediction_version=shown.get("model_version") if shown else None,
        changed_prediction=(None if cancelled or shown_text is None
                            or task.answer_text(values) is None
                            else task.changed(values, predicted)),
        value=task.answer_value(values),
        predicted_value=task.answer_value(predicted) if shown_text is not None else None,
    )


def _prediction_shown(annotation: dict, predictions: list[dict]) -> dict | None:
    """The pre-annotation the person saw: the one Label Studio links as the annotation's parent,
    else the newest prediction made before the annotation was."""
    parent = annotation.get("parent_prediction")
    for p in predictions:
        if parent is not None and p.get("id") == parent:
            return p
    made = _stamp(annotation.get("created_at"))
    earlier = [p for p in predictions if _stamp(p.get("created_at")) <= made]
    return max(earlier, key=lambda p: (_stamp(p.get("created_at")), p.get("id", 0)),
               default=None)


def _stamp(value) -> str:
    """A Label Studio timestamp in one fixed-width UTC form, so that strings compare as times
    (the server leaves out the fraction when it is zero)."""
    if not value:
        return ""
    when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ids(text) -> str:
    """Annotation ids as Label Studio lists them, normalised: sorted, comma-separated."""
    parts = [p.strip() for p in str(text or "").split(",") if p.strip()]
    return ",".join(str(i) for i in sorted(int(p) for p in parts))


def _user_emails(studio: Studio) -> dict[int, str]:
    users = studio.read("listing users", studio.client.users.list)
    return {int(u.id): str(u.email or u.username or u.id) for u in users}
