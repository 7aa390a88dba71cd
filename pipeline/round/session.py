"""A project's Label Studio side, opened once per project: the checked connection and the Label
Studio project the steps use, the embedded server, and the simulated annotator."""

from __future__ import annotations

import os
from pathlib import Path

from labeling.studio import server
from labeling.studio.annotator_sim import simulate_annotations
from pipeline.project.project import Project
from pipeline.project.studio import connect_studio, open_studio_project


def model_version_name(version: str) -> str:
    """What Label Studio shows as the predictions' model version: the registry version."""
    return f"v{version}"


def session(project: Project):
    """The checked connection and Label Studio project, opened once per labelloop project."""
    if project.studio is None:
        studio = connect_studio(project.config, project.env)
        project.studio = (studio, open_studio_project(project.config, studio,
                                                      store=project.store))
    return project.studio


def ensure_embedded_server(project: Project) -> dict:
    """Start the embedded Label Studio for this project (a no-op if it runs)."""
    cfg = project.config
    exe = server.resolve_executable(cfg.studio.executable,
                                    search_path=project.env.get("PATH", os.defpath))
    info = server.start(cfg.studio_dir, port=cfg.studio.port, images_dir=cfg.images_dir,
                        executable=exe, username=cfg.studio.username,
                        database=cfg.database_urls(project.env).studio)
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


