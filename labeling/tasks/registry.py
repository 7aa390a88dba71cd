"""Task types by name, as the model zoo keeps models: ``[project] task`` names one."""

from __future__ import annotations

from labeling.tasks.base import TaskType
from labeling.tasks.classification import Classification
from labeling.tasks.detection import Detection

_TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), Detection())}
DEFAULT_TASK = "classification"


def list_task_types() -> list[str]:
    """The names of the task types labelloop knows."""
    return sorted(_TASK_TYPES)


def get_task_type(name: str) -> TaskType:
    """The task type called ``name``; an unknown name lists the valid ones."""
    if name not in _TASK_TYPES:
        raise ValueError(f"unknown task type {name!r}; valid: {', '.join(list_task_types())}")
    return _TASK_TYPES[name]
