"""The sync step: new, changed and deleted annotations from Label Studio into the label store."""

from __future__ import annotations

from labeling.studio.sync import sync_annotations
from pipeline.project.project import Project
from pipeline.round.session import session


def sync(project: Project) -> dict:
    """Bring new, changed and deleted annotations into the label store."""
    studio, sp = session(project)
    report = sync_annotations(studio, project.store, sp)
    return {
        "labels": len(report.labeled), "unchanged": len(report.unchanged),
        "retracted": len(report.retracted), "skipped": len(report.skipped),
        "disagreements": len(report.disagreements), "deleted_tasks": len(report.deleted_tasks),
        "rejected": len(report.rejected),
        "rejected_reasons": [f"task {r.task_id}: {r.reason}" for r in report.rejected[:20]],
    }


