"""The bound on the reference labels' error (rho) that the accept step divides by: the
config's number, or measured on the double-checked held-out items (``[loop] reference_error =
"measured"``, ``labeling.annotators``).

Measured: on the random double-checked items that two or more people answered, the trials are
the items where the other people's plurality differs from the champion's label (the champion
is wrong by their verdict), and the event is that the first person gave the champion's label.
Its Clopper-Pearson bound holds at half of the loop's alpha; the threshold test gets the other
half (union bound), and the accept record reports both.
"""

from __future__ import annotations

import numpy as np

from labeling.annotators import AnnotatorErrorBound, annotator_error_bound
from labeling.selections import picks
from labeling.studio.opinions import current_votes, double_checked
from pipeline.project.project import Project


def reference_bound(project: Project, model_labels: dict[str, str]
                    ) -> tuple[float | AnnotatorErrorBound | None, str]:
    """(rho bound or None if it cannot be measured yet, how it was obtained)."""
    loop = project.config.loop
    if loop.reference_error != "measured":
        return float(loop.reference_error), "assumed ([loop] reference_error)"
    held = set(picks(project.store, holdout=True))
    checked = double_checked(held, loop.double_check)
    votes = current_votes(project.store, None)
    keys = [k for k in sorted(checked) if len(votes.get(k) or {}) >= 2 and k in model_labels]
    rows = [list(votes[k].values()) for k in keys]
    if not rows:
        return None, (f"not measured yet: no double-checked item has two answers "
                      f"({len(checked)} double-checked; [loop] double_check = "
                      f"{loop.double_check})")
    classes = list(project.classes)
    width = max(len(r) for r in rows)
    answers = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        answers[i, :len(row)] = [classes.index(v) for v in row]
    model = np.array([classes.index(model_labels[k]) for k in keys])
    alpha = 1.0 - loop.confidence_level
    try:
        bound = annotator_error_bound(answers, confidence=1.0 - alpha / 2, model_labels=model)
    except ValueError as err:
        return None, f"not measured yet: {err}"
    if bound.rate_ub >= 0.99:  # nothing can be certified through 1 / (1 - rho)
        return None, (f"measured bound {bound.rate_ub:.3f} on {bound.n_items} items is too "
                      f"wide to certify anything yet")
    return bound, f"measured on {bound.n_items} double-checked items ({bound.measured})"
