"""Bulk reads and writes of the label store, for the writes a round makes at a million items.

SQLAlchemy's per-row work (parameter processing, expanding ``IN`` lists, ``Row`` objects)
costs several times the database's own at that size: after a promotion a round re-issues every
machine label, which is a million rows. These helpers send plain rows to the driver with each
value through its column's own bind processor (exactly what SQLAlchemy would send), and read a
large set of rows with one scan instead of thousands of chunked ``IN`` queries.
"""

from __future__ import annotations

from operator import itemgetter

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

# Keys or ids per IN (...) query: well under SQLite's limit on bound parameters.
CHUNK = 500
# From this many keys or ids on, one scan of the table (rows kept by set membership) beats
# CHUNK-sized IN queries: 2,000 of them at 1M cost seconds of statement compilation.
SCAN_AT = 20_000
# Rows per executemany: bounded memory for the converted parameters.
_ROWS_PER_CALL = 20_000
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def memoized(convert):
    """``convert`` remembering its results for repeated plain values (one timestamp, one round,
    an empty ``extra`` on every row of a write): JSON encoding is most of the cost per row."""
    if convert is None:
        return None
    seen: dict = {}

    def once(value):
        empty = isinstance(value, dict | list) and not value
        key = (type(value), len(value) if empty else value)  # 1, 1.0 and True: apart
        try:
            return seen[key]
        except KeyError:
            seen[key] = out = convert(value)
            return out
        except TypeError:  # unhashable and not empty: converted each time
            return convert(value)

    return once


def insert_rows(s: Session, table, rows: list[dict]) -> None:
    """Plain ``rows`` (same keys each) into ``table`` as the driver's own executemany, in the
    caller's transaction. Drivers of other parameter styles: SQLAlchemy's path."""
    connection = s.connection()
    dialect = connection.dialect
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:
        s.execute(insert(table), rows)
        return
    names = list(rows[0])
    convert = [memoized(table.c[n].type._cached_bind_processor(dialect)) for n in names]
    quoted = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({quoted}) "
           f"VALUES ({', '.join([mark] * len(names))})")
    pick = itemgetter(*names)
    for start in range(0, len(rows), _ROWS_PER_CALL):
        # Column by column, in C where nothing needs converting (most columns).
        columns = list(zip(*map(pick, rows[start:start + _ROWS_PER_CALL]), strict=True))
        columns = [c if f is None else list(map(f, c))
                   for c, f in zip(columns, convert, strict=True)]
        connection.exec_driver_sql(sql, list(zip(*columns, strict=True)))


def set_column(s: Session, column, ids: list[int], value) -> None:
    """``UPDATE table SET column = value WHERE id IN ids``, in the caller's transaction: chunked
    ``IN`` lists for a few ids, one driver executemany by primary key for many."""
    table = column.table
    connection = s.connection()
    dialect = connection.dialect
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None or len(ids) < SCAN_AT:
        for start in range(0, len(ids), CHUNK):
            s.execute(update(table).where(table.c.id.in_(ids[start:start + CHUNK]))
                      .values({column.name: value}))
        return
    processor = column.type._cached_bind_processor(dialect)
    sent = value if processor is None else processor(value)
    prep = dialect.identifier_preparer
    sql = (f"UPDATE {prep.format_table(table)} SET {prep.quote(column.name)} = {mark} "
           f"WHERE {prep.quote('id')} = {mark}")
    for start in range(0, len(ids), _ROWS_PER_CALL):
        connection.exec_driver_sql(sql, [(sent, i) for i in ids[start:start + _ROWS_PER_CALL]])


def rows_where_in(s: Session, query, column, values: list, *, scan: bool = True):
    """The rows of ``query`` whose ``column`` (selected first) is one of ``values``: chunked
    ``IN`` queries for a few values, one scan kept by set membership for many (``scan=False``
    keeps the chunks, e.g. where each chunk locks its rows)."""
    if scan and len(values) >= SCAN_AT:
        wanted = set(values)
        yield from (row for row in s.execute(query) if row[0] in wanted)
        return
    for start in range(0, len(values), CHUNK):
        yield from s.execute(query.where(column.in_(values[start:start + CHUNK])))

