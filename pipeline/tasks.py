"""A task type with the training entry points that go with it, by name (``[project] task``).

``labeling.tasks`` owns what a label is and how it travels through Label Studio; it never
imports torch, so the model side is bound here: each kind names the ``training`` functions that
fit a model to images and labels and predict images with it. Rounds call these, never a
task-specific function directly. The training modules load torch: imported on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from labeling.tasks.base import TaskType
from labeling.tasks.registry import get_task_type


@dataclass(frozen=True)
class TaskKind:
    """``labels``: the labeling side. ``train(paths, labels, classes, params, *, progress)``
    returns a model; ``predict(model, paths, *, embeddings, progress)`` its predictions;
    ``load(checkpoint)`` a saved model."""

    labels: TaskType
    train: Callable
    predict: Callable
    load: Callable


def _classification() -> TaskKind:
    from training.checkpoint import load_checkpoint
    from training.predict import predict
    from training.train import train

    return TaskKind(get_task_type("classification"), train, predict, load_checkpoint)


def _detection() -> TaskKind:
    from pipeline.detection_model import predict_values, train_values
    from training.detection.checkpoint import load_detector

    return TaskKind(get_task_type("detection"), train_values, predict_values, load_detector)


_KINDS: dict[str, Callable[[], TaskKind]] = {"classification": _classification,
                                              "detection": _detection}


@cache
def task_kind(name: str) -> TaskKind:
    """The task kind called ``name``; an unknown name lists the valid ones."""
    get_task_type(name)  # the same names, and the same error, as labeling.tasks
    if name not in _KINDS:
        raise ValueError(f"task type {name!r} has no training entry points; "
                         f"valid: {', '.join(sorted(_KINDS))}")
    return _KINDS[name]()
