"""The sync step: new, changed and deleted annotations from Label Studio into the label store,
then second opinions asked where a held-out item's answers and the model disagree
(``labeling.studio.opinions``; ``[loop] second_opinions``)."""

from __future__ import annotations

from labeling.selections import picks
from labeling.studio.opinions import (
    asked_overlaps,
    current_votes,
    double_checked,
    plan,
    request_opinions,
    shown_predictions,
)
from labeling.studio.sync import sync_annotations
from pipeline.project.project import Project
from pipeline.round.predict import latest_model_labels
from pipeline.round.session import session


def sync(project: Project, round_id: int | None = None) -> dict:
    """Bring new, changed and deleted annotations into the label store; ask for second
    opinions."""
    studio, sp = session(project)
    report = sync_annotations(studio, project.store, sp)
    asked = 0
    if project.config.loop.second_opinions:
        store = project.store
        # The model's answer: what the first person was shown, else the newest predictions.
        model = {**latest_model_labels(project), **shown_predictions(store, sp.id)}
        held = set(picks(store, holdout=True))
        requests = plan(current_votes(store, sp.id), model, held, store.tasks(sp.id),
                        asked_overlaps(store, sp.id),
                        double_check=double_checked(held, project.config.loop.double_check))
        asked = request_opinions(studio, store, sp, requests, round_id=round_id)
    return {
        "labels": len(report.labeled), "unchanged": len(report.unchanged),
        "retracted": len(report.retracted), "skipped": len(report.skipped),
        "disagreements": len(report.disagreements), "deleted_tasks": len(report.deleted_tasks),
        "rejected": len(report.rejected),
        "rejected_reasons": [f"task {r.task_id}: {r.reason}" for r in report.rejected[:20]],
        "second_opinions": asked,
    }
