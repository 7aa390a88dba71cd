"""What a task's annotations say about its item: one label, a skip, a disagreement, or nothing.

Pure functions over plain records, so the rules are readable (and testable) in one place:

- an annotation counts as a *vote* if it was submitted (not a skip) and the task type accepts
  its answer (classification: exactly one choice that is a class of the project); an unknown
  class or an empty answer is *rejected* (reported, never stored as a label);
- each annotator counts once: their most recently updated annotation of the task;
- the task type says what the votes agree on (``TaskType.agree``; classification: the class
  with the most votes; detection: the boxes most people drew); a tie is a *disagreement* (no
  label until someone resolves it, e.g. a reviewer adds a deciding annotation or deletes one);
- no votes but at least one skip: *skipped*; no votes and no skips: *pending*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labeling.tasks.base import TaskType

OUTCOMES = ("labeled", "skipped", "disagreement", "pending")


@dataclass(frozen=True)
class AnnotationView:
    """One Label Studio annotation, reduced to what the rules need."""

    annotation_id: int
    user_id: int | None
    values: tuple  # what the answer says, as the task type reads it
    was_cancelled: bool
    updated_at: str


@dataclass(frozen=True)
class Verdict:
    """The task's outcome; ``label`` (and ``value``, where it is more than the text) and
    ``winners`` (annotation ids) only when labeled. ``rejected``: annotation id -> why it does
    not count."""

    outcome: str
    label: str | None = None
    value: Any = None
    winners: tuple[int, ...] = ()
    votes: dict[str, int] | None = None
    rejected: dict[int, str] | None = None


def rejection(annotation: AnnotationView, classes: Sequence[str], task: TaskType) -> str | None:
    """Why a submitted annotation does not count as a vote, or ``None`` if it does."""
    if annotation.was_cancelled:
        return None
    return task.rejection(annotation.values, classes)


def decide(annotations: Sequence[AnnotationView], classes: Sequence[str],
           task: TaskType) -> Verdict:
    """The outcome of one task from all of its current annotations."""
    latest: dict[object, AnnotationView] = {}
    for a in sorted(annotations, key=lambda a: (a.updated_at, a.annotation_id)):
        # Annotations without a known user each count on their own.
        latest[a.user_id if a.user_id is not None else ("annotation", a.annotation_id)] = a
    rejected = {a.annotation_id: why for a in annotations
                if (why := rejection(a, classes, task)) is not None}
    ballots = [a for a in latest.values()
               if not a.was_cancelled and a.annotation_id not in rejected]
    if not ballots:
        skipped = any(a.was_cancelled for a in latest.values())
        return Verdict("skipped" if skipped else "pending", rejected=rejected)
    votes = dict(Counter(task.vote(a.values) for a in ballots))
    agreed = task.agree([a.values for a in ballots])
    if agreed is None:
        return Verdict("disagreement", votes=votes, rejected=rejected)
    winners = tuple(sorted(ballots[i].annotation_id for i in agreed.backers))
    return Verdict("labeled", label=agreed.label, value=agreed.value, winners=winners,
                   votes=votes, rejected=rejected)
