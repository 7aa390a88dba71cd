"""A simulated annotator: works through a project's pending tasks through the real API, as a
person would, answering from ground truth with some label noise and some skips.

The answer key is a labels CSV (header ``path,label``; paths relative to the CSV's folder, as
``labelloop datasets export`` writes it). Files are matched to tasks by content: each file's
SHA-256 is the item key that the task carries in ``data.item_key``.

Annotations are created as the API key's user, with a lead time, one request each and never
retried: a re-run after a failure simply continues with the tasks still pending.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeling.studio.connection import Studio
from labeling.studio.errors import StudioError
from labeling.studio.project import StudioProject
from labeling.studio.remote import pending_tasks

# Seconds a simulated person spends on an image, drawn uniformly.
LEAD_TIME_S = (1.0, 8.0)


@dataclass(frozen=True)
class SimReport:
    """What the simulated annotator did; ``no_truth``: pending tasks it had no answer for."""

    answered: int = 0
    correct: int = 0
    wrong: int = 0
    skipped: int = 0
    no_truth: int = 0
    pending_left: int = 0


def load_truth(labels_csv: Path, missing: list[str] | None = None) -> dict[str, str]:
    """Item key (``sha256:<hex>`` of the file) -> true label, from a ``path,label`` CSV.

    A listed file that is gone is an error, or, given a ``missing`` list, is appended to it
    and left out (its tasks then stay open): one deleted image no longer refuses the rest."""
    labels_csv = Path(labels_csv)
    try:
        handle = labels_csv.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise StudioError(f"no truth file at {labels_csv}; give a labels CSV (path,label), "
                          f"e.g. from `labelloop datasets export`") from None
    except OSError as err:  # a folder, no permission
        raise StudioError(f"truth file {labels_csv} cannot be read ({err.strerror})") from None
    try:
        with handle:
            return _read_truth(labels_csv, handle, missing)
    except UnicodeDecodeError:
        raise StudioError(f"truth file {labels_csv} is not UTF-8 text; give a labels CSV "
                          f"(path,label)") from None


def _read_truth(labels_csv: Path, handle, missing: list[str] | None) -> dict[str, str]:
    """``load_truth``'s rows from the open ``handle``."""
    truth: dict[str, str] = {}
    reader = csv.DictReader(handle)
    if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
        raise StudioError(f"{labels_csv} needs a header with columns path,label "
                          f"(found: {reader.fieldnames})")
    for row in reader:
        path = Path(row["path"])
        path = path if path.is_absolute() else labels_csv.parent / path
        try:
            with path.open("rb") as image:
                digest = hashlib.file_digest(image, "sha256").hexdigest()
        except FileNotFoundError:
            if missing is None:
                raise StudioError(f"{labels_csv} names {row['path']}, which does not exist "
                                  f"at {path}") from None
            missing.append(str(path))
            continue
        truth["sha256:" + digest] = str(row["label"])
    return truth


def simulate_annotations(
    studio: Studio,
    project: StudioProject,
    truth: Mapping[str, str],
    *,
    noise: float = 0.05,
    skip: float = 0.02,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SimReport:
    """Answer up to ``limit`` pending tasks (no annotation, no skip), oldest first.

    Each task is skipped with probability ``skip``; otherwise answered with the true label, or
    with probability ``noise`` with another class drawn uniformly.
    """
    if not (0.0 <= noise <= 1.0 and 0.0 <= skip <= 1.0):
        raise ValueError(f"noise and skip are probabilities in [0, 1], got {noise}, {skip}")
    unknown = sorted({label for label in truth.values()} - set(project.classes))
    if unknown:
        raise StudioError(f"the truth file has labels that are not classes of the project: "
                          f"{', '.join(unknown[:5])}; valid: {', '.join(project.classes)}")
    rng = np.random.default_rng(seed)
    pending = [(tid, key) for tid, key, _ in pending_tasks(studio, project.id)]
    answerable = [(tid, key) for tid, key in pending if key in truth]
    chosen = answerable if limit is None else answerable[:limit]
    answered = correct = wrong = skipped = 0
    for done, (tid, key) in enumerate(chosen, start=1):
        lead = float(rng.uniform(*LEAD_TIME_S))
        if rng.random() < skip:
            with studio.errors(f"skipping task {tid}"):
                studio.client.annotations.create(id=tid, result=[], was_cancelled=True,
                                                 lead_time=lead)
            skipped += 1
        else:
            label = truth[key]
            if rng.random() < noise:
                others = [c for c in project.classes if c != label]
                label = others[int(rng.integers(len(others)))]
            with studio.errors(f"annotating task {tid}"):
                studio.client.annotations.create(
                    id=tid, result=project.task.prediction_result(label), lead_time=lead)
            answered += 1
            correct += label == truth[key]
            wrong += label != truth[key]
        if progress is not None:
            progress(done, len(chosen))
    return SimReport(answered=answered, correct=correct, wrong=wrong, skipped=skipped,
                     no_truth=len(pending) - len(answerable),
                     pending_left=len(answerable) - len(chosen))
