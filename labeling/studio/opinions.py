"""Second opinions: where people and the model disagree, another person looks.

The held-out (random and audit) human labels are the reference every threshold and certificate
is measured against, so a wrong one costs twice. Asking three people about every item triples
the cost; asking a second person only where the first one disagrees with the model costs a few
percent more (``../shared/autolabel-notes.md``, fallible annotators) and catches the errors that
matter, since an answer that equals the model's cannot make the model look wrong.

The rule (``plan``), per item with a task in Label Studio:
- held out, one person answered, and the answer differs from the model's prediction: raise the
  task's overlap to 2, so that Label Studio serves it to a *different* person; to 3 at once
  where the model is sure (``sure``): there the first person is the one likely wrong, the
  second will side with the model and a third is needed anyway, and asking both together
  settles the reference a round sooner (until then the accept step counts it against the
  model). Where the model is unsure, the second person usually confirms the first and the
  third answer would be wasted;
- any other human label that ``review_queue`` puts in this round's review budget (its one
  answer differs from the out-of-sample pre-annotation or from the champion, lowest
  self-confidence first): the same, so that training and delivered labels get a check too;
- two people answered and they differ (a tie, held as a disagreement, never a label): raise it
  to 3; the majority decides, and a tie left after that stays a disagreement (a held-out one
  goes to more people: ``labeling.studio.settle``);
- a random share of the items (``double_checked``: chosen by their content hash, before anyone
  answered) gets a second person whatever the first said: the only unbiased sample for
  measuring how often people repeat the model's mistakes (``labeling.annotators``), since the
  disagreement routes never send on a first answer that equals the model's;
- otherwise nothing.

Raising works per task (``PATCH /api/tasks/{id}`` with ``overlap`` and ``is_labeled: false``;
Label Studio ignores an import's overlap, and changing the project's ``maximum_annotations``
rewrites every task's). Each raise is sent, then recorded in the store: a crash between the two
plans it again next time, and the repeated PATCH sets the same value: nothing is asked twice.
Every extra answer is a human answer in every cost figure (``human_answers``).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, func, select

from labeling.boxes import image_matches
from labeling.schema import (
    PEOPLE_SOURCES,
    Item,
    SecondOpinion,
    StudioAnnotation,
    StudioTaskSync,
)
from labeling.store import LabelStore
from labeling.studio.project import StudioProject
from labeling.tasks.detection import summary

if TYPE_CHECKING:  # the SDK takes a second to import; only its type is needed here
    from labeling.studio.connection import Studio

MAX_OVERLAP = 3


@dataclass(frozen=True)
class OpinionRequest:
    """Ask for ``overlap`` people on ``task_id`` (item ``key``), and why."""

    key: str
    task_id: int
    overlap: int
    reason: str


# Item keys a query names at most (SQLite takes 32,766 parameters); more are filtered here.
MAX_KEYS_IN_QUERY = 10_000


def current_votes(store: LabelStore, project_id: int | None, *, values: bool = False,
                  keys: Collection[str] | None = None, live: bool = True) -> dict[str, dict]:
    """Item key -> person -> their counted answer, in the order people first answered: each
    person's latest annotation of the item's live task (the last updated, as the label's
    consensus reads it, ``labeling.studio.consensus.decide``), unless that one is a skip or
    rejected (then the person has no vote: their older answer does not come back). A person
    answering twice counts once. ``project_id`` None: every Label Studio project. The answer
    is its class text, or with ``values`` its typed value (a detection's boxes). ``keys``: only
    these items (the others' answers are not read). ``live`` False: tasks deleted since count
    too (what people said, for evidence that they err; a label comes from live tasks)."""
    answer = StudioAnnotation.value if values else StudioAnnotation.choice
    query = (select(Item.key, StudioAnnotation.user_id, StudioAnnotation.annotation_id,
                    StudioAnnotation.who, answer, StudioAnnotation.choice,
                    StudioAnnotation.was_cancelled, StudioAnnotation.rejected,
                    StudioAnnotation.updated_at)
             .join(Item, Item.id == StudioAnnotation.item_id)
             .where(StudioAnnotation.project_id == project_id if project_id is not None
                    else StudioAnnotation.project_id.is_not(None))
             .order_by(StudioAnnotation.created_at, StudioAnnotation.annotation_id))
    if live:
        query = query.join(StudioTaskSync,
                           StudioTaskSync.task_id == StudioAnnotation.task_id).where(
            StudioTaskSync.deleted.is_(False))
    if keys is not None:
        if not keys:
            return {}
        if len(keys) <= MAX_KEYS_IN_QUERY:
            query = query.where(Item.key.in_(sorted(keys)))
    with store.transaction() as s:
        rows = s.execute(query).all()
    if keys is not None:
        keys = set(keys)
        rows = [r for r in rows if r[0] in keys]
    latest: dict[str, dict[str, tuple]] = {}  # in the order people first answered
    for row in rows:
        key, user_id, annotation_id, who, *_, updated_at = row
        _keep_latest(latest.setdefault(key, {}), person(who, user_id, annotation_id),
                     (updated_at, annotation_id), row)
    out: dict[str, dict] = {}
    for key, people in latest.items():
        votes = {name: row[4] for name, (_, row) in people.items()
                 if not row[6] and row[7] is None and row[5] is not None}
        if votes:
            out[key] = votes
    return out


def refused_only(store: LabelStore) -> dict[str, tuple[int, str]]:
    """Item key -> (task id, why) of the items without a label from people whose live task
    holds answers that were all refused (a box outside the image, an unknown label) or whose
    people's latest answers were. Label Studio counts such a task as done and offers it to
    nobody again: it waits for a person to fix the answer there, not for a new one."""
    with store.transaction() as s:
        rows = s.execute(
            select(Item.key, StudioAnnotation.task_id, StudioAnnotation.rejected)
            .join(Item, Item.id == StudioAnnotation.item_id)
            .join(StudioTaskSync, StudioTaskSync.task_id == StudioAnnotation.task_id)
            .where(StudioAnnotation.project_id.is_not(None),
                   StudioAnnotation.rejected.is_not(None),
                   StudioAnnotation.was_cancelled.is_(False),
                   StudioTaskSync.deleted.is_(False))
            .order_by(StudioAnnotation.task_id.desc())).all()
    if not rows:
        return {}
    keys = {r[0] for r in rows}
    counted = current_votes(store, None, keys=keys)
    human = store.current_classes(sources=PEOPLE_SOURCES,
                                  keys=keys if len(keys) <= MAX_KEYS_IN_QUERY else None)
    out: dict[str, tuple[int, str]] = {}
    for key, task_id, why in rows:
        if key not in counted and key not in human:
            out.setdefault(key, (int(task_id), str(why)))
    return out


def disagreed(store: LabelStore, *, boxes: bool = False) -> tuple[int, int]:
    """(items whose people's current answers differ, items answered by two or more people),
    each person's current answer counted once (as ``current_votes``), on tasks deleted since
    too: deleting a disputed task in Label Studio does not make the people who disagreed
    right (it turned "no error bound" into "wrong labels <= 0.00%", a user's review).
    ``boxes``: answers are boxes, which differ as ``boxes_differ`` says (their text only lists
    the classes). The database finds the items with answers from two or more people; only
    theirs are read."""
    who = func.coalesce(StudioAnnotation.who, cast(StudioAnnotation.user_id, String),
                        cast(StudioAnnotation.annotation_id, String))
    with store.transaction() as s:
        several = s.scalars(
            select(Item.key).select_from(StudioAnnotation)
            .join(Item, Item.id == StudioAnnotation.item_id)
            .where(StudioAnnotation.project_id.is_not(None),
                   StudioAnnotation.was_cancelled.is_(False),
                   StudioAnnotation.rejected.is_(None), StudioAnnotation.choice.is_not(None))
            .group_by(Item.key).having(func.count(func.distinct(who)) > 1)).all()
    votes = [list(v.values()) for v in current_votes(store, None, values=boxes, keys=several,
                                                     live=False).values() if len(v) > 1]
    if boxes:
        differ = sum(any(boxes_differ(a, b) for a in answers[1:] for b in answers[:1])
                     for answers in votes)
    else:
        differ = sum(len(set(map(str, answers))) > 1 for answers in votes)
    return differ, len(votes)


def _keep_latest(mine: dict[str, tuple], name: str, stamp: tuple, value) -> None:
    """``mine[name]`` becomes ``(stamp, value)`` unless it holds a later stamp (updated_at,
    annotation id): each person's last updated answer, the one that counts."""
    if name not in mine or stamp >= mine[name][0]:
        mine[name] = (stamp, value)


def person(who: str | None, user_id: int | None, annotation_id: int) -> str:
    """Who made an annotation, as every count of people here names them: the email Label
    Studio gave, else the user id, else (neither synced) the annotation itself."""
    return who or (f"user {user_id}" if user_id is not None else f"annotation {annotation_id}")


def _draw(key: str) -> float:
    """A number in [0, 1) fixed by the item's content hash: the same on every run, and
    independent of anything anyone answered."""
    return int(hashlib.sha256(f"double-check:{key}".encode()).hexdigest()[:8], 16) / 2**32


def double_checked(keys, share: float) -> set[str]:
    """The item keys of a random ``share`` of ``keys`` whose people are shown the model's
    pre-annotation as usual, fixed by each key's content hash."""
    return {k for k in keys if _draw(k) < share}


def blind_checked(keys, share: float, *, after: float = 0.0) -> set[str]:
    """Another random ``share`` of ``keys``, disjoint from ``double_checked(keys, after)``:
    items pushed without the pre-annotation and answered by two people, on which people's
    chance of giving the model's wrong label unprompted is measured."""
    return {k for k in keys if after <= _draw(k) < after + share}


def plan(votes: Mapping[str, Mapping[str, Any]], model_labels: Mapping[str, Any],
         held_out: set[str], tasks: Mapping[str, int], asked: Mapping[str, int],
         *, double_check: set[str] = frozenset(), review: Sequence[str] = (),
         sure: set[str] = frozenset(),
         differs: Callable[[Any, Any], bool] = operator.ne,
         describe: Callable[[Any], str] = repr) -> list[OpinionRequest]:
    """The overlap raises the rule (module docstring) asks for now. ``asked``: the overlap
    already requested per item key (1 if never); ``double_check``: keys that get a second
    person in any case; ``review``: other keys whose one answer is suspect (``review_queue``),
    already cut to the round's budget; ``sure``: keys whose model label is confident enough
    that a disagreeing first answer gets two more people at once. ``differs(a, b)``: whether
    two answers disagree (a class: ``!=``; boxes: not matched object for object);
    ``describe``: an answer for the reason recorded."""
    out = []
    review = set(review)
    keys = set(held_out) | review | set(double_check) | {
        k for k, v in votes.items() if len(v) == 2}
    for key in sorted(keys):
        answers = list((votes.get(key) or {}).values())
        if key not in tasks or not answers:
            continue
        if (len(answers) == 1 and key in held_out and key in model_labels
                and differs(answers[0], model_labels[key])):
            want = 3 if key in sure else 2
            why = f"the first answer {describe(answers[0])} differs from the " \
                  f"{'sure ' if key in sure else ''}model's {describe(model_labels[key])}"
        elif len(answers) == 1 and key in double_check:
            want, why = 2, "random double check"
        elif len(answers) == 1 and key in review:
            want, why = 2, f"review: the answer {describe(answers[0])} differs from the " \
                           f"model's {describe(model_labels.get(key))}"
        elif len(answers) == 2 and differs(answers[0], answers[1]):
            want, why = 3, f"two people differ ({describe(answers[0])}, " \
                           f"{describe(answers[1])})"
        else:
            continue
        if asked.get(key, 1) < want <= MAX_OVERLAP:
            out.append(OpinionRequest(key, tasks[key], want, why))
    return out


def boxes_differ(a: Mapping | None, b: Mapping | None) -> bool:
    """Whether two detection answers (values with ``boxes``) disagree: not every box of one
    matched by a box of the other at IoU >= 0.5 with its class, one for one (the accept step's
    rule for an image being right, ``labeling.boxes.image_matches``)."""
    return not image_matches((a or {}).get("boxes") or [], (b or {}).get("boxes") or [])


def boxes_text(value: Mapping | None) -> str:
    """A detection answer in a reason: how many boxes, of which classes."""
    boxes = (value or {}).get("boxes") or []
    return f"{len(boxes)} box(es): {summary([b['label'] for b in boxes])}"


def review_queue(votes: Mapping[str, Mapping[str, str]], shown: Mapping[str, str],
                 held_out: set[str], asked: Mapping[str, int], score: Mapping[str, float],
                 limit: int, *, current: Mapping[str, str] | None = None) -> list[str]:
    """The human labels outside the held-out set most likely to be wrong, at most ``limit``:
    items with one answer, not asked about before, whose answer differs from the
    pre-annotation the person was shown (a prediction made before the item had a label, so
    out-of-sample) or from the ``current`` champion's label (which trained on it: a label the
    model still contradicts is suspect, and this catches an answer that took a wrong
    pre-annotation as shown). Lowest ``score`` first (the probability a model gave the
    answer: cleanlab's self-confidence); an item without one comes after those with one."""
    if limit <= 0:
        return []
    current = current or {}
    suspects = []
    for k, v in votes.items():
        if len(v) != 1 or k in held_out or asked.get(k, 1) >= 2:
            continue
        answer = next(iter(v.values()))
        if (k in shown and answer != shown[k]) or (k in current and answer != current[k]):
            suspects.append(k)
    suspects.sort(key=lambda k: (k not in score, score.get(k, 0.0), k))
    return suspects[:limit]


def asked_overlaps(store: LabelStore, project_id: int) -> dict[str, int]:
    """Item key -> the highest overlap requested for it."""
    with store.transaction() as s:
        rows = s.execute(select(Item.key, func.max(SecondOpinion.overlap))
                         .join(Item, Item.id == SecondOpinion.item_id)
                         .where(SecondOpinion.project_id == project_id).group_by(Item.key))
        return {key: int(n) for key, n in rows}


def uncounted_answers(store: LabelStore, project_id: int, task_ids) -> dict[int, int]:
    """Task id (of ``task_ids``) -> answers that Label Studio counts towards the task's overlap
    but labelloop does not count as a person: a person's earlier answer where they answered
    twice, an answer refused as no class, every answer of a person whose latest answer does
    not count (as ``current_votes`` counts people). Label Studio closes a task once its
    answers (skips aside) reach the overlap, so an overlap of N people is N plus these."""
    with store.transaction() as s:
        rows = s.execute(
            select(StudioAnnotation.task_id, StudioAnnotation.user_id, StudioAnnotation.who,
                   StudioAnnotation.annotation_id, StudioAnnotation.rejected,
                   StudioAnnotation.choice, StudioAnnotation.updated_at)
            .where(StudioAnnotation.project_id == project_id,
                   StudioAnnotation.task_id.in_(sorted(set(task_ids))),
                   StudioAnnotation.was_cancelled.is_(False)))
        answers: dict[int, int] = {}
        latest: dict[int, dict[str, tuple]] = {}
        for task_id, user_id, who, annotation_id, rejected, choice, updated_at in rows:
            answers[task_id] = answers.get(task_id, 0) + 1
            _keep_latest(latest.setdefault(task_id, {}), person(who, user_id, annotation_id),
                         (updated_at, annotation_id), rejected is None and choice is not None)
    people = {t: sum(counts for _, counts in mine.values()) for t, mine in latest.items()}
    return {t: n - people.get(t, 0) for t, n in answers.items() if n > people.get(t, 0)}


def request_opinions(studio: Studio, store: LabelStore, project: StudioProject,
                     requests: list[OpinionRequest], *, round_id: int | None = None) -> int:
    """Send, then record, each overlap raise (``overlap`` people: Label Studio's overlap adds
    the answers it counts that are not people, ``uncounted_answers``); returns how many
    tasks were raised."""
    extra = uncounted_answers(store, project.id, [r.task_id for r in requests]) if requests else {}
    for r in requests:
        with studio.errors(f"asking for {r.overlap} people on task {r.task_id}"):
            # is_labeled: Label Studio keeps a labeled task closed when only its overlap rises.
            studio.client.tasks.update(id=r.task_id, overlap=r.overlap + extra.get(r.task_id, 0),
                                       is_labeled=False)
        with store.transaction() as s:
            item_id = s.scalar(select(Item.id).where(Item.key == r.key))
            s.add(SecondOpinion(project_id=project.id, item_id=item_id, task_id=r.task_id,
                                overlap=r.overlap, reason=r.reason, round_id=round_id))
    return len(requests)


def human_answers(store: LabelStore) -> int:
    """Every answer people gave in Label Studio (second opinions included; skips and rejected
    answers left out): the human cost of the labels."""
    with store.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(StudioAnnotation).where(
            StudioAnnotation.was_cancelled.is_(False), StudioAnnotation.rejected.is_(None))))


def skips_since(store: LabelStore, since: datetime | None) -> int:
    """Skips people made in Label Studio after ``since`` (None: ever; by Label Studio's time
    of the skip) that are skips still: a round's new skips. (The difference of two counts of
    skipped items went below 0 where skipped items were answered after all; the sync's time
    of a task moves whenever Label Studio touches it, a re-signed image URL too.)"""
    with store.transaction() as s:
        made = s.scalars(select(StudioAnnotation.created_at).where(
            StudioAnnotation.was_cancelled.is_(True))).all()
    if since is None:
        return len(made)
    return sum(_moment(text) > since for text in made)


def _moment(text: str) -> datetime:
    """A Label Studio timestamp (ISO 8601, "Z" or an offset) as an aware UTC time; one that
    does not parse counts as new (a skip is not lost from the round's figures)."""
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime.max.replace(tzinfo=UTC)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def shown_predictions(store: LabelStore, project_id: int | None) -> dict[str, str]:
    """Item key -> the pre-annotation the first person who answered was shown (``project_id``
    None: in any Label Studio project)."""
    with store.transaction() as s:
        rows = s.execute(
            select(Item.key, StudioAnnotation.predicted)
            .join(Item, Item.id == StudioAnnotation.item_id)
            .where(StudioAnnotation.project_id == project_id if project_id is not None
                   else StudioAnnotation.project_id.is_not(None),
                   StudioAnnotation.predicted.is_not(None))
            .order_by(StudioAnnotation.created_at.desc(), StudioAnnotation.annotation_id.desc()))
        return dict(rows.all())  # later rows (older answers) win
