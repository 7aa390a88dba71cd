"""The sync step: tasks that people imported by hand adopted into the pool
(``pipeline.round.adopt``); new, changed and deleted annotations from Label Studio into the
label store; then second opinions asked where a held-out item's answers and the model
disagree, on a random double-checked share, and on the most suspect other labels within the
round's review budget (``labeling.studio.opinions``; ``[loop] second_opinions``,
``double_check``, ``review_share``)."""

from __future__ import annotations

import numpy as np

from labeling.selections import picks
from labeling.studio.opinions import (
    asked_overlaps,
    boxes_differ,
    boxes_text,
    current_votes,
    plan,
    request_opinions,
    review_queue,
    shown_predictions,
)
from labeling.studio.settle import MAX_PEOPLE, settle
from labeling.studio.sync import SyncReport, sync_annotations
from pipeline.project.answers_waiting import take_answers_waiting
from pipeline.project.project import Project
from pipeline.project.studio import annotator_accounts, uses_embedded
from pipeline.round.adopt import adopt_hand_made_tasks
from pipeline.round.blind import checked
from pipeline.round.detection.predict import latest_machine_values
from pipeline.round.predict import latest_probs
from pipeline.round.review import answer_scores, review_budget
from pipeline.round.session import session
from pipeline.task_images import project_task_images


def task_keys(store, project_id: int) -> dict[int, str]:
    """Task id -> item key, as the store's task table records them (adopted tasks included)."""
    return {tid: key for key, tid in store.tasks(project_id).items()}


# A held-out first answer that differs from a model at least this sure gets two more people
# at once, not one (labeling/studio/opinions.py): the items the accept step can accept are
# this sure, and there a wrong first answer is far likelier than a wrong model, so the third
# answer is needed anyway. The cost is one answer per held-out item the model gets wrong
# while this sure: a few percent of them.
SURE = 0.9


def pull(project: Project) -> tuple[SyncReport, dict]:
    """Tasks people imported by hand adopted, then new, changed and deleted annotations
    brought into the label store: (the sync's report, the adoption's)."""
    studio, sp = session(project)
    take_answers_waiting(project.config.workspace_dir)  # before reading: see the module
    images = project_task_images(project, studio.url, sp.images)
    adopted = adopt_hand_made_tasks(project, studio, sp, images)
    report = sync_annotations(studio, project.store, sp, same_image=images.same_image,
                              task_keys=task_keys(project.store, sp.id))
    return report, adopted


def ask_opinions(project: Project, round_id: int | None = None) -> int:
    """Ask for the second opinions the answers so far call for (``[loop] second_opinions``);
    how many were asked. A sync between rounds asks on the newest round's budget."""
    if not project.config.loop.second_opinions:
        return 0
    if uses_embedded(project.config, project.env) and annotator_accounts(project.config) == 0:
        # The embedded server's one person is its admin, who cannot answer a task twice: a
        # raised overlap waited for nobody (a review found 19 of 214 tasks left open).
        return 0
    studio, sp = session(project)
    if round_id is None:
        rounds = project.store.rounds()
        round_id = rounds[-1]["id"] if rounds else None
    ask = _ask_on_boxes if project.config.project.task == "detection" else _ask_on_classes
    return ask(project, studio, sp, round_id)


def sync(project: Project, round_id: int | None = None) -> dict:
    """Bring new, changed and deleted annotations into the label store; ask for second
    opinions."""
    report, adopted = pull(project)
    asked = ask_opinions(project, round_id)
    return {
        "labels": len(report.labeled), "unchanged": len(report.unchanged),
        "retracted": len(report.retracted), "skipped": len(report.skipped),
        "disagreements": len(report.disagreements), "deleted_tasks": len(report.deleted_tasks),
        "rejected": len(report.rejected),
        "rejected_reasons": [f"task {r.task_id}: {r.reason}" for r in report.rejected[:20]],
        "second_opinions": asked,
        "adopted_tasks": adopted["adopted"], "not_adopted": adopted["left"][:20],
    }


def _ask_on_classes(project: Project, studio, sp, round_id: int | None) -> int:
    """Classification: every route of ``labeling.studio.opinions`` (held-out disagreements,
    ties, the double and blind checks, the round's reviews) and of ``labeling.studio.settle``
    (held-out references against the model by one vote)."""
    store = project.store
    shown = shown_predictions(store, sp.id)
    newest = latest_probs(project)
    # One argmax over the stacked rows: one per row in Python took seconds at 1M items.
    best = np.stack(list(newest.values())).argmax(axis=1).tolist() if newest else []
    current = dict(zip(newest, map(project.classes.__getitem__, best), strict=True))
    # The model's answer: what the first person was shown, else the newest predictions.
    model = {**current, **shown}
    held = set(picks(store, holdout=True))
    votes, tasks = current_votes(store, sp.id), store.tasks(sp.id)
    before = asked_overlaps(store, sp.id)
    budget = review_budget(project, sp.id, round_id)
    queue = review_queue(votes, shown, held, before,
                         answer_scores(project, votes, newest) if budget else {}, budget,
                         current=current)
    sure = {k for k in held if k in newest and current[k] == model[k]
            and float(newest[k].max()) >= SURE}
    requests = plan(votes, model, held, tasks, before, review=queue, sure=sure,
                    double_check=set().union(*checked(project, tasks)))
    accounts = annotator_accounts(project.config)  # 0: people labelloop does not count
    requests += settle(votes, model, held, tasks, before,
                       max_people=min(accounts, MAX_PEOPLE) if accounts else MAX_PEOPLE)
    return request_opinions(studio, store, sp, requests, round_id=round_id)


def _ask_on_boxes(project: Project, studio, sp, round_id: int | None) -> int:
    """Detection: a held-out image whose first person's boxes do not get it right against the
    model's (every object matched at IoU >= 0.5 with its class, no extra box: the accept
    step's rule), or whose two people's boxes differ so, goes to another person; a majority's
    boxes decide (``Detection.agree``). The model's answer is the newest predictions' (a
    held-out image never trains, so that is out-of-sample). The random double and blind
    checks get a second person as for classes; no reviews yet: they rank answers by class."""
    store = project.store
    tasks = store.tasks(sp.id)
    requests = plan(current_votes(store, sp.id, values=True), latest_machine_values(project),
                    set(picks(store, holdout=True)), tasks, asked_overlaps(store, sp.id),
                    double_check=set().union(*checked(project, tasks)),
                    differs=boxes_differ, describe=boxes_text)
    return request_opinions(studio, store, sp, requests, round_id=round_id)

