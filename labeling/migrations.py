"""Schema versions of the label store, and the steps that bring an older store up to date.

Version 1: the store as the first releases wrote it (no version recorded).
Version 2: ``labels.value`` (a label's typed value, JSON, where it is more than a class name),
the ``second_opinions`` table, and the ``store_meta`` table that records the version.
Version 3: the ``item_thumbs`` table (thumbnails and near-duplicate groups, filled at ingest).
Version 4: ``studio_annotations.value`` (an answer's typed value: a detection's boxes).
Version 5: the ``seen_files`` table (what ingest read, so the next ingest reads only what changed).
Version 6: indexes on ``items.status`` (``labelloop status`` counts skipped and disputed items
without reading the pool) and on ``labels (item_id, superseded_at)`` (an item's label in force in
one probe, where SQLite otherwise walks every current label per lookup).

``migrate`` runs when a store is opened, in one transaction: a store killed half-way through a
migration is left at its old version and migrates again next time. Each step only adds (a
column, a table, an index), so code that reads a newer store's older columns keeps working,
and no label is rewritten. A store newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from labeling.schema import Base, StoreMeta

SCHEMA_VERSION = 6
# The PostgreSQL advisory lock that migrations hold, per database ("labelloop" in ASCII).
_MIGRATION_LOCK = 0x6C6162656C6C6F6F


class SchemaError(ValueError):
    """The store's schema is not one this version of labelloop can open."""


def migrate(engine: Engine) -> int:
    """Create missing tables, bring an older store to ``SCHEMA_VERSION``; return the version
    the store was at when opened (0 for a new store)."""
    with engine.connect() as conn:  # a store that is up to date is opened without a lock
        found = _version(conn, set(inspect(conn).get_table_names()))
    if found == SCHEMA_VERSION:
        return found
    with engine.begin() as conn:
        # Two processes opening a new store at once: the second waits until the first made it,
        # then finds it made (without the lock both would create the tables).
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the file's write lock, up to busy_timeout
        tables = set(inspect(conn).get_table_names())
        found = _version(conn, tables)
        if found > SCHEMA_VERSION:
            raise SchemaError(f"the label store is at schema version {found}, newer than this "
                              f"labelloop's {SCHEMA_VERSION}; upgrade labelloop")
        if found == 1:
            _add_column(conn, "labels", "value", "JSON")
        if 1 <= found < 4 and "studio_annotations" in tables:
            _add_column(conn, "studio_annotations", "value", "JSON")
        if 1 <= found < 6:  # create_all adds no index to a table that exists
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_items_status ON items (status)"))
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_labels_item_current "
                              "ON labels (item_id, superseded_at)"))
        Base.metadata.create_all(conn)
        if found < SCHEMA_VERSION:
            conn.execute(StoreMeta.__table__.delete().where(StoreMeta.key == "schema_version"))
            conn.execute(StoreMeta.__table__.insert().values(key="schema_version",
                                                             value=str(SCHEMA_VERSION)))
    return found


def _add_column(conn, table: str, column: str, sql_type: str) -> None:
    if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def _version(conn, tables: set[str]) -> int:
    if "items" not in tables:
        return 0
    if "store_meta" not in tables:
        return 1
    row = conn.execute(text("SELECT value FROM store_meta WHERE key = 'schema_version'")).first()
    return int(row[0]) if row else 1
