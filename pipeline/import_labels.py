"""Labels a team already has, brought into the store: a ``path,label`` CSV, or an ImageFolder
tree (``DIR/<class>/<image>``).

The images are ingested first (``pipeline.ingest``: hashed, decoded, bad ones quarantined), then
each good row becomes a label with source ``import`` (people's labels that came with
the data) and ``who = "import:<file or folder name>"``. Imported labels train models, and are
never picked as held-out items: the validation and audit sets stay random draws from the
loop's own picks, answered by the project's annotators, so the bounds stay valid. The
certificate counts imported labels with the people's, assuming they are as accurate as the
measured annotators (it cannot measure them); see the README.

Rows are checked one by one and the bad ones are listed with their reason (an unknown class, a
missing file, an image that was quarantined, a path outside the folder); the good ones are
written in one transaction. A person's label from Label Studio is never overwritten by an
import; importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from labeling.schema import PEOPLE_SOURCES
from labeling.selections import picks
from labeling.store import LabelStore, NewLabel, StoreError, file_key
from labeling.tasks.base import TaskType
from pipeline.ingest import IngestError, IngestReport, Rejected, ingest_folder


@dataclass(frozen=True)
class ImportReport:
    """What one import did: labels written, left as they were, kept because a person's label
    differs, and the rows refused with their reason."""

    ingest: IngestReport
    added: int = 0
    unchanged: int = 0
    kept_people: list[str] = field(default_factory=list)
    refused: list[Rejected] = field(default_factory=list)


def import_csv(store: LabelStore, csv_path: Path, images: Path, task: TaskType,
               classes: tuple[str, ...], *, max_pixels: int) -> ImportReport:
    """Ingest ``images`` and label the files ``csv_path`` lists (paths relative to the CSV's
    folder; they must lie inside ``images``)."""
    rows, malformed = _csv_rows(csv_path)
    report = ingest_folder(store, images, max_pixels=max_pixels)
    imported = _write(store, report, rows, task, classes, who=f"import:{csv_path.name}",
                      no_label="no label")
    return replace(imported, refused=malformed + imported.refused)


def import_imagefolder(store: LabelStore, root: Path, task: TaskType,
                       classes: tuple[str, ...], *, max_pixels: int) -> ImportReport:
    """Ingest ``root`` and label each image by the name of its top folder under ``root``."""
    report = ingest_folder(store, root, max_pixels=max_pixels)
    rows = []
    for path in [*(a.path for a in report.added), *report.already_present,
                 *(d.path for d in report.duplicates)]:
        parts = Path(path).relative_to(report.root).parts
        rows.append((path, parts[0] if len(parts) > 1 else ""))
    return _write(store, report, rows, task, classes, who=f"import:{report.root.name}",
                  no_label="no label: the image is not inside a class folder")


def _csv_rows(csv_path: Path) -> tuple[list[tuple[str, str]], list[Rejected]]:
    """(absolute path, label) per row, and the rows refused for having more fields than the
    header (an unquoted comma in a path or label reads as one: what it meant is not known);
    header and file problems raise ``IngestError``."""
    csv_path = Path(csv_path).expanduser().absolute()
    try:
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header.
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"path", "label"} <= set(reader.fieldnames or []):
                raise IngestError(f"{csv_path} must start with the header path,label; found: "
                                  f"{','.join(reader.fieldnames or []) or 'nothing'}")
            rows, malformed = [], []
            for r in reader:
                path = (r["path"] or "").strip()
                path = str((csv_path.parent / path).resolve()) if path else ""
                if r.get(None):  # DictReader puts fields past the header under None
                    malformed.append(Rejected(path or "(empty path)", f"line {reader.line_num}: "
                                              f"more fields than the header (quote a path or "
                                              f"label that holds a comma)"))
                    continue
                rows.append((path, (r["label"] or "").strip()))
            return rows, malformed
    except FileNotFoundError:
        raise IngestError(f"labels file not found: {csv_path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise IngestError(f"{csv_path} cannot be read as a UTF-8 CSV: {err}") from None


def _write(store: LabelStore, report: IngestReport, rows: list[tuple[str, str]],
           task: TaskType, classes: tuple[str, ...], *, who: str,
           no_label: str) -> ImportReport:
    quarantined = {q.path: q.reason for q in report.quarantined}
    keys_by_path = {i.path: i.key for i in report.added}
    current = store.current_labels()
    wanted: dict[str, tuple[str, str]] = {}  # key -> (path, label)
    refused: list[Rejected] = []
    # One spelling of a class: a folder name macOS wrote decomposed (NFD), or a label typed
    # composed, is the class as the config spells it.
    spelled = {unicodedata.normalize("NFC", c): c for c in classes}
    rows = [(path, spelled.get(unicodedata.normalize("NFC", label), label))
            for path, label in rows]
    checked = [(path, label, _row_problem(path, label, task, classes, report.root,
                                          quarantined) if label or not path else no_label)
               for path, label in rows]
    keys = {path: keys_by_path.get(path) or file_key(path)[0]
            for path, _, reason in checked if reason is None}
    pooled = store.existing_keys(keys.values())
    rows_of: dict[str, list[tuple[str, str]]] = {}  # key -> its rows (path, label)
    for path, label, reason in checked:
        if reason is None and keys[path] not in pooled:
            reason = "not in the pool: ingest reads only image files (see its table)"
        if reason is None:
            rows_of.setdefault(keys[path], []).append((path, label))
            continue
        refused.append(Rejected(path or "(empty path)", reason))
    for key, found in rows_of.items():
        if len({label for _, label in found}) == 1:
            wanted[key] = found[0]
            continue
        # One image, two labels: at least one is wrong, and which is not known (in a folder
        # tree the first is only the walk's order). Neither is imported.
        said = ", ".join(f"{label!r} ({path})" for path, label in found)
        refused += [Rejected(path, f"the same image is labeled {said}; neither is imported: "
                                   "fix the file and import it again") for path, _ in found]
    held_out = set(picks(store, holdout=True))
    held_back = {k: s for s in ("skipped", "disagreement") for k in store.item_keys(status=s)}
    kept, unchanged, new = [], 0, []
    for key, (path, label) in wanted.items():
        now = current.get(key)
        if now is not None and now.source == "human" and now.label != label:
            kept.append(path)  # a person said otherwise in Label Studio: theirs stands
        elif now is not None and now.source in PEOPLE_SOURCES and now.label == label:
            unchanged += 1
        elif key in held_out:
            refused.append(Rejected(path, "held out for the random validation sample: its "
                                          "label comes from the project's annotators in Label "
                                          "Studio (an imported one would bias the bounds)"))
        elif key in held_back:
            why = "skipped" if held_back[key] == "skipped" else "disputed"
            refused.append(Rejected(path, f"{why} by people in Label Studio, so no label of it "
                                          "is used: answer it there"))
        else:
            new.append(NewLabel(key=key, label=label, source="import", who=who))
    try:
        store.add_labels(new, classes=classes)
    except StoreError as err:
        raise IngestError(f"no label was imported: {err}") from None
    return ImportReport(report, added=len(new), unchanged=unchanged, kept_people=kept,
                        refused=refused)


def _row_problem(path: str, label: str, task: TaskType, classes: tuple[str, ...], root: Path,
                 quarantined: dict[str, str]) -> str | None:
    if not path:
        return "empty path"
    try:
        task.validate_label(label, classes)
    except ValueError as err:
        return str(err)
    if path in quarantined:
        return f"the image was quarantined: {quarantined[path]}"
    if not Path(path).is_file():
        return "no such file"
    if root not in Path(path).parents:
        return f"outside the image folder {root}: move it there, or list it from there"
    return None
