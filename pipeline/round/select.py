"""The select step: the next items for people, a random audit share plus the strategy's choice
(or a random cold-start batch before there is a model), recorded before anything is pushed."""

from __future__ import annotations

import math
import os

import numpy as np

from labeling.cold_start import typical_picks
from labeling.monitoring import as_utc
from labeling.near_duplicates import one_per_group
from labeling.schema import PEOPLE_SOURCES
from labeling.seen_files import unusable_items
from labeling.selections import Pick, picks, record_picks, unanswered_picks
from labeling.strategies import select_for_review
from labeling.studio.opinions import refused_only
from pipeline.project.project import Project
from pipeline.round.labeled import labeled_sets
from pipeline.round.predict import load_predictions
from pipeline.round.probe import backbone_embeddings
from training.sources import is_remote


def select_batch(project: Project, round_id: int, predicted: dict, *,
                 progress: bool = False) -> dict:
    """Pick the next items for people: a random audit share plus the strategy's choice, or a
    cold-start batch before there is a model. Recorded before anything is pushed."""
    store = project.store
    rng = np.random.default_rng([project.config.training.seed, round_id])
    made = picks(store)
    candidates = unasked(project, made)
    if not candidates:
        return {"picked": 0, "reason": "nothing left to ask about"}
    room, full = batch_room(project, predicted, len(candidates))
    if full is not None:
        return full
    if "file" not in predicted:
        new = cold_start_picks(project, candidates, rng, progress=progress)
    else:
        new = _audit_and_strategy(project, candidates, predicted, rng, made, size=room,
                                  round_id=round_id)
    added = record_picks(store, new, round_id=round_id)
    reasons = {r: sum(p.reason == r for p in new) for r in ("random", "audit", "strategy")}
    return {"picked": len(added), **reasons}


def waiting_picks(project: Project) -> int:
    """Picks that wait for people: in Label Studio without a first answer, or not sent yet
    (a crash before the push, a task deleted) where the push can send them; not those it
    holds back (a file gone, another image in it), nor those whose answers were all refused
    (they wait for a person to fix an answer, not for a turn: counted as waiting, a dozen of
    them shrank every batch for good, and a batch's worth stopped the picking)."""
    unusable = unusable_items(project.store)
    refused = refused_only(project.store)
    return sum(k not in refused and
               (tasked or (k not in unusable and (is_remote(path) or os.path.isfile(path))))
               for k, path, tasked in unanswered_picks(project.store))


def batch_room(project: Project, predicted: dict, candidates: int) -> tuple[int, dict | None]:
    """(how many items this round may pick, or the select record when none). At most one batch
    waits for people at a time: rounds run while nobody answered (a night of `labelloop run
    --every 10m`) picked a batch each until the whole pool was sent, chosen by models that had
    learned nothing new. A new pick waits until half a batch is free (or what is left of the
    pool): a room of one or two would get no random held-out item (``audit_count`` rounds the
    share down), and the validation stream would stall. The cold start waits until its first
    batch is all answered."""
    waiting = waiting_picks(project)
    batch = project.config.loop.batch_size
    room = batch - waiting
    if room < min(math.ceil(batch / 2), candidates) or (waiting and "file" not in predicted):
        return 0, {"picked": 0, "waiting": waiting,
                   "reason": f"{waiting} picked item(s) wait for people in Label Studio: the "
                             f"next batch is picked as they are answered"}
    return room, None


def unasked(project: Project, made: dict) -> list[str]:
    """The items people may be asked about: in the pool, without a person's label, never
    picked (``made``: the picks so far) and not skipped; not an item whose file now holds
    another image, is gone or broken (``unusable_items``)."""
    store = project.store
    human = store.current_classes(sources=PEOPLE_SOURCES)
    unusable = unusable_items(store)
    return [k for k in store.item_keys(status="ok")
            if k not in human and k not in made and k not in unusable]


def cold_start_picks(project, candidates, rng, *, progress) -> list[Pick]:
    """The first batch: a random held-out share, then random or typical training picks."""
    loop = project.config.loop
    n = min(loop.initial_random, len(candidates))
    chosen = rng.choice(len(candidates), size=n, replace=False)
    n_hold = int(round(n * loop.initial_holdout))
    # The held-out share is drawn first and at random whatever the cold start: the thresholds
    # and the audit are tested on it, and their guarantees need a random sample of the pool.
    held = [Pick(candidates[j], "random", holdout=True) for j in chosen[:n_hold]]
    if loop.cold_start == "random" or n == n_hold:
        return held + [Pick(candidates[j], "random") for j in chosen[n_hold:]]
    held_keys = {p.key for p in held}
    rest = [k for k in candidates if k not in held_keys]
    if groups := project.store.near_duplicate_groups():  # as for the strategy's picks
        people = project.store.current_classes(sources=PEOPLE_SOURCES)
        rest = one_per_group(rest, groups, [*people, *held_keys])
    items = {i.key: i for i in project.store.items(status="ok")}
    known = [k for k in labeled_sets(project)[0] if k in items]  # labels that will train
    both = rest + known
    feats = backbone_embeddings(project, [items[k].path for k in both], both,
                                progress=progress)
    picked = typical_picks(feats[:len(rest)], n - n_hold, rng=rng,
                           labeled_features=feats[len(rest):] if known else None)
    return held + [Pick(rest[j], "strategy") for j in picked]


def audit_count(batch: int, share: float, open_items: int) -> int:
    """How many random audit picks a batch of ``batch`` gets: ``share`` of it; but where the
    items the machine has not labeled (``open_items``, what the strategy picks from) are too few
    to fill the rest, the audits shrink with them and keep their share of what people are sent.
    Near the end of a pool a full audit share would be most of each round's cost (in
    ``scripts/bench_loop.py``, a perfect annotator: 180 of the last 352 answers), spent on items
    the machine labeled long ago. Each audit pick is still a uniform draw from the pool."""
    n_audit = int(round(batch * share))
    if share < 1 and open_items < batch - n_audit:
        n_audit = min(n_audit, int(round(open_items * share / (1 - share))))
    return n_audit


def arrivals(project: Project, round_id: int, keys: list[str]) -> list[str]:
    """Of ``keys``, the items ingested after the last round that drew picks started (no draw
    saw them: a round whose batch still waited in Label Studio drew none, and the images that
    came then were never audited); none before a previous round."""
    before = [r for r in project.store.rounds() if r["id"] < round_id]
    if not before:
        return []
    drew = [r for r in before if "audit" in ((r.get("stats") or {}).get("select") or {})]
    since = (drew or before)[-1]["started_at"]
    new = set(project.store.item_keys(added=(as_utc(since), None)))
    return [k for k in keys if k in new]


def audit_draw(project: Project, round_id: int, candidates: list[str], n: int, machine,
               rng) -> list[str]:
    """The random audit picks of a batch of ``n`` from ``candidates`` (``machine``: the keys
    the machine labeled): ``audit_count``'s share of it, drawn at random; where that shrank,
    the images that arrived since the last round first, at the pool's held-out rate."""
    share = project.config.loop.audit_fraction
    n_audit = audit_count(n, share, sum(k not in machine for k in candidates))
    full = int(round(n * share))
    # Where the audits shrank (the pool is nearly all machine-labeled), images that arrived
    # since the last round are still held out at the rate the rest of the pool was: new ones
    # (another camera, say) were accepted on thresholds tested on none of them, and no audit
    # or held-out answer ever came from them. At that rate the held-out items stay a uniform
    # sample of the pool (at the audit share they would be too many of them). Elsewhere they
    # are audited as the rest of the pool, at random.
    arrived = arrivals(project, round_id, candidates) if n_audit < full else []
    rate = (len(picks(project.store, holdout=True)) / max(1, project.store.count_items())
            if arrived else 0.0)
    n_fresh = min(full, int(round(len(arrived) * rate)))
    if n_fresh <= n_audit * len(arrived) / len(candidates):  # the uniform draw gives as many
        return [candidates[j] for j in rng.choice(len(candidates), size=n_audit, replace=False)]
    audit = [arrived[j] for j in rng.choice(len(arrived), size=n_fresh, replace=False)]
    chosen = set(audit)
    rest = [k for k in candidates if k not in chosen]
    more = min(len(rest), max(0, n_audit - n_fresh))
    return audit + [rest[j] for j in rng.choice(len(rest), size=more, replace=False)]


def _audit_and_strategy(project, candidates, predicted, rng, made, *, size: int,
                        round_id: int) -> list[Pick]:
    loop = project.config.loop
    n = min(size, len(candidates))
    machine = project.store.current_classes(sources=("machine",))
    audit = audit_draw(project, round_id, candidates, n, machine, rng)
    n_audit = len(audit)
    audited = project.store.current_labels(sources=("machine",), keys=audit)
    out = [Pick(k, "audit", holdout=True,
                machine_label=audited[k].label if k in audited else None,
                machine_version=audited[k].model_version if k in audited else None)
           for k in audit]
    keys, probs, feats = load_predictions(predicted["file"])
    index = {k: i for i, k in enumerate(keys)}
    audit_set = set(audit)
    # Machine-accepted items are confident by construction; people get the uncertain rest.
    rest = [k for k in candidates if k not in audit_set and k in index and k not in machine]
    if groups := project.store.near_duplicate_groups():
        people = project.store.current_classes(sources=PEOPLE_SOURCES)
        rest = one_per_group(rest, groups, [*people, *made, *audit])
    n_strategy = min(n - n_audit, len(rest))
    if n_strategy > 0:
        rows = [index[k] for k in rest]
        features = labeled = None
        if feats.shape[1]:
            features = feats[rows]
            # What trains the next model: the training labels (pipeline/round/predict.py
            # predicts them when the strategy works on embeddings) and the training picks
            # still waiting for an answer. Held-out items never train, so they cover nothing.
            train_keys = set(labeled_sets(project)[0])
            train_keys |= {k for k, p in made.items() if not p.holdout}
            known = [index[k] for k in train_keys if k in index]
            labeled = feats[known] if known else None
        chosen = select_for_review(probs[rows], n_strategy, strategy=loop.strategy, rng=rng,
                                   features=features, labeled_features=labeled)
        out += [Pick(rest[j], "strategy") for j in chosen]
    return out


