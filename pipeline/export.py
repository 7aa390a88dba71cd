"""Export the labeled dataset with the provenance of every label.

Formats (``EXPORT_FORMATS``):
- ``csv``: one file, a row per labeled item, columns ``COLUMNS``; ``path`` is the image's path
  as ingested.
- ``imagefolder``: ``OUT/<class>/<file>`` (the layout torchvision's ``ImageFolder`` reads), one
  folder per project class even when empty so class indices stay stable, plus
  ``OUT/provenance.csv`` with the same columns, ``path`` relative to ``OUT``. Images are hard
  links when ``OUT`` is on the images' filesystem (no space used; editing one edits the other),
  copies otherwise. A name taken twice in a class gets the first 12 hex digits of the item key.

What is exported: each item's label in force (the newest; a person's label always outranks a
machine's, see ``labeling.store``). Left out, and counted in the report: items without a label,
items marked ``skipped`` or ``disagreement`` (people could not tell or agree on their class, so
an older label is not trusted either), files quarantined at their path, files that are gone
from disk, and files that now hold other bytes than the item's (overwritten or swapped since
ingest: the label would go out with another image; ``other_bytes``). ``human_only`` keeps
people's labels: answers, seed and imported labels.

The store is read in one SELECT statement, so the export is a consistent snapshot even while a
round writes. The result is written beside ``OUT`` under a temporary name and renamed into
place, so ``OUT`` never holds half an export. An existing ``OUT`` is refused unless ``force``;
even with ``force`` a folder is replaced only if it holds a previous export
(``provenance.csv``), so a mistyped ``--out`` cannot delete an unrelated folder, and nothing
besides it: a folder export lists the files it wrote (``.labelloop-files``), and a file added
there since is named in the refusal.
"""

from __future__ import annotations

import csv
import errno
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import and_, exists, select

from labeling.schema import PEOPLE_SOURCES, Item, Label, Quarantine
from labeling.seen_files import GONE_REASON, read_before, unusable_items
from labeling.store import LabelStore, bytes_key, file_key
from labeling.tasks.base import TaskType
from labeling.tasks.registry import DEFAULT_TASK, get_task_type
from pipeline.export_rows import COLUMNS, PROVENANCE_FILE, ExportError, ExportRow
from pipeline.files import added_files, replace_folder, temp_folder_beside, write_file_atomic
from training.sources import RemoteUnavailable, is_remote, read_bytes

# The formats of the default task type; ``task`` narrows them for a project of another kind.
EXPORT_FORMATS = get_task_type(DEFAULT_TASK).export_formats
# Formats written as one file; the others are folders holding a PROVENANCE_FILE.
FILE_FORMATS = ("csv", "coco")
HUMAN_SOURCES = PEOPLE_SOURCES  # --human-only keeps these
EXCLUDED_STATUSES = ("skipped", "disagreement")


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and what it left out, with counts per reason."""

    out: Path
    format: str
    by_source: dict[str, int]
    left_out: dict[str, int]
    missing: list[str] = field(default_factory=list)  # paths of labeled files gone from disk
    # Paths of labeled files that now hold other bytes than their item's (overwritten).
    changed: list[str] = field(default_factory=list)
    # What the certificate counts, read with the rows (``labeled_rows``).
    counts: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.by_source.values())


def export_labels(
    store: LabelStore,
    out: str | Path,
    *,
    format: str,
    classes: Iterable[str] = (),
    human_only: bool = False,
    force: bool = False,
    task: TaskType | None = None,
) -> ExportReport:
    """Write the labeled items of ``store`` to ``out`` as ``format`` (module docstring).

    ``classes`` (the project's) become folders of an imagefolder export even when empty.
    Raises ``ExportError`` for an unknown format, an existing ``out`` without ``force``, or a
    class name that cannot be a folder name.
    """
    check_format(format, task)
    out = Path(out).expanduser().absolute()
    _check_target(out, format, force=force)
    rows, left_out, counts = labeled_rows(store, human_only=human_only)
    # An S3 object is not looked up here (a request each): what the last ingest found of it
    # counts (an object deleted or replaced since: ``unusable_items``), and an imagefolder
    # export checks the bytes it copies.
    unusable = unusable_items(store) if any(is_remote(r.path) for r in rows) else {}
    missing = [r.path for r in rows if (unusable.get(r.item_key) == GONE_REASON
                                        if is_remote(r.path) else not os.path.isfile(r.path))]
    gone = set(missing)
    present = [r for r in rows if r.path not in gone]
    changed = other_bytes(store, [r for r in present if not is_remote(r.path)])
    changed |= {r.item_key for r in present if is_remote(r.path) and r.item_key in unusable}
    present = [r for r in present if r.item_key not in changed]
    out.parent.mkdir(parents=True, exist_ok=True)
    if task is not None and task.name == "detection":
        from pipeline.export_boxes import write_boxes  # noqa: PLC0415 - boxes only

        write_boxes(out, present, format=format, classes=tuple(classes))
    elif format == "csv":
        _write_csv_atomic(out, present)
    else:
        present, not_copied = _write_imagefolder(out, present, classes)
        missing += not_copied["missing"]
        changed |= not_copied["changed"]
    if missing:
        left_out["missing_file"] = len(missing)
    if changed:
        left_out["changed_file"] = len(changed)
    by_source = dict(sorted(Counter(r.source for r in present).items()))
    path_of = {r.item_key: r.path for r in rows}
    return ExportReport(out, format, by_source, left_out, sorted(missing),
                        sorted(path_of[k] for k in changed if k in path_of), counts)


def check_format(format: str, task: TaskType | None) -> None:
    """Raise ``ExportError`` unless ``format`` is one of ``task``'s (default: classes)."""
    formats = (task or get_task_type(DEFAULT_TASK)).export_formats
    if format not in formats:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(formats)}")


def other_bytes(store: LabelStore, rows: list[ExportRow]) -> set[str]:
    """Keys of the ``rows`` whose file now holds other bytes than the item's: overwritten or
    swapped with another file since ingest read it, so that its label would go out with another
    image. A file as ingest last read it (size and modification time unchanged, the key the
    item's) is not read again; any other is hashed. Not the change time: the hard links of an
    imagefolder export change it, and every later export would hash the whole dataset."""
    before = read_before(store, [r.path for r in rows])
    out = set()
    for r in rows:
        try:
            st = os.stat(r.path)
            stamp, key = before.get(r.path, ((None, None, None), None))
            if key == r.item_key and stamp[:2] == (st.st_size, st.st_mtime_ns):
                continue
            if file_key(r.path)[0] != r.item_key:
                out.add(r.item_key)
        except OSError:  # gone or unreadable since the check above: not this image either
            out.add(r.item_key)
    return out


def labeled_rows(store: LabelStore, *, human_only: bool = False
                 ) -> tuple[list[ExportRow], dict[str, int], dict]:
    """The exportable items (sorted by path), how many were left out, by reason, and what the
    certificate counts, from the same read (``LabelStore.delivery_counts``' figures as
    ``{"by_source": {source: (delivered, held back)}, "items": n}``): a round writing labels
    meanwhile cannot give the file and its certificate different labels (a user's review: 54
    machine rows beside a certificate counting 412)."""
    quarantined = exists().where(Quarantine.path == Item.path)
    query = (
        select(Item.key, Item.path, Item.status, quarantined.label("quarantined"), Label)
        .outerjoin(Label, and_(Label.item_id == Item.id, Label.superseded_at.is_(None)))
        .order_by(Item.path, Item.key)
    )
    rows: list[ExportRow] = []
    left_out: Counter[str] = Counter()
    ok: Counter[str] = Counter()
    held: Counter[str] = Counter()
    items = 0
    with store.transaction() as s:
        # One statement: SQLite reads it from one snapshot, even while a round commits.
        for key, path, status, is_quarantined, lab in s.execute(query):
            items += 1
            if lab is not None:
                (held if is_quarantined or status in EXCLUDED_STATUSES else ok)[lab.source] += 1
            if is_quarantined:
                left_out["quarantined"] += 1
            elif status in EXCLUDED_STATUSES:
                left_out[status] += 1
            elif lab is None:
                left_out["unlabeled"] += 1
            elif human_only and lab.source not in HUMAN_SOURCES:
                left_out["machine_label"] += 1
            else:
                rows.append(ExportRow(path, lab.label, lab.source, lab.who, lab.model_version,
                                      lab.confidence, lab.round_id, _utc_text(lab.created_at),
                                      key, lab.value))
    counts = {"by_source": {src: (ok[src], held[src]) for src in sorted({*ok, *held})},
              "items": items}
    return rows, dict(sorted(left_out.items())), counts


def _utc_text(when: datetime) -> str:
    # SQLite hands back naive datetimes; the store writes UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def check_kind(out: Path, format: str) -> None:
    """Raise ``ExportError`` where ``out`` is a folder and ``format`` writes a file, or the
    other way round."""
    if format in FILE_FORMATS and out.is_dir():
        raise ExportError(f"--out {out} is a folder; a {format} export is a file: give a "
                          "file name")
    if format not in FILE_FORMATS and out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; a {format} export is a folder")


def _check_target(out: Path, format: str, *, force: bool) -> None:
    if not out.exists():
        return
    check_kind(out, format)
    if format in FILE_FORMATS:
        if not force:
            raise ExportError(f"{out} exists; pass --force to replace it, or choose another "
                              "--out")
        if not _was_exported(out, format):
            # As for folders: --force once replaced the label store itself (--out
            # .labelloop/labels.db), and every label with it (a user's review).
            raise ExportError(f"{out} is not a labelloop {format} export, and --force "
                              "replaces only those: choose another --out, or move it away")
        return
    if not any(out.iterdir()):
        return
    if not force:
        raise ExportError(f"{out} is not empty; pass --force to replace a previous export, or "
                          "choose a new or empty folder")
    if not (out / PROVENANCE_FILE).is_file():
        raise ExportError(f"{out} is not empty and holds no {PROVENANCE_FILE}, so it is not a "
                          "labelloop export; --force replaces only those. Choose another --out")
    if added := added_files(out):
        raise ExportError(f"{out} holds {len(added)} file(s) the earlier export did not write "
                          f"(e.g. {added[0]}), which --force would delete with it: move them "
                          "out, or choose another --out")


def _was_exported(path: Path, format: str) -> bool:
    """Whether the file at ``path`` begins as a ``format`` export of labelloop's does (a CSV's
    header, whatever the task; COCO's info line)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8-sig", errors="replace")  # saved again by Excel
    except OSError:
        return False
    if format == "csv":
        header = next(csv.reader([head.splitlines()[0] if head else ""]), [])
        return header[:2] == ["path", "label"] and "source" in header
    return '"description": "labelloop export"' in head


def _write_csv(path: Path, rows: list[ExportRow], paths: list[str] | None = None) -> None:
    """The rows as CSV, ``paths`` in place of the rows' own when given; fsynced."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row, name in zip(rows, paths or [r.path for r in rows], strict=True):
            writer.writerow(row.as_csv(name))
        f.flush()
        os.fsync(f.fileno())


def _write_csv_atomic(out: Path, rows: list[ExportRow]) -> None:
    write_file_atomic(out, lambda tmp: _write_csv(tmp, rows))


def _write_imagefolder(out: Path, rows: list[ExportRow], classes: Iterable[str]
                       ) -> tuple[list[ExportRow], dict]:
    """Write the folder; returns the rows written, and of the S3 rows not written, the paths
    of objects gone (``missing``) and the keys of those whose bytes are not the item's
    (``changed``: replaced since the last ingest)."""
    classes = list(classes)
    names = list(dict.fromkeys([*classes, *(r.label for r in rows)]))
    bad = [c for c in names if c in ("", ".", "..") or "/" in c or "\\" in c or "\0" in c
           or c == PROVENANCE_FILE]
    if bad:
        raise ExportError(f"class name(s) {', '.join(map(repr, bad))} cannot be folder names; "
                          "use --format csv")
    known = set(classes)
    unknown = Counter(r.label for r in rows if r.label not in known) if classes else {}
    if unknown:
        # A folder per such label made an extra class that shifts every class's number in
        # torchvision's ImageFolder (a class renamed in labelloop.toml: "nine" beside "9").
        listed = ", ".join(f"{label!r} ({n} image(s))" for label, n in sorted(unknown.items()))
        raise ExportError(f"labels {listed} are not among [project] classes (removed or "
                          "renamed in labelloop.toml?), so an imagefolder export would add a "
                          "class folder for them: put them back in the classes, or export "
                          "--format csv, which writes labels as text")
    tmp = temp_folder_beside(out)
    try:
        for name in names:
            (tmp / name).mkdir()
        taken: set[tuple[str, str]] = set()
        relative, written = [], []
        not_copied: dict = {"missing": [], "changed": set()}
        for row in rows:
            if is_remote(row.path):
                data = _object_bytes(row.path)
                if data is None:
                    not_copied["missing"].append(row.path)
                    continue
                if bytes_key(data) != row.item_key:  # replaced since the last ingest
                    not_copied["changed"].add(row.item_key)
                    continue
                rel = _file_name(row, taken)
                (tmp / rel).write_bytes(data)
            else:
                rel = _file_name(row, taken)
                _link_or_copy(Path(row.path), tmp / rel)
            relative.append(rel)
            written.append(row)
        _write_csv(tmp / PROVENANCE_FILE, written, relative)
        replace_folder(tmp, out)
        return written, not_copied
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _object_bytes(path: str) -> bytes | None:
    """An S3 object's bytes; None if it is gone. S3 out of reach is an ``ExportError``."""
    try:
        return read_bytes(path)
    except FileNotFoundError:
        return None
    except (RemoteUnavailable, OSError) as err:  # S3 out of reach, refused, timed out
        raise ExportError(f"cannot read {path}: {err}; nothing was written") from None


def _file_name(row: ExportRow, taken: set[tuple[str, str]]) -> str:
    """``<class>/<file name>``, the item key's first 12 hex digits added when the name is taken
    (case-insensitive, for filesystems that ignore case)."""
    name = Path(row.path).name
    if (row.label, name.lower()) in taken:
        stem, suffix = Path(name).stem, Path(name).suffix
        # The digest, not the "sha256:" prefix: a colon is no character for a file name.
        name = f"{stem}-{row.item_key.rpartition(':')[2][:12]}{suffix}"
    taken.add((row.label, name.lower()))
    return f"{row.label}/{name}"


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError as err:
        # Another filesystem, or one without hard links: copy instead.
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst)
