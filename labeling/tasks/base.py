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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

# The names of the Label Studio config's elements; tasks carry the image under ``data.image``.
IMAGE_NAME = "image"
LABEL_NAME = "label"


def control_config(control: str, option: str, classes: Sequence[str], attrs: str = "") -> str:
    """A labeling config: the image, and one ``control`` element named ``LABEL_NAME`` over it
    with an ``option`` per class (``Choices``/``Choice``, ``RectangleLabels``/``Label``)."""
    options = "\n".join(f"    <{option} value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
            f'  <{control} name="{LABEL_NAME}" toName="{IMAGE_NAME}"{attrs}>\n{options}\n'
            f'  </{control}>\n</View>')


def control_classes(xml: str, control: str, option: str) -> tuple[str, ...] | None:
    """The classes of a config ``control_config`` made, or ``None`` if ``xml`` is not one (no
    single image and single ``control`` over it, or not XML)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    images = [e for e in root.iter("Image") if e.get("name") == IMAGE_NAME]
    controls = [e for e in root.iter(control)
                if e.get("name") == LABEL_NAME and e.get("toName") == IMAGE_NAME]
    if len(images) != 1 or len(controls) != 1:
        return None
    return tuple(c.get("value", "") for c in controls[0].iter(option))


@dataclass(frozen=True)
class Agreement:
    """What several people's counted answers agree on: the label text, its typed value (None
    where the text is the whole value) and the positions of the answers that back it."""

    label: str
    value: Any
    backers: tuple[int, ...]


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
    def answer_values(self, result: list[dict], size: tuple[int, int] | None = None) -> tuple:
        """What an annotation's result regions say, as read from this task type's elements
        (unvalidated: ``rejection`` says whether it counts). ``size``: the item's image
        (width, height) where known, which regions in pixels must be about."""

    @abstractmethod
    def rejection(self, values: tuple, classes: Sequence[str]) -> str | None:
        """Why a submitted answer does not count as a vote, or ``None`` if it does."""

    @abstractmethod
    def vote(self, values: tuple) -> str:
        """The label text a counted answer votes for (equal votes agree)."""

    def agree(self, ballots: Sequence[tuple]) -> Agreement | None:
        """What the counted answers (one per person, each as ``answer_values`` reads it) agree
        on, or ``None`` for a tie. Here: the most votes win; a tie for the most is no label."""
        votes = Counter(self.vote(b) for b in ballots)
        ranked = votes.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return None
        label = ranked[0][0]
        return Agreement(label, None,
                         tuple(i for i, b in enumerate(ballots) if self.vote(b) == label))

    def answer_text(self, values: tuple) -> str | None:
        """One answer in a few words, for the annotation mirror and reports."""
        return str(values[0]) if values else None

    def answer_value(self, values: tuple) -> Any:
        """One answer's typed value for the annotation mirror (None: the text says it all)."""
        return None

    def changed(self, values: tuple, shown: tuple) -> bool:
        """Whether an answer differs from the pre-annotation the person was shown."""
        return tuple(values[:1]) != tuple(shown[:1])

    def store_classes(self, classes: Sequence[str]) -> Sequence[str] | None:
        """The label texts the store may hold for this task (None: the task type validated the
        value itself, and the text is a summary)."""
        return classes

    def validate_label(self, label: str, classes: Sequence[str]) -> str:
        """``label`` if it is a valid label of a project over ``classes``; else ValueError."""
        if label not in classes:
            raise ValueError(f"label {label!r} is not a class of the project "
                             f"(valid: {', '.join(classes)})")
        return label
