"""Which items were sent to people, and why (see ``schema.Selection``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from labeling.schema import PEOPLE_SOURCES, SELECTION_REASONS, Item, Label, Selection, Task
from labeling.store import LabelStore, StoreError


@dataclass(frozen=True)
class Pick:
    key: str
    reason: str
    holdout: bool = False
    machine_label: str | None = None
    machine_version: str | None = None
    round_id: int | None = None


def record_picks(store: LabelStore, picks: Iterable[Pick], *, round_id: int | None) -> list[str]:
    """Record picks in one transaction; items already selected are left as they were.
    Returns the keys newly recorded."""
    picks = list(picks)
    bad = {p.reason for p in picks} - set(SELECTION_REASONS)
    if bad:
        raise StoreError(f"unknown selection reason(s) {sorted(bad)}; valid: {SELECTION_REASONS}")
    added = []
    with store.transaction() as s:
        wanted = [p.key for p in picks]
        ids = {k: i for k, i in s.execute(select(Item.key, Item.id).where(Item.key.in_(wanted)))}
        missing = [p.key for p in picks if p.key not in ids]
        if missing:
            raise StoreError(f"unknown item key(s): {', '.join(missing[:5])}")
        taken = set(s.scalars(
            select(Selection.item_id).where(Selection.item_id.in_(list(ids.values())))))
        for p in picks:
            if ids[p.key] in taken:
                continue
            s.add(Selection(item_id=ids[p.key], round_id=round_id, reason=p.reason,
                            holdout=p.holdout, machine_label=p.machine_label,
                            machine_version=p.machine_version))
            taken.add(ids[p.key])
            added.append(p.key)
    return added


def _answered(item_id=Selection.item_id):
    """Whether the item ``item_id`` (a column: a pick's or a task's item) has a current label
    from people (a correlated EXISTS)."""
    return (select(Label.id).where(Label.item_id == item_id,
                                   Label.superseded_at.is_(None),
                                   Label.source.in_(PEOPLE_SOURCES)).exists())


def unanswered_picks(store: LabelStore) -> list[tuple[str, str, bool]]:
    """(key, path, has a task not deleted) of the picked items that wait for a person's first
    answer: no label from people, not skipped or disputed (those are answered)."""
    answered = _answered()
    tasked = select(Task.id).where(Task.item_id == Selection.item_id,
                                   Task.deleted.is_(False)).exists()
    with store.transaction() as s:
        return [(k, p, bool(t)) for k, p, t in s.execute(
            select(Item.key, Item.path, tasked).join(Selection, Selection.item_id == Item.id)
            .where(~answered, Item.status == "ok"))]


def unpicked_tasks_waiting(store: LabelStore) -> int:
    """How many items nobody picked wait in Label Studio for a first answer: tasks sent by
    hand (``labelloop studio push``) or imported by hand and adopted, not deleted, whose item
    has no label from people and is not skipped or disputed."""
    people = _answered(Task.item_id)
    picked = select(Selection.id).where(Selection.item_id == Task.item_id).exists()
    with store.transaction() as s:
        return int(s.scalar(select(func.count(func.distinct(Task.item_id)))
                            .join(Item, Item.id == Task.item_id)
                            .where(Task.deleted.is_(False), Item.status == "ok", ~people,
                                   ~picked)))


def picks(store: LabelStore, *, holdout: bool | None = None) -> dict[str, Pick]:
    """Every recorded pick by item key (optionally only held-out or only training ones)."""
    columns = (Item.key, Selection.reason, Selection.holdout, Selection.machine_label,
               Selection.machine_version, Selection.round_id)
    with store.transaction() as s:
        # Columns, not ORM objects: several callers read every pick each round (~60,000 at
        # a million items).
        query = select(*columns).join(Selection, Selection.item_id == Item.id)
        if holdout is not None:
            query = query.where(Selection.holdout.is_(holdout))
        return {row[0]: Pick(*row) for row in s.execute(query)}
