"""A labelloop project on disk: ``labelloop.toml`` beside a workspace folder.

The workspace holds the label store (``labels.db``), the MLflow store (``mlflow.db`` and
``mlartifacts/``), model checkpoints (``models/``), cached predictions (``predictions/``),
the embedded Label Studio's data (``studio/``), reports and the lock file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from pipeline.project.config import (
    CONFIG_NAME,
    Config,
    ConfigError,
    format_validation_error,
    load_config,
    render_config,
    title_problem,
)


def init_project(
    folder: Path,
    *,
    images: Path | str,
    classes: list[str],
    name: str | None = None,
    studio_url: str = "",
    project_title: str = "",
    task: str = "classification",
) -> Path:
    """Write ``labelloop.toml`` in ``folder`` and create its workspace; returns the config path.

    Refuses to overwrite an existing config (a project's labels hang off it). ``images``
    may be an S3 prefix (``s3://bucket/prefix``); it is not contacted here.
    """
    folder = folder.resolve()
    config_path = folder / CONFIG_NAME
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; edit it, or init another folder")
    remote = isinstance(images, str) and images.startswith("s3://")
    if not remote:
        images = Path(images).expanduser()
        if images.resolve().is_file():
            raise ConfigError(f"--images: {images} is a file; give the folder that holds the "
                              "images")
        if not images.resolve().is_dir():
            raise ConfigError(f"--images: no such folder: {images}")
    if problem := title_problem(name or folder.name):
        raise ConfigError(problem)
    folder.mkdir(parents=True, exist_ok=True)
    if remote:
        images_entry = images
    else:
        try:
            images_entry = images.resolve().relative_to(folder)
        except ValueError:
            images_entry = images.resolve()
    try:
        text = render_config(name or folder.name, classes, images_entry, studio_url=studio_url,
                             project_title=project_title, task=task)
    except ValidationError as err:  # one line per problem, never the value (it may be secret)
        raise ConfigError(format_validation_error(err)) from None
    tmp = config_path.with_name(CONFIG_NAME + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        config = load_config(tmp)  # validate before it becomes the project's config
    except ConfigError:
        tmp.unlink(missing_ok=True)  # nothing of a refused init stays behind
        raise
    tmp.replace(config_path)
    ensure_workspace(config)
    return config_path


def ensure_workspace(config: Config) -> Path:
    """Create the workspace folders if missing; returns the workspace path."""
    ws = config.workspace_dir
    for sub in ("models", "predictions", "reports", "studio"):
        (ws / sub).mkdir(parents=True, exist_ok=True)
    return ws


def find_config(path: Path | None) -> Config:
    """Load the config at ``path`` or, without one, the ``labelloop.toml`` of the current
    folder or the nearest folder above it (as git finds its repository: a command run from
    the image folder said "no config" though the project was one folder up)."""
    return load_config(config_file(path))


def config_file(path: Path | None) -> Path:
    """The config ``find_config`` reads: ``path`` (a file or its folder), else the nearest
    ``labelloop.toml`` at or above the current folder, else ``./labelloop.toml`` (whose
    error says it is missing)."""
    if path is not None:
        path = Path(path)  # scripts pass text
        return path / CONFIG_NAME if path.is_dir() else path
    here = Path.cwd()
    return next((folder / CONFIG_NAME for folder in (here, *here.parents)
                 if (folder / CONFIG_NAME).is_file()), here / CONFIG_NAME)
