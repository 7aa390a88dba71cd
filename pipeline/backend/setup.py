"""The backend of one project, built from its config: its Label Studio project (looked up
once, at start: never inside a request Label Studio is waiting on), the image cache and the
round runner."""

from __future__ import annotations

from pathlib import Path

from pipeline.backend.rounds import RoundRunner
from pipeline.backend.service import Backend
from pipeline.project.project import Project
from pipeline.round.session import session
from pipeline.task_images import project_task_images


def open_backend(project: Project, config_path: Path) -> Backend:
    """The backend serving ``project`` (whose config file is ``config_path``: the Train
    button's rounds read it); raises ``StudioError`` if Label Studio cannot be
    reached to find the project."""
    cfg = project.config
    studio, sp = session(project)
    folder = cfg.workspace_dir / "backend"
    images = project_task_images(project, studio.url, sp.images)
    rounds = RoundRunner(config_path.resolve(), cfg.workspace_dir / "lock",
                         folder / "rounds.log")
    return Backend(project, studio_project_id=sp.id, images=images, rounds=rounds)
