"""An open labelloop project: its config, label store and model registry, opened once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labeling.store import LabelStore
from pipeline.config import Config
from pipeline.registry import ModelRegistry
from pipeline.workspace import ensure_workspace
from training import TrainParams


@dataclass
class Project:
    config: Config
    store: LabelStore
    registry: ModelRegistry
    # LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY as read at the entry point (CLI, quickstart).
    env: Mapping[str, str] = field(default_factory=dict)
    # The Label Studio side (connection + project), opened on first use by the studio steps.
    studio: object | None = field(default=None)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.project.classes

    @property
    def models_dir(self) -> Path:
        return self.config.workspace_dir / "models"

    @property
    def predictions_dir(self) -> Path:
        return self.config.workspace_dir / "predictions"

    def train_params(self) -> TrainParams:
        """Training parameters from the config."""
        return self.config.training.params()

    def close(self) -> None:
        self.store.close()


def open_project(config: Config, *, env: Mapping[str, str] | None = None) -> Project:
    """Open the workspace of ``config`` (creating its folders) with its store and registry.
    ``env`` carries the Label Studio variables read at the entry point."""
    ws = ensure_workspace(config)
    store = LabelStore(config.store_url)
    registry = ModelRegistry(
        config.registry_uri or f"sqlite:///{ws / 'mlflow.db'}",
        config.project.name,
        artifact_dir=ws / "mlartifacts",
    )
    return Project(config=config, store=store, registry=registry, env=dict(env or {}))
