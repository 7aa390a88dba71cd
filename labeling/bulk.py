"""Bulk reads and writes of the label store, for the writes a round makes at a million items.

SQLAlchemy's per-row work (parameter processing, expanding ``IN`` lists, ``Row`` objects)
costs several times the database's own at that size: after a promotion a round re-issues every
machine label, which is a million rows. These helpers send plain rows to the driver with each
value through its column's own bind processor (exactly what SQLAlchemy would send), and read a
large set of rows with one scan instead of thousands of chunked ``IN`` queries.
"""

from __future__ import annotations

from operator import add, itemgetter

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
    processors = {n: table.c[n].type._cached_bind_processor(dialect) for n in rows[0]}
    # Columns sent as they are first, converted ones after: tuples built in C, then joined.
    plain = [n for n, f in processors.items() if f is None]
    converted = [(n, memoized(f)) for n, f in processors.items() if f is not None]
    names = plain + [n for n, _ in converted]
    quoted = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({quoted}) "
           f"VALUES ({', '.join([mark] * len(names))})")
    pick_plain = _tuple_getter(plain)
    for start in range(0, len(rows), _ROWS_PER_CALL):
        chunk = rows[start:start + _ROWS_PER_CALL]
        columns = []
        for name, convert in converted:
            values = list(map(itemgetter(name), chunk))
            columns.append([convert(values[0])] * len(values) if _one_value(values)
                           else list(map(convert, values)))
        params = list(map(pick_plain, chunk))
        if columns:
            params = list(map(add, params, zip(*columns, strict=True)))
        connection.exec_driver_sql(sql, params)


def _tuple_getter(names: list[str]):
    """``row -> tuple of row[n] for n in names``, in C (``itemgetter`` of one name returns the
    value itself, of none is not allowed)."""
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        one = itemgetter(names[0])
        return lambda row: (one(row),)
    return lambda row: ()


def _one_value(column: list) -> bool:
    """Whether every value of ``column`` converts as its first does (one timestamp, None or an
    empty ``extra`` on every row): equal, of one type, and not a container with contents
    (``{"a": 1} == {"a": True}``, which JSON tells apart). Counted in C, not row by row."""
    first = column[0]
    if isinstance(first, dict | list | tuple) and first:
        return False
    return column.count(first) == len(column) and len(set(map(type, column))) == 1


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

