"""Round steps that talk to Label Studio: sync human labels in, push work out."""

from __future__ import annotations

import os
from pathlib import Path

from labeling.selections import picks
from labeling.studio import server
from labeling.studio.annotator_sim import simulate_annotations
from labeling.studio.push import PushItem, push_tasks, refresh_predictions
from labeling.studio.sync import sync_annotations
from pipeline.pool_steps import load_predictions
from pipeline.project import Project
from pipeline.studio_cli import connect_studio, open_studio_project


def model_version_name(version: str) -> str:
    """What Label Studio shows as the predictions' model version: the registry version."""
    return f"v{version}"


def session(project: Project):
    """The checked connection and Label Studio project, opened once per labelloop project."""
    if project.studio is None:
        studio = connect_studio(project.config, project.env)
        project.studio = (studio, open_studio_project(project.config, studio))
    return project.studio


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


def push(project: Project, round_id: int, predicted: dict) -> dict:
    """Send picked items that have no task yet, with the champion's predictions; bring
    pending tasks' predictions up to the champion's version."""
    studio, sp = session(project)
    store = project.store
    predictions: dict[str, tuple[str, float]] = {}
    version = predicted.get("version")
    if "file" in predicted:
        keys, probs, _ = load_predictions(predicted["file"])
        classes = project.classes
        predictions = {k: (classes[int(p.argmax())], float(p.max()))
                       for k, p in zip(keys, probs, strict=True)}
    human = store.current_labels(sources=("human", "seed"))
    held = store.tasks(sp.id)
    paths = {i.key: i.path for i in store.items()}
    todo = [k for k in picks(store) if k not in held and k not in human]
    items = [PushItem(k, paths[k], *(predictions.get(k) or (None, None))) for k in todo]
    mv = model_version_name(version) if version else ""
    result = push_tasks(studio, store, sp, items, model_version=mv, round_id=round_id)
    refreshed = 0
    if version and predictions:
        pending = {k: predictions[k] for k in store.tasks(sp.id)
                   if k not in human and k in predictions}
        refreshed = refresh_predictions(studio, store, sp, pending, model_version=mv).updated
    # Predictions Label Studio dropped from the import are among those refreshed here.
    return {"pushed": len(result.created), "already_there": len(result.existing),
            "predictions_dropped": result.predictions_dropped, "refreshed": refreshed,
            "model_version": mv or None, "project_id": sp.id}


def ensure_embedded_server(project: Project) -> dict:
    """Start the embedded Label Studio for this project (a no-op if it runs)."""
    cfg = project.config
    exe = server.resolve_executable(cfg.studio.executable,
                                    search_path=project.env.get("PATH", os.defpath))
    info = server.start(cfg.studio_dir, port=cfg.studio.port, images_dir=cfg.images_dir,
                        executable=exe, username=cfg.studio.username)
    return {"url": info.url, "username": info.username, "password_file": str(info.password_file),
            "token_file": str(info.token_file), "first_start": info.first_start}


def simulate_annotators(project: Project, truth: dict[str, str], *, noise: float,
                        seed: int, skip: float = 0.0) -> int:
    """Answer every pending task from ground truth (path -> label), via the real API."""
    studio, sp = session(project)
    by_key = {i.key: truth[str(Path(i.path).resolve())] for i in project.store.items()
              if str(Path(i.path).resolve()) in truth}
    report = simulate_annotations(studio, sp, by_key, noise=noise, skip=skip, seed=seed)
    return report.answered
