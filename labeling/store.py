"""The label store: items, labels with provenance, rounds and Label Studio tasks.

Backed by SQLAlchemy: a SQLite file by default, any SQLAlchemy URL (e.g. PostgreSQL) by config.
Every public write runs in one transaction, so a crash mid-write leaves the previous state.
A label write holds the items it writes (``_items_by_key(..., lock=True)``) before it reads
their labels in force, so two processes writing labels at once wait for each other instead of
both superseding the same label.

Rules kept here, for every caller:
- a label is never overwritten: a new label supersedes the current one, history stays;
- a human (or seed) label outranks a machine label: a machine label for an item whose current
  label came from a person is refused, never written.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Text, and_, case, cast, create_engine, event, exists, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labeling.bulk import CHUNK, insert_rows, rows_where_in, set_column
from labeling.migrations import migrate
from labeling.schema import (
    ITEM_STATUSES,
    SOURCE_RANK,
    SOURCES,
    Item,
    ItemThumb,
    Label,
    Quarantine,
    Round,
    StudioAnnotation,
    StudioTaskSync,
    Task,
    utcnow,
)


class StoreError(ValueError):
    """Bad input to the label store; the message says what is wrong and nothing was written."""


class StoreUnavailable(RuntimeError):
    """The store's database failed under a transaction (a server down or restarting, a file
    locked past the timeout, a full or read-only disk): it was rolled back; a later try can
    succeed once that is fixed."""


@dataclass(frozen=True)
class NewItem:
    key: str
    path: str
    size_bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class ItemRecord:
    key: str
    path: str
    size_bytes: int
    width: int
    height: int
    status: str
    added_at: datetime


@dataclass(frozen=True)
class QuarantineRecord:
    path: str
    reason: str
    key: str | None
    found_at: datetime


@dataclass(frozen=True)
class NewLabel:
    key: str
    label: str
    source: str
    who: str | None = None
    model_version: str | None = None
    confidence: float | None = None
    round_id: int | None = None
    extra: Mapping = field(default_factory=dict)
    # The typed value where it is more than the ``label`` text (JSON-serialisable), else None.
    value: Any = None


@dataclass(frozen=True)
class LabelRecord:
    key: str
    label: str
    source: str
    who: str | None
    model_version: str | None
    confidence: float | None
    round_id: int | None
    created_at: datetime
    superseded_at: datetime | None
    extra: dict
    value: Any = None


@dataclass(frozen=True)
class LabelWriteResult:
    """What ``add_labels`` did: keys written, refused (a person's label stands), unchanged."""

    written: list[str]
    refused: list[str]
    unchanged: list[str]


def file_key(path: str | Path) -> tuple[str, int]:
    """An image file's item key (``sha256:`` and the hex digest of its bytes) and its size."""
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        size = handle.tell()
    return "sha256:" + digest.hexdigest(), size


def bytes_key(data: bytes) -> str:
    """``file_key``'s key for bytes already read (an S3 object's)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def store_url(path_or_url: str | Path) -> str:
    """A SQLAlchemy URL for a path (SQLite file) or an URL given as is."""
    text = str(path_or_url)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def _stays_empty(path: Path, wait_s: float = 2.0) -> bool:
    """Whether ``path`` is a file of 0 bytes and stays so for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while path.is_file() and path.stat().st_size == 0:
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)
    return False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, export) see a consistent snapshot while a round writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class LabelStore:
    """Items, labels, rounds and tasks of one labelloop project."""

    def __init__(self, path_or_url: str | Path):
        url = store_url(path_or_url)
        if url.startswith("sqlite:///"):
            db_path = Path(url.removeprefix("sqlite:///"))
            if not db_path.parent.is_dir():
                raise StoreError(f"label store folder does not exist: {db_path.parent}")
            # SQLite takes a 0-byte file for a new database, so a store truncated by a failed
            # copy read as a project with nothing in it (status "0 labels", an empty export).
            # SQLite writes a new file's header at the first connection's first statement,
            # so another process opening a new store at the same moment gets a while to.
            if _stays_empty(db_path):
                raise StoreError(f"the label store {db_path} is an empty file (0 bytes), not "
                                 "a store: restore it from a copy, or delete it (and any "
                                 f"{db_path.name}-wal and -shm beside it) to start a new one")
        self.url = url
        # pool_pre_ping: a pooled connection that a server restart ended is replaced before
        # use (without it, the first query after PostgreSQL came back failed, and stopped
        # the scheduled loop that had waited out the outage).
        self.engine: Engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # Creates a new store's tables, or brings an older store's schema up to date.
        try:
            self.schema_found = migrate(self.engine)
        except DatabaseError as err:  # cannot connect, locked, or not a database at all
            self.engine.dispose()
            shown = self.engine.url.render_as_string(hide_password=True)
            first = str(err.orig or err).strip().splitlines()[0]
            raise StoreError(f"the label store at {shown} cannot be opened: {first}"
                             ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Answers worked out from the whole store that a round asks for many times (key ->
        # value; ``labeling.seen_files.replaced_items``): emptied by the writes they depend on,
        # and by ``forget_memo`` at a round's start, for the writes of other processes.
        self.memo: dict[str, object] = {}

    def forget_memo(self) -> None:
        self.memo.clear()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as err:  # the server went away, or the file is locked
            shown = self.engine.url.render_as_string(hide_password=True)
            first = str(err.orig or err).strip().splitlines()[0]
            raise StoreUnavailable(f"the label store at {shown} failed: {first} (that "
                                   "write was rolled back)") from None

    # ---- items -------------------------------------------------------------------------
    def add_items(self, items: Iterable[NewItem]) -> list[str]:
        """Add items not yet in the store; return the keys that were new (content de-dup)."""
        self.forget_memo()
        added: list[str] = []
        items = list(items)
        with self.transaction() as s:
            # Only this batch's keys: reading every key would make each batch cost the pool.
            wanted = list(dict.fromkeys(it.key for it in items))
            known = set()
            for start in range(0, len(wanted), CHUNK):
                known.update(s.scalars(select(Item.key).where(
                    Item.key.in_(wanted[start:start + CHUNK]))))
            for it in items:
                if it.key in known:
                    continue
                s.add(Item(key=it.key, path=it.path, size_bytes=it.size_bytes,
                           width=it.width, height=it.height, status="ok"))
                known.add(it.key)
                added.append(it.key)
            # A file that was quarantined and is now fine leaves the quarantine.
            for q in s.scalars(select(Quarantine).where(Quarantine.key.in_(added))):
                s.delete(q)
        return added

    def thumbs(self) -> tuple[list[str], np.ndarray, dict[str, str]]:
        """(keys, thumbnails [N, 256] uint8, key -> near-duplicate group) of the items that
        have a thumbnail."""
        # Plain rows from the driver, and two queries instead of a join: every ingest that adds
        # an item reads them all (to compare thumbnails), 5x faster at 100,000 items.
        with self.transaction() as s:
            conn = s.connection()
            key_of = dict(conn.exec_driver_sql("SELECT id, key FROM items").fetchall())
            rows = conn.exec_driver_sql(
                "SELECT item_id, thumb, group_key FROM item_thumbs ORDER BY item_id").fetchall()
        keys = [key_of[r[0]] for r in rows]
        thumbs = (np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8)
                  .reshape(len(rows), -1) if rows else np.zeros((0, 256), np.uint8))
        return keys, thumbs, {k: r[2] for k, r in zip(keys, rows, strict=True)}

    def set_thumbs(self, thumbs: Mapping[str, bytes], groups: Mapping[str, str]) -> None:
        """Record items' thumbnails and near-duplicate groups (items that have one keep it)."""
        with self.transaction() as s:
            by_key = _items_by_key(s, thumbs)
            have = set(s.scalars(select(ItemThumb.item_id).where(
                ItemThumb.item_id.in_([i.id for i in by_key.values()]))))
            for key, thumb in thumbs.items():
                item = by_key[key]
                if item.id not in have:
                    s.add(ItemThumb(item_id=item.id, thumb=thumb, group_key=groups[key]))

    def near_duplicate_groups(self) -> dict[str, str]:
        """Item key -> group key for the items in groups of two or more."""
        with self.transaction() as s:
            shared = (select(ItemThumb.group_key).group_by(ItemThumb.group_key)
                      .having(func.count() > 1))
            rows = s.execute(select(Item.key, ItemThumb.group_key)
                             .join(ItemThumb, ItemThumb.item_id == Item.id)
                             .where(ItemThumb.group_key.in_(shared))).all()
        return {k: g for k, g in rows}

    def items(self, *, status: str | None = None) -> list[ItemRecord]:
        """Every item (of one status), in the order they were added."""
        with self.transaction() as s:
            # Columns, not ORM objects: building a million of those takes most of a minute.
            query = select(*_ITEM_COLUMNS).order_by(Item.id)
            if status is not None:
                query = query.where(Item.status == status)
            return [ItemRecord(*row) for row in s.execute(query)]

    def item_keys(self, *, status: str | None = None,
                  added: tuple[datetime, datetime | None] | None = None) -> list[str]:
        """The keys of every item (of one status; ``added`` after a moment and up to another,
        None: since), in the order they were added."""
        with self.transaction() as s:
            query = select(Item.key).order_by(Item.id)
            if status is not None:
                query = query.where(Item.status == status)
            return list(s.scalars(_added_within(query, added)))

    def item(self, key: str) -> ItemRecord | None:
        with self.transaction() as s:
            found = s.scalar(select(Item).where(Item.key == key))
            return _item_record(found) if found else None

    def items_by_key(self, keys: Iterable[str]) -> dict[str, ItemRecord]:
        """Key -> item for those of ``keys`` that are items (unknown keys are left out)."""
        wanted = sorted(set(keys))
        found: dict[str, ItemRecord] = {}
        with self.transaction() as s:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                found.update((row[0], ItemRecord(*row)) for row in s.execute(
                    select(*_ITEM_COLUMNS).where(Item.key.in_(chunk))))
        return found

    def existing_keys(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` are items already (one query per chunk, no records built)."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self.transaction() as s:
            # Chunks keep each IN (...) under SQLite's limit on bound parameters.
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                found.update(s.scalars(select(Item.key).where(Item.key.in_(chunk))))
        return found

    def move_items(self, moves: Mapping[str, str]) -> tuple[list[str], list[str]]:
        """Give items whose file was moved (key -> new path) their new path, unless a Label
        Studio task shows them: the task names the old file, and its answers are checked
        against it (``labeling.studio.sync``). Returns (keys moved, keys left as they were)."""
        self.forget_memo()
        with self.transaction() as s:
            by_key = _items_by_key(s, moves, lock=True)  # no task made between check and write
            ids, shown = [i.id for i in by_key.values()], set()
            for start in range(0, len(ids), CHUNK):
                shown.update(s.scalars(select(Task.item_id).where(
                    Task.item_id.in_(ids[start:start + CHUNK]), Task.deleted.is_(False))))
            moved, left = [], []
            for key, item in by_key.items():
                if item.id in shown:
                    left.append(key)
                else:
                    item.path = moves[key]
                    moved.append(key)
        return sorted(moved), sorted(left)

    def set_status(self, keys: Iterable[str], status: str) -> None:
        if status not in ITEM_STATUSES:
            raise StoreError(f"unknown item status {status!r}; valid: {', '.join(ITEM_STATUSES)}")
        with self.transaction() as s:
            by_key = _items_by_key(s, keys)
            for item in by_key.values():
                item.status = status

    def quarantine(self, path: str, reason: str, key: str | None = None) -> None:
        """Record (or update) a file that cannot enter the pool, with its reason."""
        self.forget_memo()  # an item's file quarantined makes the item unusable
        with self.transaction() as s:
            found = s.scalar(select(Quarantine).where(Quarantine.path == path))
            if found is None:
                s.add(Quarantine(path=path, reason=reason, key=key))
            else:
                found.reason, found.key, found.found_at = reason, key, utcnow()

    def unquarantine(self, paths: Iterable[str]) -> list[str]:
        """Remove ``paths`` from the quarantine (the file is fine now); return those removed."""
        self.forget_memo()
        wanted = list(dict.fromkeys(paths))
        removed: list[str] = []
        with self.transaction() as s:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                for q in s.scalars(select(Quarantine).where(Quarantine.path.in_(chunk))):
                    removed.append(q.path)
                    s.delete(q)
        return sorted(removed)

    def quarantined(self) -> list[QuarantineRecord]:
        with self.transaction() as s:
            rows = s.scalars(select(Quarantine).order_by(Quarantine.path))
            return [QuarantineRecord(q.path, q.reason, q.key, q.found_at) for q in rows]

    # ---- labels ------------------------------------------------------------------------
    def add_labels(
        self, labels: Iterable[NewLabel], *, classes: Iterable[str] | None = None
    ) -> LabelWriteResult:
        """Add labels in one transaction; all or nothing.

        A label identical to the current one (same class, source and model version) is left
        alone. A machine label for an item whose current label came from a person is refused.
        Unknown items, sources or classes raise ``StoreError`` and nothing is written.
        """
        with self.transaction() as s:
            return write_labels(s, labels, classes=classes)

    def retract_label(self, key: str, *, source: str) -> bool:
        """Supersede the current label of ``key`` if it came from ``source``, leaving the item
        unlabeled (e.g. the human's annotation was deleted). Returns whether one was retracted."""
        with self.transaction() as s:
            item = _items_by_key(s, [key], lock=True)[key]
            cur = _current_by_item(s, [item.id]).get(item.id)
            if cur is None or cur.source != source:
                return False
            cur.superseded_at = utcnow()
            return True

    def retract_labels(self, keys: Iterable[str], *, source: str) -> int:
        """``retract_label`` for many items in one transaction; returns how many were."""
        keys = sorted(set(keys))
        if not keys:
            return 0
        with self.transaction() as s:
            wanted = sorted(set(keys))
            ids = [i for _, i in _item_ids(s, wanted, lock=True)]
            if len(ids) < len(wanted):
                _items_by_key(s, wanted)  # raises, naming the unknown keys
            now, count = utcnow(), 0
            # One UPDATE per chunk: loading each label as an object took minutes at 1M items.
            for start in range(0, len(ids), CHUNK):
                count += s.execute(
                    update(Label).where(Label.item_id.in_(ids[start:start + CHUNK]),
                                        Label.superseded_at.is_(None), Label.source == source)
                    .values(superseded_at=now)
                    .execution_options(synchronize_session=False)).rowcount
            return count

    def current_labels(self, *, sources: Iterable[str] | None = None,
                       keys: Iterable[str] | None = None) -> dict[str, LabelRecord]:
        """The label in force for each labeled item (of ``keys`` only, if given), by item
        key. Callers that need only the class: ``current_classes`` (no JSON decoded)."""
        query = (select(Item.key, *_LABEL_COLUMNS).join(Label, Label.item_id == Item.id)
                 .where(Label.superseded_at.is_(None)))
        if sources is not None:
            query = query.where(Label.source.in_(list(sources)))
        with self.transaction() as s:
            if keys is None:
                return {row[0]: _row_label_record(row) for row in s.execute(query)}
            wanted, out = sorted(set(keys)), {}
            for start in range(0, len(wanted), CHUNK):
                rows = s.execute(query.where(Item.key.in_(wanted[start:start + CHUNK])))
                out.update((row[0], _row_label_record(row)) for row in rows)
            return out

    def current_classes(self, *, sources: Iterable[str] | None = None,
                        keys: Iterable[str] | None = None) -> dict[str, str]:
        """Item key -> the class (``label`` text) in force, for the labels from ``sources``
        (of the items ``keys`` only, if given): two columns, no records built (a million
        records take tens of seconds)."""
        query = (select(Item.key, Label.label).join(Label, Label.item_id == Item.id)
                 .where(Label.superseded_at.is_(None)))
        if sources is not None:
            query = query.where(Label.source.in_(list(sources)))
        with self.transaction() as s:
            if keys is None:
                return dict(s.execute(query).all())
            # In chunks, as current_labels: one IN list of a large pool's keys passes the
            # database's limit on parameters (SQLite 32,766, psycopg 65,535).
            wanted, out = sorted(set(keys)), {}
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                out.update(s.execute(query.where(Item.key.in_(chunk))).all())
            return out

    def current_sources(self) -> dict[str, str]:
        """Item key -> the source of its label in force (a quick count of who labeled what:
        two columns, no records built)."""
        with self.transaction() as s:
            return dict(s.execute(
                select(Item.key, Label.source).join(Label, Label.item_id == Item.id)
                .where(Label.superseded_at.is_(None))).all())

    def current_source_counts(self, *, added: tuple[datetime, datetime | None] | None = None
                              ) -> dict[str, int]:
        """Source -> how many items' label in force came from it (counted by the database);
        ``added``: of the items added within it only (``item_keys``)."""
        query = (select(Label.source, func.count()).join(Item, Item.id == Label.item_id)
                 .where(Label.superseded_at.is_(None)).group_by(Label.source))
        with self.transaction() as s:
            return dict(s.execute(_added_within(query, added)).all())

    def current_machine_versions(self) -> dict[str, int]:
        """Model version -> how many machine labels in force it made (by the database)."""
        query = (select(Label.model_version, func.count())
                 .where(Label.superseded_at.is_(None), Label.source == "machine")
                 .group_by(Label.model_version))
        with self.transaction() as s:
            return {str(v): n for v, n in s.execute(query).all()}

    def current_class_counts(self) -> dict[str, int]:
        """Class (``label`` text) -> how many items' label in force has it (by the database)."""
        query = (select(Label.label, func.count()).where(Label.superseded_at.is_(None))
                 .group_by(Label.label))
        with self.transaction() as s:
            return dict(s.execute(query).all())

    def delivery_counts(self) -> dict[str, tuple[int, int]]:
        """Source -> (labels in force on items an export writes, on items it holds back:
        skipped, disputed or quarantined), in one read so that the two add up."""
        deliverable = and_(Item.status == "ok", ~exists().where(Quarantine.path == Item.path))
        query = (select(Label.source, func.count(), func.sum(case((deliverable, 1), else_=0)))
                 .join(Item, Item.id == Label.item_id).where(Label.superseded_at.is_(None))
                 .group_by(Label.source))
        with self.transaction() as s:
            return {source: (int(ok), int(n - ok)) for source, n, ok in s.execute(query)}

    def count_items(self, *, status: str | None = None,
                    unlabeled_by: Iterable[str] | None = None) -> int:
        """How many items the pool holds (every status, or one); ``unlabeled_by``: only
        those whose label in force is not from one of these sources."""
        with self.transaction() as s:
            query = select(func.count()).select_from(Item)
            if status is not None:
                query = query.where(Item.status == status)
            if unlabeled_by is not None:
                labeled = select(Label.id).where(
                    Label.item_id == Item.id, Label.superseded_at.is_(None),
                    Label.source.in_(list(unlabeled_by))).exists()
                query = query.where(~labeled)
            return int(s.scalar(query))

    def history(self, key: str) -> list[LabelRecord]:
        """Every label ever given to ``key``, oldest first."""
        with self.transaction() as s:
            item = _items_by_key(s, [key])[key]
            rows = s.scalars(select(Label).where(Label.item_id == item.id).order_by(Label.id))
            return [_label_record(key, lab) for lab in rows]

    # ---- rounds ------------------------------------------------------------------------
    def start_round(self) -> int:
        with self.transaction() as s:
            r = Round(status="running", stats={})
            s.add(r)
            s.flush()
            return r.id

    def finish_round(self, round_id: int, stats: Mapping, *, status: str = "done") -> None:
        with self.transaction() as s:
            r = s.get(Round, round_id)
            if r is None:
                raise StoreError(f"no round {round_id}")
            r.stats, r.status, r.finished_at = dict(stats), status, utcnow()

    def save_round(self, round_id: int, stats: Mapping) -> None:
        """Record a running round's progress (which steps are done, their outputs)."""
        with self.transaction() as s:
            r = s.get(Round, round_id)
            if r is None:
                raise StoreError(f"no round {round_id}")
            r.stats = dict(stats)

    def running_round(self) -> dict | None:
        """The newest round that was started and not finished (a crash), if any."""
        with self.transaction() as s:
            r = s.scalar(select(Round).where(Round.status == "running")
                         .order_by(Round.id.desc()).limit(1))
            return None if r is None else {"id": r.id, "stats": dict(r.stats or {})}

    def fingerprint(self) -> tuple:
        """What a certificate reads beside an export's rows, in a few figures: the newest
        round's record (the accept step's bound, the drift tests) and people's answers in
        Label Studio (whether they disagree). Equal around several reads, nothing wrote them
        between (``pipeline.delivery``). Labels are not in it: an export counts them in the
        same read as its rows, and a round writes them continuously."""
        with self.transaction() as s:
            answers = tuple(s.execute(select(func.count(), func.max(StudioAnnotation.id),
                                             func.max(StudioAnnotation.updated_at))).one())
            last = s.scalars(select(Round).order_by(Round.id.desc()).limit(1)).first()
            newest = None if last is None else (last.id, last.status, json.dumps(
                last.stats or {}, sort_keys=True, default=str))
        return answers, newest

    def rounds(self) -> list[dict]:
        with self.transaction() as s:
            return [
                {"id": r.id, "status": r.status, "started_at": r.started_at,
                 "finished_at": r.finished_at, "stats": dict(r.stats or {})}
                for r in s.scalars(select(Round).order_by(Round.id))
            ]

    # ---- Label Studio tasks ------------------------------------------------------------
    def record_tasks(
        self,
        project_id: int,
        task_ids: Mapping[str, int],
        *,
        round_id: int | None = None,
        model_version: str | None = None,
    ) -> None:
        """Remember which Label Studio task holds which item (one task per item per project)."""
        with self.transaction() as s:
            by_key = _items_by_key(s, task_ids)
            ids = [i.id for i in by_key.values()]
            existing = {}  # the tasks of these items only: a project may hold 100,000s
            for start in range(0, len(ids), CHUNK):
                existing.update((t.item_id, t) for t in s.scalars(
                    select(Task).where(Task.project_id == project_id,
                                       Task.item_id.in_(ids[start:start + CHUNK]))))
            for key, task_id in task_ids.items():
                item = by_key[key]
                known = existing.get(item.id)
                if known is None:
                    s.add(Task(project_id=project_id, item_id=item.id, task_id=int(task_id),
                               round_id=round_id, model_version=model_version))
                else:
                    known.task_id, known.deleted = int(task_id), False
                    if model_version is not None:
                        known.model_version = model_version

    def tasks(self, project_id: int, *, include_deleted: bool = False) -> dict[str, int]:
        """Item key -> Label Studio task id for the project."""
        with self.transaction() as s:
            query = (select(Item.key, Task.task_id).join(Task, Task.item_id == Item.id)
                     .where(Task.project_id == project_id))
            if not include_deleted:
                query = query.where(Task.deleted.is_(False))
            return {key: tid for key, tid in s.execute(query)}

    def task_projects(self) -> dict[int, int]:
        """Label Studio project id -> how many tasks the store holds there (not deleted)."""
        with self.transaction() as s:
            return dict(s.execute(select(Task.project_id, func.count()).where(
                Task.deleted.is_(False)).group_by(Task.project_id)).all())

    def mark_project_deleted(self, project_id: int) -> None:
        """Every task of ``project_id`` is gone (the project was deleted in Label Studio, or
        left for a new one): its task rows and sync cursor rows are marked deleted, as a sync
        marks a deleted task's. Labels synced from it stay."""
        with self.transaction() as s:
            for model in (Task, StudioTaskSync):
                s.execute(update(model).where(model.project_id == project_id)
                          .values(deleted=True))
            unskip(s, s.scalars(select(StudioTaskSync.task_id).where(
                StudioTaskSync.project_id == project_id)).all())


def _added_within(query, added: tuple[datetime, datetime | None] | None):
    """``query`` for the items added after ``added[0]`` and up to ``added[1]`` (None: now).
    In UTC (a naive time is UTC): SQLite keeps the times without their zone, as UTC."""
    if added is None:
        return query
    after, until = (None if t is None else t.replace(tzinfo=UTC) if t.tzinfo is None
                    else t.astimezone(UTC) for t in added)
    query = query.where(Item.added_at > after)
    return query if until is None else query.where(Item.added_at <= until)


def unskip(s: Session, task_ids: Iterable[int]) -> None:
    """Items skipped, or tied between people, on Label Studio tasks ``task_ids``, now gone
    (marked deleted), are pending again: the skip or tie went with its task, and the next push
    asks anew with a pre-annotation (a skipped item is not pre-annotated, and outside the
    held-out sample not predicted either: a held-out one is, as it counts against the model
    until answered; a deleted tie keeps counting against it until a person labels the item,
    ``pipeline.round.labeled.unresolved_held_out``). A tied item stayed so for good, picked by
    no round (a user's review). A tied item's machine label in force (an audit's, which export
    held back) is withdrawn with the tie: people disputed it. An item still skipped or tied on
    a task that is there stays so."""
    task_ids = sorted(task_ids)
    held = ("skipped", "disagreement")
    for start in range(0, len(task_ids), CHUNK):
        gone = {i for i in s.scalars(select(StudioTaskSync.item_id).where(
            StudioTaskSync.task_id.in_(task_ids[start:start + CHUNK]),
            StudioTaskSync.outcome.in_(held))) if i is not None}
        if not gone:
            continue
        live = dict(s.execute(select(StudioTaskSync.item_id, StudioTaskSync.outcome).where(
            StudioTaskSync.item_id.in_(sorted(gone)), StudioTaskSync.deleted.is_(False),
            StudioTaskSync.outcome.in_(held))).all())
        for outcome in held:  # what the task still there says
            s.execute(update(Item).where(Item.id.in_([i for i, o in live.items()
                                                       if o == outcome]))
                      .values(status=outcome).execution_options(synchronize_session="fetch"))
        reset = sorted(gone - set(live))
        tied = s.scalars(select(Item.id).where(Item.id.in_(reset),
                                               Item.status == "disagreement")).all()
        if tied:
            s.execute(update(Label).where(Label.item_id.in_(tied), Label.source == "machine",
                                          Label.superseded_at.is_(None))
                      .values(superseded_at=utcnow()).execution_options(
                          synchronize_session="fetch"))
        s.execute(update(Item).where(Item.id.in_(reset), Item.status.in_(held))
                  .values(status="ok").execution_options(synchronize_session="fetch"))


def write_labels(
    s: Session, labels: Iterable[NewLabel], *, classes: Iterable[str] | None = None
) -> LabelWriteResult:
    """``LabelStore.add_labels`` inside the caller's transaction (``store.transaction()``),
    for label writes that must commit together with other tables (e.g. a Label Studio
    sync). Same rules; raises ``StoreError`` before writing anything."""
    labels = list(labels)
    valid = set(classes) if classes is not None else None
    for lab in labels:
        if lab.source not in SOURCES:
            raise StoreError(
                f"unknown label source {lab.source!r}; valid: {', '.join(SOURCES)}")
        if valid is not None and lab.label not in valid:
            raise StoreError(
                f"label {lab.label!r} for item {lab.key} is not a class of this project; "
                f"valid: {', '.join(sorted(valid))}"
            )
    result = LabelWriteResult([], [], [])
    by_key = _item_ids(s, sorted({lab.key for lab in labels}), lock=True)
    ids = dict(by_key)
    if len(ids) < len({lab.key for lab in labels}):
        _items_by_key(s, (lab.key for lab in labels))  # raises, naming the unknown keys
    # Plain rows, one INSERT and one UPDATE per chunk: ORM objects cost seconds per 10,000.
    current = _current_rows(s, list(ids.values()))
    now = utcnow()
    superseded: list[int] = []
    new_rows: list[dict] = []
    written_here: dict[int, dict] = {}  # item id -> its row written in this call
    for lab in labels:
        item_id = ids[lab.key]
        mine = written_here.get(item_id)
        if mine is not None:
            cur = (None, mine["source"], mine["label"], mine["model_version"], mine["value"],
                   mine["extra"])
        else:
            cur = current.get(item_id)
        if cur is not None:
            label_id, source, label, version, value, extra = cur
            if SOURCE_RANK[lab.source] < SOURCE_RANK[source]:
                result.refused.append(lab.key)
                continue
            if (label, source, version, value) == (
                lab.label, lab.source, lab.model_version, lab.value
            ) and _extra(extra) == dict(lab.extra):
                result.unchanged.append(lab.key)
                continue
            if mine is not None:
                mine["superseded_at"] = now
            else:
                superseded.append(label_id)
        row = {"item_id": item_id, "label": lab.label, "source": lab.source, "who": lab.who,
               "model_version": lab.model_version, "confidence": lab.confidence,
               "round_id": lab.round_id, "extra": dict(lab.extra), "value": lab.value,
               "created_at": now, "superseded_at": None}
        new_rows.append(row)
        written_here[item_id] = row
        result.written.append(lab.key)
    set_column(s, Label.__table__.c.superseded_at, superseded, now)
    if new_rows:
        insert_rows(s, Label.__table__, new_rows)
    return result


def _current_rows(s: Session, item_ids: list[int]) -> dict[int, tuple]:
    """Item id -> its label in force as (label id, source, label, model version, value,
    extra as JSON text): ``extra`` is decoded only where a write must compare it."""
    columns = (Label.item_id, Label.id, Label.source, Label.label, Label.model_version,
               Label.value, cast(Label.extra, Text))
    query = select(*columns).where(Label.superseded_at.is_(None))
    return {row[0]: tuple(row[1:])
            for row in rows_where_in(s, query, Label.item_id, item_ids)}


def _extra(value) -> dict:
    """A label's ``extra`` as a dict, from its JSON text (``_current_rows``) or a row of this
    write (already a dict)."""
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def _found_items(s: Session, keys: Iterable[str], *, lock: bool = False) -> dict[str, Item]:
    """Key -> item for the keys that are items, one query per chunk. ``lock``: other writers
    wait for them until this transaction ends (``FOR UPDATE``; SQLite: ``_hold_writes``)."""
    if lock:
        _hold_writes(s)
    wanted = sorted(set(keys))
    found = {}
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start:start + CHUNK]
        query = select(Item).where(Item.key.in_(chunk))
        if lock:
            # Rows locked in key order, the same in every process: no deadlock between two.
            query = query.order_by(Item.key).with_for_update()
        found.update((i.key, i) for i in s.scalars(query))
    return found


def _hold_writes(s: Session) -> None:
    """On SQLite, take the database's write lock now, before the reads a write depends on:
    its driver opens a transaction only at the first INSERT or UPDATE, so what was read before
    could be stale by then. (PostgreSQL: the rows' ``FOR UPDATE`` locks do it; a later
    statement sees what the writer before committed.)"""
    connection = s.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if not raw.in_transaction:  # already writing: the lock is held
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits up to busy_timeout


def _items_by_key(s: Session, keys: Iterable[str], *, lock: bool = False) -> dict[str, Item]:
    wanted = set(keys)
    found = _found_items(s, wanted, lock=lock)
    missing = wanted - found.keys()
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise StoreError(f"unknown item key(s): {shown}{more}; ingest the images first")
    return found


def _current_by_item(s: Session, item_ids: list[int]) -> dict[int, Label]:
    out: dict[int, Label] = {}
    for start in range(0, len(item_ids), CHUNK):
        chunk = item_ids[start:start + CHUNK]
        rows = s.scalars(
            select(Label).where(Label.item_id.in_(chunk), Label.superseded_at.is_(None)))
        out.update((lab.item_id, lab) for lab in rows)
    return out


_ITEM_COLUMNS = (Item.key, Item.path, Item.size_bytes, Item.width, Item.height, Item.status,
                 Item.added_at)
_LABEL_COLUMNS = (Label.label, Label.source, Label.who, Label.model_version, Label.confidence,
                  Label.round_id, Label.created_at, Label.superseded_at, Label.extra, Label.value)


def _item_record(i: Item) -> ItemRecord:
    return ItemRecord(i.key, i.path, i.size_bytes, i.width, i.height, i.status, i.added_at)


def _row_label_record(row) -> LabelRecord:
    """A label record from (item key, *_LABEL_COLUMNS)."""
    return LabelRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                       dict(row[9] or {}), row[10])


def _item_ids(s: Session, keys: list[str], *, lock: bool = False) -> list[tuple[str, int]]:
    """(key, item id) of those of ``keys`` that are items. ``lock`` (keys sorted): other
    writers wait for these items until this transaction ends, as in ``_found_items``."""
    if lock:
        _hold_writes(s)
    query = select(Item.key, Item.id)
    # PostgreSQL locks row by row, in key order: chunks, never a scan locking every item.
    row_locks = lock and s.connection().dialect.name != "sqlite"
    if row_locks:
        query = query.order_by(Item.key).with_for_update()
    return [(key, item_id) for key, item_id in
            rows_where_in(s, query, Item.key, keys, scan=not row_locks)]


def _label_record(key: str, lab: Label) -> LabelRecord:
    return LabelRecord(key, lab.label, lab.source, lab.who, lab.model_version, lab.confidence,
                       lab.round_id, lab.created_at, lab.superseded_at, dict(lab.extra or {}),
                       lab.value)
