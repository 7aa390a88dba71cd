"""Image classification, one class per image: the first task type.

Labeling config ``<Image name="image" value="$image"/>`` + ``<Choices name="label"
toName="image" choice="single">``; a pre-annotation or an answer is one ``choices`` region;
several people's answers are decided by majority (``labeling.studio.consensus``); the value is
the class name itself, so the store needs no JSON value for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from labeling.tasks.base import IMAGE_NAME, LABEL_NAME, TaskType


def label_config(classes: Sequence[str]) -> str:
    """The labeling config XML for single-choice image classification over ``classes``."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
            f'  <Choices name="{LABEL_NAME}" toName="{IMAGE_NAME}" choice="single" '
            f'showInline="true">\n{choices}\n  </Choices>\n</View>')


def config_classes(xml: str) -> tuple[str, ...] | None:
    """The classes of a labelloop-style labeling config, or ``None`` if it is not one."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    images = [e for e in root.iter("Image") if e.get("name") == IMAGE_NAME]
    choices = [e for e in root.iter("Choices")
               if e.get("name") == LABEL_NAME and e.get("toName") == IMAGE_NAME]
    if len(images) != 1 or len(choices) != 1:
        return None
    return tuple(c.get("value", "") for c in choices[0].iter("Choice"))


def choice_result(label: str) -> list[dict]:
    """A classification result (prediction or annotation) choosing ``label``."""
    return [{"from_name": LABEL_NAME, "to_name": IMAGE_NAME, "type": "choices",
             "value": {"choices": [label]}}]


def chosen(result: list[dict]) -> tuple[str, ...]:
    """The choices of a result's ``choices`` regions on labelloop's element."""
    out: list[str] = []
    for region in result:
        if region.get("from_name") == LABEL_NAME and region.get("type") == "choices":
            out.extend(str(c) for c in (region.get("value") or {}).get("choices") or [])
    return tuple(out)


class Classification(TaskType):
    """One class per image."""

    name = "classification"
    accept_unit = "image"
    export_formats = ("csv", "imagefolder")

    def label_config(self, classes: Sequence[str]) -> str:
        return label_config(classes)

    def config_classes(self, xml: str) -> tuple[str, ...] | None:
        return config_classes(xml)

    def prediction_result(self, value: str) -> list[dict]:
        return choice_result(value)

    def answer_values(self, result: list[dict]) -> tuple[str, ...]:
        return chosen(result)

    def rejection(self, values: tuple, classes: Sequence[str]) -> str | None:
        if not values:
            return "submitted without a choice"
        if len(values) > 1:
            return f"several choices {list(values)} for a single-choice task"
        if values[0] not in classes:
            return (f"label {values[0]!r} is not a class of the project "
                    f"(valid: {', '.join(classes)})")
        return None

    def vote(self, values: tuple) -> str:
        return values[0]
