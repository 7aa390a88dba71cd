"""The simulated annotator, through the real API."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from labeling.studio.annotator_sim import load_truth, simulate_annotations
from labeling.studio.errors import StudioError
from labeling.studio.push import PushItem, push_tasks
from labeling.studio.sync import sync_annotations

pytestmark = pytest.mark.integration


def write_truth(items, classes) -> tuple[Path, dict[str, str]]:
    """A labels CSV beside the images (paths relative to it), cycling through the classes."""
    folder = Path(items[0].path).parent
    truth = {item.key: classes[n % len(classes)] for n, item in enumerate(items)}
    csv_path = folder / "labels.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for item in items:
            writer.writerow([Path(item.path).name, truth[item.key]])
    return csv_path, truth


def test_with_no_noise_every_pending_task_is_labeled_correctly(studio, store, project,
                                                               make_items):
    items = make_items(15)
    csv_path, truth = write_truth(items, project.classes)
    assert load_truth(csv_path) == truth
    push_tasks(studio, store, project, [PushItem(i.key, i.path, "cat", 0.5) for i in items],
               model_version="m1")
    report = simulate_annotations(studio, project, truth, noise=0.0, skip=0.0, seed=3)
    assert (report.answered, report.correct, report.wrong, report.skipped) == (15, 15, 0, 0)
    assert report.pending_left == 0
    sync = sync_annotations(studio, store, project)
    assert len(sync.labeled) == 15
    labels = store.current_labels()
    assert {key: lab.label for key, lab in labels.items()} == truth
    assert all(lab.extra["lead_time"] > 0 for lab in labels.values())
    # Nothing is pending any more.
    assert simulate_annotations(studio, project, truth, noise=0.0, skip=0.0).answered == 0


def test_noise_skips_and_limit(studio, store, project, make_items):
    items = make_items(12)
    _, truth = write_truth(items, project.classes)
    push_tasks(studio, store, project, [PushItem(i.key, i.path) for i in items],
               model_version="m1")
    skipped = simulate_annotations(studio, project, truth, skip=1.0, limit=4, seed=0)
    assert (skipped.skipped, skipped.answered, skipped.pending_left) == (4, 0, 8)
    noisy = simulate_annotations(studio, project, truth, noise=1.0, skip=0.0, seed=0)
    assert (noisy.answered, noisy.wrong) == (8, 8)
    sync = sync_annotations(studio, store, project)
    assert len(sync.skipped) == 4 and len(sync.labeled) == 8
    assert all(lab.label != truth[key] for key, lab in store.current_labels().items())


def test_truth_with_labels_outside_the_classes_is_refused(studio, project, make_items):
    items = make_items(2)
    with pytest.raises(StudioError, match="not classes of the project: zebra"):
        simulate_annotations(studio, project, {items[0].key: "zebra"})
