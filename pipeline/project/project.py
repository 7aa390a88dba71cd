"""An open labelloop project: its config, label store and model registry, opened once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from labeling.store import LabelStore
from pipeline.project.config import Config, ConfigError
from pipeline.project.databases import DatabaseUrls
from pipeline.project.pixels import pixels_dir
from pipeline.project.workspace import ensure_workspace
from pipeline.registry.registry import ModelRegistry
from pipeline.tasks import TaskKind, task_kind
from training.params import TrainParams

# Written by `labelloop tune` (pipeline.tuning) in the workspace: the parameters it chose.
TUNED_PARAMS_NAME = "tuned_params.json"


@dataclass
class Project:
    config: Config
    store: LabelStore
    registry: ModelRegistry
    # LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY as read at the entry point (CLI, quickstart).
    # Out of the repr: it holds the API key, and a repr ends up in tracebacks and test reports.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The Label Studio side (connection + project), opened on first use by the studio steps.
    studio: object | None = field(default=None)
    # The stores' URLs with their passwords (pipeline/project/databases.py); masked in reprs.
    databases: DatabaseUrls | None = field(default=None, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.project.classes

    @property
    def task(self) -> TaskKind:
        """The project's task type (``[project] task``) and its training entry points."""
        return task_kind(self.config.project.task)

    @property
    def models_dir(self) -> Path:
        return self.config.workspace_dir / "models"

    @property
    def predictions_dir(self) -> Path:
        return self.config.workspace_dir / "predictions"

    @property
    def embeddings_dir(self) -> Path:
        return self.config.workspace_dir / "embeddings"

    @property
    def pixels_dir(self) -> Path:
        return pixels_dir(self.config)

    @property
    def tuned_params_path(self) -> Path:
        return self.config.workspace_dir / TUNED_PARAMS_NAME

    def train_params(self) -> TrainParams:
        """Training parameters: the config's ``[training]``, overlaid with those ``labelloop
        tune`` chose (``tuned_params.json``) if it chose any; ``labelloop tune --revert``
        restores the ones before."""
        params = self.config.training.params(root=self.config.root)
        record = read_tuned_params(self.tuned_params_path)
        if record is None:
            return params
        try:
            return replace(params, **record["params"])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{self.tuned_params_path}: invalid tuned parameters ({err}); undo "
                              f"them with `labelloop tune --revert`") from None

    def close(self) -> None:
        self.store.close()


def read_tuned_params(path: Path) -> dict | None:
    """The record ``labelloop tune`` wrote at ``path`` (``params``: the values that replace the
    config's), or None if there is none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); delete it to train with "
                          f"[training] alone") from None
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise ConfigError(f"{path}: no 'params' object; delete it to train with [training] "
                          f"alone")
    return record


def open_project(config: Config, *, env: Mapping[str, str] | None = None) -> Project:
    """Open the workspace of ``config`` (creating its folders) with its store and registry.
    ``env`` carries the variables read at the entry point: Label Studio's, and the stores'
    passwords (``LABELLOOP_*_PASSWORD``, pipeline/project/databases.py)."""
    env = dict(env or {})
    databases = config.database_urls(env)
    ws = ensure_workspace(config)
    store = LabelStore(databases.store)
    registry = ModelRegistry(databases.registry, config.project.name,
                             artifact_dir=ws / "mlartifacts")
    return Project(config=config, store=store, registry=registry, env=env,
                   databases=databases)
