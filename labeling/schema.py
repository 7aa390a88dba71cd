"""Tables of the label store.

Vocabulary: an *item* is one unique image (keyed by the SHA-256 of its bytes); a *label* is what
someone (``source``: seed, human or machine) says about an item: its ``label`` text (a class
name) and, where the task type's value is more than that, its JSON ``value``. Labels are
append-only: a newer label *supersedes* an older one (``superseded_at`` is set), nothing is
overwritten.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SOURCES = ("seed", "human", "import", "machine")
# Higher rank wins. Seed labels are human labels that came with the data; import labels are
# the ones a team brought in (`labelloop ingest --labels/--imagefolder`, pipeline/import_labels).
SOURCE_RANK = {"machine": 0, "human": 1, "seed": 1, "import": 1}
# Labels given by people (in Label Studio, or brought in): they train models and outrank the
# machine; only the loop's random picks among them are held out.
PEOPLE_SOURCES = ("human", "seed", "import")

ITEM_STATUSES = ("ok", "skipped", "disagreement")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True, index=True)
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Indexed from schema version 6: status counts and the pool's "ok" items without a scan.
    status: Mapped[str] = mapped_column(String(20), default="ok", index=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Quarantine(Base):
    """A file that could not enter the pool, with the reason shown to the user."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    key: Mapped[str | None] = mapped_column(String(80), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Round(Base):
    __tablename__ = "rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    stats: Mapped[dict] = mapped_column(JSON, default=dict)


class Label(Base):
    __tablename__ = "labels"
    # An item's label in force, found by (item, not superseded) in one index probe: with only
    # the single-column indexes SQLite walks every current label for each item looked up.
    # Added in schema version 6.
    __table_args__ = (Index("ix_labels_item_current", "item_id", "superseded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(10))
    who: Mapped[str | None] = mapped_column(String(200), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    # Free-form provenance: Label Studio annotation ids, lead time, whether the human changed
    # the pre-annotation ...
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    # The typed value where it is more than a class name (e.g. a detection's boxes); None when
    # ``label`` is the whole value. Added in schema version 2 (see labeling.migrations).
    value: Mapped[object | None] = mapped_column(JSON, nullable=True)


class StoreMeta(Base):
    """Facts about the store itself: ``schema_version`` (see ``labeling.migrations``)."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Task(Base):
    """A Label Studio task created for an item. One per (project, item), enforced by the DB."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("project_id", "item_id", name="uq_task_project_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    task_id: Mapped[int] = mapped_column(Integer, index=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class ItemThumb(Base):
    """An item's 16x16 grey thumbnail (256 bytes) and its near-duplicate group: the key of the
    first item it was found nearly identical to, or its own key (``labeling.near_duplicates``).
    Written at ingest; items ingested before schema version 3 have none."""

    __tablename__ = "item_thumbs"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    thumb: Mapped[bytes] = mapped_column(LargeBinary)
    group_key: Mapped[str] = mapped_column(String(80), index=True)


class SeenFile(Base):
    """A file that ingest read, as it was then: its size, modification and change times (ns)
    and the key of its bytes (None when it could not be read). A later ingest whose stat of
    the path shows the same three reads nothing: only new or changed files are hashed and
    decoded. The change time is in it because a copy that keeps the modification time
    (``cp -p``, rsync) still sets it."""

    __tablename__ = "seen_files"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(String(80), nullable=True)


SELECTION_REASONS = ("random", "audit", "strategy")


class Selection(Base):
    """Why an item was sent to people. Random and audit picks are an unbiased sample: only they
    may serve as evaluation and validation data (``holdout``); strategy picks are biased toward
    what the model finds hard. An item is selected at most once."""

    __tablename__ = "selections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), unique=True)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    reason: Mapped[str] = mapped_column(String(10))
    holdout: Mapped[bool] = mapped_column(Boolean, default=False)
    # The machine label the item had when picked (audits measure auto-accept precision).
    machine_label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    machine_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SecondOpinion(Base):
    """A task whose overlap labelloop raised so that another person answers (see
    ``labeling.studio.opinions``); one row per raise."""

    __tablename__ = "second_opinions"
    __table_args__ = (UniqueConstraint("project_id", "item_id", "overlap",
                                       name="uq_opinion_item_overlap"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    task_id: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StudioTaskSync(Base):
    """labelloop's last view of one Label Studio task, the sync cursor: a task whose
    ``updated_at`` or set of annotation ids differs from this row is read again (Label Studio
    bumps a task's ``updated_at`` when one of its annotations is created, changed or deleted).
    ``outcome``: pending, labeled, skipped or disagreement (see ``labeling.studio.consensus``)."""

    __tablename__ = "studio_task_sync"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    # Task ids are global across the server's projects.
    task_id: Mapped[int] = mapped_column(Integer, unique=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), nullable=True, index=True)
    updated_at: Mapped[str] = mapped_column(String(40), default="")
    annotation_ids: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(20), default="pending")
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StudioAnnotation(Base):
    """A mirror of one Label Studio annotation as last synced (skips and rejected ones too).
    ``rejected`` says why it does not count as a vote (e.g. a label that is not a class)."""

    __tablename__ = "studio_annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    annotation_id: Mapped[int] = mapped_column(Integer, unique=True)
    project_id: Mapped[int] = mapped_column(Integer, index=True)
    task_id: Mapped[int] = mapped_column(Integer, index=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    who: Mapped[str | None] = mapped_column(String(200), nullable=True)
    choice: Mapped[str | None] = mapped_column(String(200), nullable=True)
    was_cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    rejected: Mapped[str | None] = mapped_column(Text, nullable=True)
    lead_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The pre-annotation shown when it was made, and whether the person changed it.
    predicted: Mapped[str | None] = mapped_column(String(200), nullable=True)
    prediction_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    changed_prediction: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The answer's typed value where ``choice`` is only its summary (a detection's boxes).
    # Added in schema version 4 (see labeling.migrations).
    value: Mapped[object | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40), default="")
    updated_at: Mapped[str] = mapped_column(String(40), default="")
