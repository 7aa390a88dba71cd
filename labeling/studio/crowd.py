"""A simulated crowd: several annotator accounts answering tasks through Label Studio's API.

Real annotators err 3-10% of the time, more on hard images and on classes that look alike, and
some accept the pre-annotation they are shown. The crowd does what they do, seeded:
- each person has their own error rate; the chance of an error on an item is that rate times
  the item's ``hardness`` (mean 1 over the pool), capped at ``MAX_ERROR``;
- a wrong answer is the item's ``confusable`` class with probability ``CONFUSABLE_SHARE``,
  else another class drawn uniformly;
- each person skips some tasks; a person with ``anchor_rate`` > 0 accepts the shown
  pre-annotation as it is with that probability, right or wrong;
- a task is answered by a person who has not answered it yet, while it has fewer answers than
  its overlap (so a task whose overlap labelloop raised goes to a *different* person).
The truth stays the answer key; nothing here changes the label store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from labeling.studio.annotator_sim import LEAD_TIME_S
from labeling.studio.connection import Studio
from labeling.studio.project import StudioProject
from labeling.studio.remote import item_key_of, iter_tasks

MAX_ERROR = 0.9
CONFUSABLE_SHARE = 0.7
# What a crowd pass reads of each task: answers so far, who answered or skipped, the overlap
# asked, what is shown (skips do not fill the overlap: ``still_to_answer``).
TASK_FIELDS = "id,data,total_annotations,overlap,annotators,predictions"
P = TypeVar("P")


@dataclass(frozen=True)
class CrowdMember:
    """One simulated person, answering as the Label Studio user ``user_id``."""

    name: str
    user_id: int
    error_rate: float
    skip_rate: float = 0.02
    anchor_rate: float = 0.0

    def __post_init__(self) -> None:
        for what in ("error_rate", "skip_rate", "anchor_rate"):
            if not 0.0 <= getattr(self, what) <= 1.0:
                raise ValueError(f"{what} of {self.name} must be in [0, 1], "
                                 f"got {getattr(self, what)}")


@dataclass
class CrowdReport:
    """What the crowd did, per person: answers, wrong ones (against the truth), skips."""

    answered: dict[str, int] = field(default_factory=dict)
    wrong: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.answered.values())


def crowd_rates(n: int, mean_error: float) -> list[float]:
    """``n`` error rates spread evenly from half to one and a half times ``mean_error``
    (mean ``mean_error``), so people differ as real ones do."""
    if n < 1:
        raise ValueError(f"a crowd needs at least one person, got {n}")
    if n == 1:
        return [mean_error]
    return [float(r) for r in np.linspace(0.5 * mean_error, 1.5 * mean_error, n)]


def answer(member: CrowdMember, truth: str, classes: Sequence[str], rng: np.random.Generator, *,
           hardness: float = 1.0, confusable: str | None = None,
           shown: str | None = None) -> str | None:
    """One person's answer to one item: a class, or None for a skip."""
    if rng.random() < member.skip_rate:
        return None
    if shown is not None and rng.random() < member.anchor_rate:
        return shown
    if rng.random() >= min(MAX_ERROR, member.error_rate * hardness):
        return truth
    others = [c for c in classes if c != truth]
    if confusable in others and rng.random() < CONFUSABLE_SHARE:
        return confusable
    return others[int(rng.integers(len(others)))]


def simulate_crowd(
    connections: Mapping[str, Studio],
    project: StudioProject,
    members: Sequence[CrowdMember],
    truth: Mapping[str, str],
    *,
    hardness: Mapping[str, float] | None = None,
    confusable: Mapping[str, str] | None = None,
    seed: int = 0,
) -> CrowdReport:
    """Answer every open task once more per missing answer, each by a member who has not
    answered it, through that member's own connection (``connections[name]``)."""
    rng = np.random.default_rng(seed)
    any_studio = connections[members[0].name]
    report = CrowdReport({m.name: 0 for m in members}, {m.name: 0 for m in members},
                         {m.name: 0 for m in members})
    tasks = sorted(iter_tasks(any_studio, project.id, all_fields=True, include=TASK_FIELDS),
                   key=lambda t: int(t["id"]))
    for task in tasks:
        key = item_key_of(task)
        if key not in truth:
            continue
        for member in still_to_answer(task, members, lambda m: m.user_id, rng):
            given = answer(member, truth[key], project.classes, rng,
                           hardness=(hardness or {}).get(key, 1.0),
                           confusable=(confusable or {}).get(key),
                           shown=_shown(task, project))
            studio = connections[member.name]
            lead = float(rng.uniform(*LEAD_TIME_S))
            with studio.errors(f"{member.name} answering task {task['id']}"):
                if given is None:
                    studio.client.annotations.create(id=int(task["id"]), result=[],
                                                     was_cancelled=True, lead_time=lead)
                    report.skipped[member.name] += 1
                    continue
                studio.client.annotations.create(
                    id=int(task["id"]), result=project.task.prediction_result(given),
                    lead_time=lead)
            report.answered[member.name] += 1
            report.wrong[member.name] += given != truth[key]
    return report


def still_to_answer(task: dict, people: Sequence[P], user_id: Callable[[P], int],
                    rng: np.random.Generator) -> list[P]:
    """Who answers ``task`` in this pass: as many of ``people`` as its overlap still lacks,
    none who answered or skipped it already, in random order. A skip does not fill the
    overlap: Label Studio's default skip queue ("Requeue for others") serves a skipped task
    to someone else, so the simulation does too (counting skips once left a raised task
    closed after one answer and one skip: a held-out reference never adjudicated)."""
    done = set(task.get("annotators") or [])  # skips included: Label Studio lists them too
    missing = int(task.get("overlap") or 1) - int(task.get("total_annotations") or 0)
    free = [p for p in people if user_id(p) not in done]
    return [free[i] for i in rng.permutation(len(free))][:max(0, missing)]


def _shown(task: dict, project: StudioProject) -> str | None:
    """The newest pre-annotation's value on the task, as the person sees it."""
    predictions = task.get("predictions") or []
    if not predictions:
        return None
    newest = max(predictions, key=lambda p: (str(p.get("created_at") or ""), p.get("id") or 0))
    values = project.task.answer_values(newest.get("result") or [])
    return values[0] if values else None
