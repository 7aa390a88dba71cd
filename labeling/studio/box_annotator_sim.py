"""A simulated crowd drawing boxes: works through a detection project's pending tasks through
the real API, answering from a ``boxes.json`` answer key with the faults people make
(``labeling.box_faults``), some skips, and, where a task shows the model's boxes, keeping them
as they are at ``keep_rate`` (right or wrong), as a hurried person does.

Files are matched to tasks by content (the item key is the SHA-256 of the file). Annotations
are created one request each and never retried: a re-run continues with what is still pending.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeling.box_faults import answer_with_pre_annotation, simulate_box_answer_with_faults
from labeling.boxes import image_matches
from labeling.boxes_file import ImageBoxes, read_boxes_json
from labeling.studio.annotator_sim import LEAD_TIME_S
from labeling.studio.connection import Studio
from labeling.studio.errors import StudioError
from labeling.studio.project import StudioProject
from labeling.studio.remote import pending_tasks


@dataclass(frozen=True)
class BoxSimReport:
    """What the simulated crowd did. ``right``/``wrong``: answers against the truth (an image
    is right when every object is matched at IoU >= 0.5 with its class and no box is extra);
    ``kept_shown``: answers that kept the model's boxes unchanged; ``faults``: kind -> count."""

    answered: int = 0
    right: int = 0
    wrong: int = 0
    skipped: int = 0
    kept_shown: int = 0
    no_truth: int = 0
    pending_left: int = 0
    faults: dict | None = None


def load_box_truth(boxes_json: Path) -> dict[str, ImageBoxes]:
    """Item key (``sha256:<hex>`` of the file) -> its true boxes, from a ``boxes.json``."""
    read = read_boxes_json(boxes_json)
    truth = {}
    for path, image in read.images.items():
        with Path(path).open("rb") as f:
            truth["sha256:" + hashlib.file_digest(f, "sha256").hexdigest()] = image
    return truth


def simulate_box_annotations(
    studio: Studio,
    project: StudioProject,
    truth: Mapping[str, ImageBoxes],
    *,
    fault_rate: float = 0.05,
    skip: float = 0.02,
    keep_rate: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BoxSimReport:
    """Answer up to ``limit`` pending tasks (no annotation, no skip), oldest first."""
    if not all(0.0 <= p <= 1.0 for p in (fault_rate, skip, keep_rate)):
        raise ValueError(f"fault_rate, skip and keep_rate are probabilities in [0, 1], got "
                         f"{fault_rate}, {skip}, {keep_rate}")
    unknown = sorted({b["label"] for t in truth.values() for b in t.boxes} - set(project.classes))
    if unknown:
        raise StudioError(f"the answer key has labels that are not classes of the project: "
                          f"{', '.join(unknown[:5])}; valid: {', '.join(project.classes)}")
    rng = np.random.default_rng(seed)
    pending = pending_tasks(studio, project.id, fields="predictions")
    answerable = [(tid, key, t) for tid, key, t in pending if key in truth]
    chosen = answerable if limit is None else answerable[:limit]
    counts = {"answered": 0, "right": 0, "wrong": 0, "skipped": 0, "kept_shown": 0}
    faults: dict[str, int] = {}
    for done, (tid, key, task) in enumerate(chosen, start=1):
        lead = float(rng.uniform(*LEAD_TIME_S))
        if rng.random() < skip:
            with studio.errors(f"skipping task {tid}"):
                studio.client.annotations.create(id=tid, result=[], was_cancelled=True,
                                                 lead_time=lead)
            counts["skipped"] += 1
        else:
            image = truth[key]
            answer = _answer(project, image, task, rng, fault_rate=fault_rate,
                             keep_rate=keep_rate)
            value = {"width": image.width, "height": image.height, "boxes": answer.boxes}
            with studio.errors(f"annotating task {tid}"):
                studio.client.annotations.create(
                    id=tid, result=project.task.prediction_result(value), lead_time=lead)
            counts["answered"] += 1
            counts["right" if image_matches(image.boxes, answer.boxes) else "wrong"] += 1
            counts["kept_shown"] += answer.kept_pre_annotation
            for fault in answer.faults:
                faults[fault.kind] = faults.get(fault.kind, 0) + 1
        if progress is not None:
            progress(done, len(chosen))
    return BoxSimReport(**counts, no_truth=len(pending) - len(answerable),
                        pending_left=len(answerable) - len(chosen), faults=faults)


def _answer(project: StudioProject, image: ImageBoxes, task: dict, rng, *, fault_rate: float,
            keep_rate: float):
    options = {"classes": project.classes, "clutter": image.clutter}
    shown = _shown_boxes(project, task)
    if shown is None:  # a blind task, or one without a pre-annotation: drawn from scratch
        return simulate_box_answer_with_faults(image.boxes, image.width, image.height, rng=rng,
                                               fault_rate=fault_rate, **options)
    return answer_with_pre_annotation(image.boxes, shown, image.width, image.height, rng=rng,
                                      keep_rate=keep_rate, fault_rate=fault_rate, **options)


def _shown_boxes(project: StudioProject, task: dict) -> list[dict] | None:
    predictions = task.get("predictions") or []
    if not predictions:
        return None
    newest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id", 0)))
    boxes = project.task.answer_values(newest.get("result") or [])
    if project.task.rejection(boxes, project.classes) is not None:
        return None
    return [{k: b[k] for k in ("label", "x", "y", "w", "h")} for b in boxes]
