"""The task-type interface: everything that differs between kinds of labeling work.

A task type owns the label value and its validation, the Label Studio labeling config, the
formats of pre-annotations and of people's answers, how several answers become one label, what
one auto-accept decision covers, and the export formats. The label store, Label Studio sync and
push, and the round steps call it instead of assuming one class per image, so a new kind of
task (object detection) is one new implementation, not an ``if`` in every layer.

Vocabulary: a *value* is what a label says about an item (a class name for classification; a
list of boxes for detection). In the label store a value is kept as its ``label`` text (a class
name, or a short summary) plus, where it is more than a class name, its JSON ``value``.
Training and prediction entry points are bound to a task type by name in ``pipeline.tasks``
(``labeling`` never imports torch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

# The names of the Label Studio config's elements; tasks carry the image under ``data.image``.
IMAGE_NAME = "image"
LABEL_NAME = "label"


class TaskType(ABC):
    """One kind of labeling work. Implementations are stateless; one instance per kind."""

    name: ClassVar[str]
    # What one auto-accept decision covers, and so what the audit measures: "image" means an
    # item's whole label (its class; for detection, all of its boxes) is accepted or not.
    accept_unit: ClassVar[str] = "image"
    # Formats ``labelloop export`` writes for this task type.
    export_formats: ClassVar[tuple[str, ...]]

    @abstractmethod
    def label_config(self, classes: Sequence[str]) -> str:
        """The Label Studio labeling config XML for a project over ``classes``."""

    @abstractmethod
    def config_classes(self, xml: str) -> tuple[str, ...] | None:
        """The classes of a labeling config this task type made, or ``None`` if it is not one."""

    @abstractmethod
    def prediction_result(self, value: Any) -> list[dict]:
        """Label Studio result regions for ``value`` (a pre-annotation, or a simulated answer)."""

    @abstractmethod
    def answer_values(self, result: list[dict]) -> tuple:
        """What an annotation's result regions say, as read from this task type's elements
        (unvalidated: ``rejection`` says whether it counts)."""

    @abstractmethod
    def rejection(self, values: tuple, classes: Sequence[str]) -> str | None:
        """Why a submitted answer does not count as a vote, or ``None`` if it does."""

    @abstractmethod
    def vote(self, values: tuple) -> str:
        """The label text a counted answer votes for (equal votes agree)."""

    def validate_label(self, label: str, classes: Sequence[str]) -> str:
        """``label`` if it is a valid label of a project over ``classes``; else ValueError."""
        if label not in classes:
            raise ValueError(f"label {label!r} is not a class of the project "
                             f"(valid: {', '.join(classes)})")
        return label
