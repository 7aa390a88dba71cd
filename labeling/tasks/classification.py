"""Image classification, one class per image: the first task type.

Labeling config ``<Image name="image" value="$image"/>`` + ``<Choices name="label"
toName="image" choice="single">``; a pre-annotation or an answer is one ``choices`` region;
several people's answers are decided by majority (``labeling.studio.consensus``); the value is
the class name itself, so the store needs no JSON value for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from labeling.tasks.base import (
    IMAGE_NAME,
    LABEL_NAME,
    TaskType,
    control_classes,
    control_config,
)


def label_config(classes: Sequence[str]) -> str:
    """The labeling config XML for single-choice image classification over ``classes``."""
    return control_config("Choices", "Choice", classes, ' choice="single" showInline="true"')


def config_classes(xml: str) -> tuple[str, ...] | None:
    """The classes of a labelloop-style labeling config, or ``None`` if it is not one."""
    return control_classes(xml, "Choices", "Choice")


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

    def answer_values(self, result: list[dict], size: tuple[int, int] | None = None
                      ) -> tuple[str, ...]:
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
