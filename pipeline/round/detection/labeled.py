"""The human-labeled images of a detection project, with their boxes: the same training and
evaluation split as classification (``pipeline.round.labeled``), values instead of texts."""

from __future__ import annotations

import json

from pipeline.project.project import Project
from pipeline.round.labeled import labeled_sets


def labeled_values(project: Project) -> tuple[dict[str, dict], dict[str, dict]]:
    """(training, evaluation): item key -> the people's boxes (``{"width", "height",
    "boxes"}``). Labels without a value (written before detection, or by hand) are left out:
    a text alone does not say where the boxes are."""
    train_set, eval_set = labeled_sets(project)
    current = project.store.current_labels()

    def values(keys) -> dict[str, dict]:
        return {k: current[k].value for k in keys
                if k in current and isinstance(current[k].value, dict)}

    return values(train_set), values(eval_set)


def as_texts(values: dict[str, dict]) -> dict[str, str]:
    """Key -> the value as canonical JSON: what the snapshot hash and the changed-label count
    compare, so that a moved box is a changed label."""
    return {k: json.dumps(v, sort_keys=True) for k, v in values.items()}
