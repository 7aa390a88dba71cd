"""What ingest has read (``schema.SeenFile``), so the next ingest reads only new or changed files.

A file counts as unchanged when its size, modification time and change time (all from one
``stat``) are what they were when it was read. The change time cannot be set by a program, so a
file replaced by a copy that keeps the old modification time is read again. The index is a
cache of the file system: losing it costs one full read, never a label.

An S3 object (``s3://`` path) has no change time: its stamp is its size, its last-modified time
and, in the change time's place, 60 bits of its ETag (a digest of its content for simple
uploads), all from the listing. An object overwritten within the same second with bytes of the
same size is then still read again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, select

from labeling.schema import Item, Quarantine, SeenFile
from labeling.store import LabelStore

_CHUNK = 500


class Stamp(NamedTuple):
    """A file as one ``stat`` saw it."""

    size_bytes: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of_object(cls, size: int, last_modified: datetime, etag: str) -> Stamp:
        """An S3 object as its listing saw it (see the module docstring)."""
        # Hashed: an ETag is hex for simple uploads but "hex-N" for multipart ones.
        tag = int.from_bytes(hashlib.sha256(etag.encode()).digest()[:8], "big") >> 4
        return cls(size, int(last_modified.timestamp()) * 1_000_000_000
                   + last_modified.microsecond * 1000, tag)


def seen_under(store: LabelStore, root: str) -> dict[str, tuple[int, int, int]]:
    """Path -> stamp of the files under the folder ``root`` (absolute) that ingest read."""
    prefix = root.rstrip(os.sep) + os.sep
    with store.transaction() as s:
        rows = s.execute(select(SeenFile.path, SeenFile.size_bytes, SeenFile.mtime_ns,
                                SeenFile.ctime_ns)
                         .where(SeenFile.path.startswith(prefix, autoescape=True))).all()
    # Plain tuples (a Stamp equals the tuple of its fields): a round builds this for every file.
    # SQLite's LIKE ignores ASCII case: the prefix is checked again, exactly.
    return {r[0]: (r[1], r[2], r[3]) for r in rows if r[0].startswith(prefix)}


def read_before(store: LabelStore, paths: Iterable[str]
                ) -> dict[str, tuple[tuple[int, int, int], str | None]]:
    """Path -> (stamp, key of its bytes or None for a bad image) of those of ``paths`` that
    ingest read, as it read them last."""
    wanted = list(dict.fromkeys(paths))
    out: dict[str, tuple[tuple[int, int, int], str | None]] = {}
    with store.transaction() as s:
        for start in range(0, len(wanted), _CHUNK):
            out.update((r[0], ((r[1], r[2], r[3]), r[4])) for r in s.execute(select(
                SeenFile.path, SeenFile.size_bytes, SeenFile.mtime_ns, SeenFile.ctime_ns,
                SeenFile.key).where(SeenFile.path.in_(wanted[start:start + _CHUNK]))))
    return out


def record_seen(store: LabelStore, files: Mapping[str, tuple[Stamp, str | None]]) -> None:
    """Record (or replace) what was read: path -> (stamp, key of its bytes or None)."""
    store.forget_memo()
    paths = list(files)
    with store.transaction() as s:
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start:start + _CHUNK]
            s.execute(delete(SeenFile).where(SeenFile.path.in_(chunk)))
            s.execute(SeenFile.__table__.insert(), [
                {"path": p, "size_bytes": files[p][0].size_bytes,
                 "mtime_ns": files[p][0].mtime_ns, "ctime_ns": files[p][0].ctime_ns,
                 "key": files[p][1]} for p in chunk])


def still_seen_copies(store: LabelStore, gone: Iterable[str]) -> dict[str, str]:
    """Key -> another read file with the bytes of one of the ``gone`` files: where an item
    went when its file was copied elsewhere first and deleted later (cp, then rm; a move
    across file systems), a rename that an earlier ingest already read under the new name.
    Only gone files are looked up: an ingest with none costs nothing more. (``key`` has no
    index: each 500 gone files scan the index once, about 0.3 s at 1,000,000 files.)"""
    gone = list(dict.fromkeys(gone))
    keys: set[str] = set()
    with store.transaction() as s:
        for start in range(0, len(gone), _CHUNK):
            keys.update(k for k in s.scalars(select(SeenFile.key).where(
                SeenFile.path.in_(gone[start:start + _CHUNK]))) if k is not None)
        wanted, found, dropped = sorted(keys), {}, set(gone)
        for start in range(0, len(wanted), _CHUNK):
            for path, key in s.execute(select(SeenFile.path, SeenFile.key).where(
                    SeenFile.key.in_(wanted[start:start + _CHUNK]))):
                if path not in dropped:
                    found.setdefault(key, path)
    return found


def replaced_items(store: LabelStore) -> set[str]:
    """Keys of the items whose file held other bytes when ingest last read it: overwritten in
    place with another image whose own bytes are nowhere else in the folder (a file swapped or
    moved within it makes its item follow, ``pipeline.ingest``). Rounds leave them out - a
    round would read or show the other image under their labels - until their image is back
    (the next ingest reads it and the index holds their key again). One query on the index,
    no file read: a file overwritten since the last ingest is found by the next one. Kept in
    ``store.memo`` until the index or a path changes (1.7 s a query at 1,000,000 items, asked
    for by several steps of a round)."""
    if "replaced_items" not in store.memo:
        with store.transaction() as s:
            store.memo["replaced_items"] = frozenset(s.scalars(
                select(Item.key).join(SeenFile, SeenFile.path == Item.path)
                .where(SeenFile.key.is_not(None), SeenFile.key != Item.key)))
    return set(store.memo["replaced_items"])


# The stamp of an item's file that was gone at the last ingest: no stat equals it, so the file
# is read again when it comes back.
GONE = Stamp(-1, -1, -1)


# ``unusable_items``' reason for an item whose file an ingest found gone.
GONE_REASON = "the file is gone"


def unusable_items(store: LabelStore) -> dict[str, str]:
    """Item key -> why its image is not at its path now: the file holds another image
    (``replaced_items``), was gone at the last ingest (``mark_gone``), or holds bytes that are
    not a readable image (quarantined at that path by the last ingest). Rounds leave these
    items out - training, prediction and tasks would read a missing, broken or other image -
    and keep their labels; the next ingest after the image is back brings them back. Queries
    only (no file is read), kept in ``store.memo`` as ``replaced_items`` is."""
    if "unusable_items" not in store.memo:
        out = dict.fromkeys(replaced_items(store), "the file now holds another image")
        with store.transaction() as s:
            out.update((k, GONE_REASON) for k in s.scalars(
                select(Item.key).join(SeenFile, SeenFile.path == Item.path)
                .where(SeenFile.size_bytes == GONE.size_bytes, SeenFile.key.is_(None))))
            out.update((k, f"the file cannot be read ({why})") for k, why in s.execute(
                select(Item.key, Quarantine.reason).join(Quarantine, Quarantine.path == Item.path)))
        store.memo["unusable_items"] = out
    return dict(store.memo["unusable_items"])


def forget_seen(store: LabelStore, paths: Iterable[str]) -> None:
    """Drop files that are gone from the index (one that comes back is read again)."""
    store.forget_memo()
    wanted = list(dict.fromkeys(paths))
    with store.transaction() as s:
        for start in range(0, len(wanted), _CHUNK):
            s.execute(delete(SeenFile).where(SeenFile.path.in_(wanted[start:start + _CHUNK])))


def mark_gone(store: LabelStore, paths: Iterable[str]) -> None:
    """Record items' files that are gone (their items did not follow a copy): rounds leave
    those items out (``unusable_items``) until the files are back, when the next ingest reads
    them again (no stat equals ``GONE``)."""
    record_seen(store, dict.fromkeys(paths, (GONE, None)))


def item_paths_under(store: LabelStore, root: str) -> set[str]:
    """The paths of the items under the folder ``root`` (absolute): what an ingest compares
    with its listing to find items whose file is gone, in the index or not (files deleted
    before gone files were marked, an index lost). One scan of the items' paths."""
    prefix = root.rstrip("/") + "/"
    with store.transaction() as s:
        found = s.scalars(select(Item.path).where(Item.path.startswith(prefix, autoescape=True))
                          .distinct())
        # SQLite's LIKE ignores ASCII case: the prefix is checked again, exactly.
        return {p for p in found if p.startswith(prefix)}
