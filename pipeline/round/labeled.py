"""What the round's steps share: the human-labeled training and evaluation sets, their
snapshot hash, item paths, and the champion's checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

import numpy as np
from sqlalchemy import select

from labeling.held_out import certifying, split_held_out
from labeling.near_duplicates import kept_apart
from labeling.schema import PEOPLE_SOURCES, Item, StudioAnnotation, StudioTaskSync
from labeling.seen_files import unusable_items
from labeling.selections import picks
from labeling.store import LabelStore
from pipeline.project.project import Project
from pipeline.project.studio import annotator_accounts


def labeled_sets(project: Project) -> tuple[dict[str, str], dict[str, str]]:
    """(training labels, evaluation labels): key -> class, human and seed labels only
    (machine labels join training only if the config says so). Evaluation items are the
    random held-out picks; they never train a model, nor do their near-duplicates. Items
    whose file now holds another image, is gone or broken are left out (``unusable_items``)."""
    store = project.store
    ok = set(store.item_keys(status="ok")) - set(unusable_items(store))
    holdout = set(picks(store, holdout=True))
    use_machine = project.config.loop.train_on_machine_labels
    train_set, eval_set = {}, {}
    # People's labels first, then the machine's: one label is in force per item, so the
    # two never share a key, and the order of each part is the store's as before.
    for key, label in store.current_classes(sources=PEOPLE_SOURCES).items():
        if key in ok:
            (eval_set if key in holdout else train_set)[key] = label
    if use_machine:
        for key, label in store.current_classes(sources=("machine",)).items():
            if key in ok and key not in holdout:
                train_set[key] = label
    # A near-duplicate of a held-out item would carry its answer into training.
    return kept_apart(train_set, holdout, store.near_duplicate_groups()), eval_set


def choosing_part(project: Project, held_out: dict) -> dict:
    """The part of the held-out items (key -> label) that chooses the model: promotion, the
    temperature and tuning (``[loop] selection_share``, ``labeling.held_out``)."""
    return split_held_out(held_out, project.config.loop.selection_share)[0]


def certifying_part(project: Project, held_out: dict) -> dict:
    """The part of the held-out items (key -> label) the accept step's bound is tested on:
    none of them chose the model, nor did a near-duplicate of theirs (a re-encoded copy that
    chose would have chosen on the same picture)."""
    share = project.config.loop.selection_share
    if share <= 0:
        return dict(held_out)
    return certifying(held_out, share, groups=project.store.near_duplicate_groups(),
                      every_held_out=picks(project.store, holdout=True))


def certifying_parts(project: Project, held_out: dict, tied: Collection[str]) -> tuple[dict, set]:
    """The certifying part of the answered held-out items (key -> label) and of the ``tied``
    ones (no label yet), from one read of the store's groups and picks."""
    part = certifying_part(project, {**dict.fromkeys(tied), **held_out})
    return {k: held_out[k] for k in part if k in held_out}, {k for k in part if k in tied}


def unresolved_held_out(store: LabelStore) -> set[str]:
    """Held-out items whose people tie (no label until someone breaks it), or that everyone
    who opened them skipped, with no person's label from another task. Leaving them out of the
    evaluation would bias it: a tie is an outcome, and it happens where the first answer
    disagreed with the model; people skip the images they find hard, which are the images the
    model gets wrong more often, while the unpicked ones like them stay in the pool for the
    machine to label (a review's Monte Carlo: skips on ambiguous images at rate 0.3 let the
    accepted labels exceed the 2% target in 8% of runs, 2.8% without skips). The accept step
    and the audit count them against the model, and the machine labels none of them.

    A tie on a task deleted since (its Label Studio project deleted, say) stays one until the
    item has a person's label (a later task answered, say; a skip settles nothing): the votes
    were given, and dropping the tie flattered the bound and let the machine label the item."""
    with store.transaction() as s:
        rows = s.execute(
            select(Item.key, StudioTaskSync.deleted, StudioTaskSync.outcome)
            .join(StudioTaskSync, StudioTaskSync.item_id == Item.id)
            .where(StudioTaskSync.outcome.in_(("disagreement", "skipped")))).all()
    if not rows:  # the usual case: no held-out pick needs reading (status calls this)
        return set()
    tied = {key for key, deleted, outcome in rows if not deleted and outcome == "disagreement"}
    # A deleted tie, or a skip, is settled by a person's label from any task.
    open_ = {key for key, deleted, outcome in rows if deleted or outcome == "skipped"} - tied
    if open_:
        tied |= open_ - set(store.current_classes(sources=PEOPLE_SOURCES, keys=open_))
    if not tied:
        return set()
    holdout = picks(store, holdout=True)
    return {k for k in tied if k in holdout}


def waiting_references(project: Project, round_id: int) -> set[str]:
    """Held-out items picked in the last ``[loop] reference_wait_rounds`` rounds before this
    one: their second opinions may not be back yet, so the thresholds do not use them now
    (pipeline/project/config.py says why the sample stays random)."""
    wait = project.config.loop.reference_wait_rounds
    if wait == "auto":
        config = project.config
        several = annotator_accounts(config) >= 2 or bool(config.studio.url)
        wait = 1 if config.loop.second_opinions and several else 0
    return {k for k, p in picks(project.store, holdout=True).items()
            if wait and p.round_id is not None and p.round_id >= round_id - wait}


def ties_nobody_can_break(store: LabelStore, accounts: Collection[str]) -> int:
    """How many held-out ties (``unresolved_held_out``) every one of the annotator
    ``accounts`` (their emails) has answered or skipped already: no account is left to break
    them, and each counts against the model until someone else answers (with five accounts,
    one skip on a 2-2 does it). Answers from anyone else (the admin, a user labelloop did not
    make) are no account's, so they neither fill nor hide the count. 0 without accounts (a
    Label Studio whose people labelloop does not count)."""
    accounts = set(accounts)
    tied = unresolved_held_out(store) if accounts else set()
    if not tied:
        return 0
    with store.transaction() as s:
        rows = s.execute(
            select(Item.key, StudioAnnotation.who)
            .join(Item, Item.id == StudioAnnotation.item_id)
            .join(StudioTaskSync, StudioTaskSync.task_id == StudioAnnotation.task_id)
            .where(StudioTaskSync.deleted.is_(False), Item.key.in_(sorted(tied))))
        seen: dict[str, set] = {}
        for key, who in rows:
            if who in accounts:
                seen.setdefault(key, set()).add(who)
    return sum(len(seen.get(k, ())) >= len(accounts) for k in tied)


def items_to_predict(project: Project, eval_keys, *, everything: bool = False) -> list:
    """The items a predict step predicts: every one without a person's label (all of them
    with ``everything``), the held-out ones (the thresholds are tested on them), and the
    held-out ones whose people tie, which the accept step counts against the model. Not the
    items whose file now holds another image, is gone or broken (``unusable_items``)."""
    store = project.store
    human = store.current_classes(sources=PEOPLE_SOURCES)
    eval_keys = set(eval_keys)
    tied = unresolved_held_out(store)
    unusable = unusable_items(store)
    return [i for i in store.items(status="ok")
            if i.key not in unusable and (everything or i.key not in human or i.key in eval_keys)
            ] + [i for status in ("disagreement", "skipped") for i in store.items(status=status)
                 if i.key in tied and i.key not in unusable]


def snapshot_hash(labels: dict[str, str]) -> str:
    """Content hash of the exact training labels (item keys and classes)."""
    digest = hashlib.sha256()
    for key in sorted(labels):
        digest.update(f"{key}\t{labels[key]}\n".encode())
    return digest.hexdigest()[:16]


def paths_of(project: Project, keys) -> list[str]:
    keys = list(keys)
    items = project.store.items_by_key(keys)
    return [items[k].path for k in keys]


def class_indices(project: Project, labels: dict[str, str], keys) -> np.ndarray:
    """Class indices [N] of ``labels[k]`` for ``keys``, in the project's class order."""
    index = {c: i for i, c in enumerate(project.classes)}
    return np.array([index[labels[k]] for k in keys], dtype=np.int64)


def champion_model_path(project: Project) -> tuple[str, Path] | None:
    champion = project.registry.champion()
    if champion is None:
        return None
    return champion.version, project.registry.checkpoint_path(champion.version)


