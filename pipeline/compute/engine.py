"""The engine a project's config asks for, and the local one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pipeline.compute.errors import ComputeError
from pipeline.project.config import ComputeSection
from training.predict import Predictions
from training.trained import TrainedModel

__all__ = ["ComputeError", "Engine", "LocalEngine", "engine_for"]


class Engine(Protocol):
    name: str

    def predict(self, model: TrainedModel, paths: Sequence[str], keys: Sequence[str], *,
                embeddings: bool, progress: bool) -> Predictions: ...


class LocalEngine:
    """This process, torch's DataLoader workers decoding."""

    name = "local"

    def predict(self, model: TrainedModel, paths: Sequence[str], keys: Sequence[str], *,
                embeddings: bool, progress: bool) -> Predictions:
        from training.predict import predict

        return predict(model, list(paths), embeddings=embeddings, progress=progress)


def engine_for(compute: ComputeSection, *, log: Path | None = None) -> Engine:
    """The engine ``[compute]`` names (``log``: where Ray's own output goes). Ray is imported
    only when asked for."""
    if compute.engine == "ray":
        from pipeline.compute.ray_engine import RayEngine

        return RayEngine(compute, log=log)
    return LocalEngine()
