"""The champion as ``labelloop serve`` holds it: loaded once, swapped when another is promoted.

The version is read from the registry's champion pointer (``champion.json``, a file read, no
MLflow call), so ``/health`` and ``/setup``, which Label Studio calls before every prediction
batch with 1 s and 3 s timeouts, stay fast. The pointer is deleted before the champion alias
moves (``pipeline.registry.registry``), so a missing pointer means "ask MLflow", never a stale
version. The model itself is loaded on the first prediction of a new version, outside any
request that has a short timeout.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pipeline.project.project import Project
from pipeline.round.session import model_version_name


@dataclass(frozen=True)
class Loaded:
    """A champion in memory: its registry version, the name predictions carry, the model."""

    version: str
    model_version: str
    model: object  # the task type's model (``pipeline.tasks``: a classifier or a detector)


class ServedChampion:
    """The project's champion, loaded at most once per registry version."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None

    def version(self) -> str | None:
        """The champion's registry version now (None before the first promotion)."""
        registry = self._project.registry
        pointer = registry.cached_champion()
        if pointer is None:
            champion = registry.champion()  # writes the pointer for the next call
            return None if champion is None else champion.version
        return pointer.get("version")

    def model_version(self) -> str:
        """What ``/setup`` answers and every prediction carries: ``v<version>``, or ``none``
        before any champion (predictions are then not made)."""
        version = self.version()
        return "none" if version is None else model_version_name(version)

    def current(self) -> Loaded | None:
        """The champion, loaded; reloaded when the registry's champion changed."""
        version = self.version()
        if version is None:
            return None
        with self._lock:  # two requests after a promotion load it once
            if self._loaded is None or self._loaded.version != version:
                path = self._project.registry.checkpoint_path(version)
                self._loaded = Loaded(version, model_version_name(version),
                                      self._project.task.load(path))
            return self._loaded
