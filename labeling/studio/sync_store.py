"""The store side of a sync: the cursor, the annotation mirror and the label writes, applied in
one transaction (``LabelStore.transaction``), so a sync is stored whole or not at all."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labeling.schema import Item, Label, StudioAnnotation, StudioTaskSync, Task, utcnow
from labeling.store import LabelStore, NewLabel, unskip, write_labels
from labeling.studio.consensus import Verdict
from labeling.studio.project import StudioProject

_CHUNK = 500
STATUS_FOR = {"labeled": "ok", "pending": "ok", "skipped": "skipped",
              "disagreement": "disagreement"}


@dataclass(frozen=True)
class AnnotationRecord:
    """One annotation as synced; ``rejected`` says why it does not count as a vote."""

    annotation_id: int
    user_id: int | None
    who: str | None
    values: tuple  # what the answer says, as the task type reads it
    was_cancelled: bool
    lead_time: float | None
    created_at: str
    updated_at: str
    predicted: str | None  # the pre-annotation shown, in a few words (``TaskType.answer_text``)
    prediction_version: str | None
    rejected: str | None = None
    # Whether the person answered other than the pre-annotation (None: no answer or none shown).
    changed_prediction: bool | None = None
    value: Any = None  # the answer's typed value where the text is not all of it (boxes)
    predicted_value: Any = None

    def with_rejection(self, reason: str | None) -> AnnotationRecord:
        """This record with ``rejected`` set (``None``: it counts)."""
        return replace(self, rejected=reason)

    @property
    def annotator(self) -> str:
        """Who made it: the email, else the Label Studio user id."""
        return self.who or (f"user {self.user_id}" if self.user_id is not None else "unknown")


@dataclass(frozen=True)
class TaskSnapshot:
    """A task as read now, with all its annotations and their verdict."""

    task_id: int
    item_key: str | None
    updated_at: str
    annotation_ids: str
    annotations: tuple[AnnotationRecord, ...]
    verdict: Verdict


@dataclass(frozen=True)
class CursorRow:
    """What the last sync saw of a task."""

    updated_at: str
    annotation_ids: str
    deleted: bool
    has_item: bool = True  # False: read while no item was known for it (not adopted yet)


@dataclass
class SyncOutcome:
    """Item keys (task ids for the task lists) that the write touched."""

    labeled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    deleted_tasks: list[int] = field(default_factory=list)
    foreign_tasks: list[int] = field(default_factory=list)


def rejected_annotations(store: LabelStore) -> list[tuple[int, str]]:
    """(task id, reason) of every answer in Label Studio that does not count, as last synced
    (an unknown label, a changed image, ...), tasks since deleted left out; newest task first."""
    with store.transaction() as s:
        rows = s.execute(
            select(StudioAnnotation.task_id, StudioAnnotation.rejected)
            .join(StudioTaskSync, (StudioTaskSync.project_id == StudioAnnotation.project_id)
                  & (StudioTaskSync.task_id == StudioAnnotation.task_id))
            .where(StudioAnnotation.rejected.is_not(None), StudioTaskSync.deleted.is_(False))
            .order_by(StudioAnnotation.task_id.desc()))
        return [(int(task_id), str(reason)) for task_id, reason in rows]


def load_cursor(store: LabelStore, project_id: int) -> dict[int, CursorRow]:
    """Task id -> what the last sync saw of it."""
    with store.transaction() as s:
        rows = s.execute(select(StudioTaskSync.task_id, StudioTaskSync.updated_at,
                                StudioTaskSync.annotation_ids, StudioTaskSync.deleted,
                                StudioTaskSync.item_id.is_not(None))
                         .where(StudioTaskSync.project_id == project_id))
        return {tid: CursorRow(upd, ids, deleted, bool(item))
                for tid, upd, ids, deleted, item in rows}


def apply_sync(store: LabelStore, project: StudioProject, snapshots: Sequence[TaskSnapshot], *,
               present_task_ids: set[int]) -> SyncOutcome:
    """Write the snapshots (mirror, cursor, labels, statuses) and mark tasks that are no longer
    in ``present_task_ids`` deleted, all in one transaction."""
    out = SyncOutcome()
    with store.transaction() as s:
        items = _items(s, {snap.item_key for snap in snapshots if snap.item_key})
        task_ids = [snap.task_id for snap in snapshots]
        cursor = {r.task_id: r for r in _in(s, StudioTaskSync, StudioTaskSync.task_id, task_ids)}
        cursor_before = {tid: row.outcome for tid, row in cursor.items()}
        mirror: dict[int, list[StudioAnnotation]] = {}
        for a in _in(s, StudioAnnotation, StudioAnnotation.task_id, task_ids):
            mirror.setdefault(a.task_id, []).append(a)
        # The task rows of these items only; deleted tasks are found by id (_mark_deleted).
        recorded = {t.item_id: t for t in _in(s, Task, Task.item_id,
                                              [i.id for i in items.values()])
                    if t.project_id == project.id}
        current = {lab.item_id: lab for lab in _in(s, Label, Label.item_id,
                                                   [i.id for i in items.values()])
                   if lab.superseded_at is None}
        labels: list[NewLabel] = []
        now = utcnow()
        for snap in snapshots:
            item = items.get(snap.item_key) if snap.item_key else None
            _write_cursor(s, cursor.get(snap.task_id), snap, project.id, item, now)
            _write_mirror(s, mirror.get(snap.task_id, []), snap, project, item)
            if item is None:
                out.foreign_tasks.append(snap.task_id)
                continue
            if item.id not in recorded:
                recorded[item.id] = Task(project_id=project.id, item_id=item.id,
                                         task_id=snap.task_id)
                s.add(recorded[item.id])
            verdict = snap.verdict
            before = cursor_before.get(snap.task_id)
            # A pending task leaves the item's status alone unless this task had set it.
            if verdict.outcome != "pending" or before in ("skipped", "disagreement"):
                item.status = STATUS_FOR[verdict.outcome]
            if verdict.outcome == "labeled":
                labels.append(_label(project, snap, item))
                continue
            cur = current.get(item.id)
            if cur is not None and cur.source == "human" and _from_task(cur, snap.task_id):
                cur.superseded_at = now
                out.retracted.append(item.key)
            if verdict.outcome == "skipped":
                out.skipped.append(item.key)
            elif verdict.outcome == "disagreement":
                out.disagreements.append(item.key)
        _mark_deleted(s, project.id, present_task_ids, out)
        written = write_labels(s, labels, classes=project.task.store_classes(project.classes))
        out.labeled, out.unchanged = written.written, written.unchanged
    return out


def _label(project: StudioProject, snap: TaskSnapshot, item: Item) -> NewLabel:
    verdict = snap.verdict
    value = verdict.value
    if isinstance(value, dict) and "width" not in value and item.width and item.height:
        # An empty answer says nothing of the image's size, which boxes are relative to.
        value = {**value, "width": item.width, "height": item.height}
    winners = [a for a in snap.annotations if a.annotation_id in verdict.winners]
    latest = max(winners, key=lambda a: (a.updated_at, a.annotation_id))
    leads = [a.lead_time for a in winners if a.lead_time is not None]
    annotators = [a.annotator for a in winners]
    extra = {
        "studio": {"project": project.id, "task": snap.task_id},
        "annotation_ids": [a.annotation_id for a in winners],
        "annotators": annotators,
        "annotated_at": latest.updated_at,
        "lead_time": sum(leads) / len(leads) if leads else None,
        "predicted": latest.predicted,
        "prediction_version": latest.prediction_version,
        "changed_prediction": latest.changed_prediction,
    }
    if latest.predicted_value is not None:
        extra["predicted_value"] = latest.predicted_value
    if sum((verdict.votes or {}).values()) > 1:
        extra["votes"] = dict(verdict.votes or {})
    return NewLabel(key=item.key, label=str(verdict.label), source="human",
                    who=", ".join(annotators)[:200], extra=extra, value=value)


def _from_task(label: Label, task_id: int) -> bool:
    return ((label.extra or {}).get("studio") or {}).get("task") == task_id


def _write_cursor(s: Session, row: StudioTaskSync | None, snap: TaskSnapshot, project_id: int,
                  item: Item | None, now) -> None:
    if row is None:
        row = StudioTaskSync(project_id=project_id, task_id=snap.task_id)
        s.add(row)
    row.item_id = item.id if item is not None else None
    row.updated_at, row.annotation_ids = snap.updated_at, snap.annotation_ids
    row.outcome, row.label = snap.verdict.outcome, snap.verdict.label
    row.deleted, row.synced_at = False, now


def _write_mirror(s: Session, rows: list[StudioAnnotation], snap: TaskSnapshot,
                  project: StudioProject, item: Item | None) -> None:
    by_id = {r.annotation_id: r for r in rows}
    keep = {a.annotation_id for a in snap.annotations}
    for gone in set(by_id) - keep:
        s.delete(by_id[gone])
    for a in snap.annotations:
        row = by_id.get(a.annotation_id)
        if row is None:
            row = StudioAnnotation(annotation_id=a.annotation_id)
            s.add(row)
        row.project_id, row.task_id = project.id, snap.task_id
        row.item_id = item.id if item is not None else None
        row.user_id, row.who = a.user_id, a.who
        row.choice, row.value = project.task.answer_text(a.values), a.value
        row.was_cancelled, row.rejected, row.lead_time = a.was_cancelled, a.rejected, a.lead_time
        row.predicted, row.prediction_version = a.predicted, a.prediction_version
        row.changed_prediction = a.changed_prediction
        row.created_at, row.updated_at = a.created_at, a.updated_at


def _mark_deleted(s: Session, project_id: int, present: set[int], out: SyncOutcome) -> None:
    """Mark the cursor rows and task rows whose Label Studio task is gone deleted, and those
    marked deleted whose task is there after all not: ids, task ids and flags read as three
    columns, one UPDATE per chunk (a project holds 100,000s of tasks). (A task made while a
    listing ran was once marked deleted by it and stayed so, its held-out item never getting
    a second opinion.)"""
    s.flush()  # tasks added in this sync are present: they were just seen
    gone: set[int] = set()
    for model in (StudioTaskSync, Task):
        rows = s.execute(select(model.id, model.task_id, model.deleted).where(
            model.project_id == project_id)).all()
        ids = [row_id for row_id, task_id, was in rows if not was and task_id not in present]
        back = [row_id for row_id, task_id, was in rows if was and task_id in present]
        gone.update(task_id for _, task_id, was in rows if not was and task_id not in present)
        for flag, chosen in ((True, ids), (False, back)):
            for start in range(0, len(chosen), _CHUNK):
                s.execute(update(model).where(model.id.in_(chosen[start:start + _CHUNK]))
                          .values(deleted=flag).execution_options(synchronize_session="fetch"))
    out.deleted_tasks = sorted(gone)
    unskip(s, gone)



def _items(s: Session, keys: set[str]) -> dict[str, Item]:
    return {i.key: i for i in _in(s, Item, Item.key, sorted(keys))}


def _in(s: Session, model, column, values: Sequence) -> Iterator:
    """Rows of ``model`` whose ``column`` is in ``values``, queried in chunks."""
    values = list(values)
    for start in range(0, len(values), _CHUNK):
        yield from s.scalars(select(model).where(column.in_(values[start:start + _CHUNK])))
