"""The select step: the next items for people, a random audit share plus the strategy's choice
(or a random cold-start batch before there is a model), recorded before anything is pushed."""

from __future__ import annotations

import numpy as np

from labeling.schema import PEOPLE_SOURCES
from labeling.selections import Pick, picks, record_picks
from labeling.strategies import select_for_review
from pipeline.project.project import Project
from pipeline.round.predict import load_predictions


def select_batch(project: Project, round_id: int, predicted: dict) -> dict:
    """Pick the next items for people: a random audit share plus the strategy's choice, or a
    random cold-start batch before there is a model. Recorded before anything is pushed."""
    loop = project.config.loop
    store = project.store
    rng = np.random.default_rng([project.config.training.seed, round_id])
    human = store.current_labels(sources=PEOPLE_SOURCES)
    taken = set(picks(store))
    skipped = {i.key for i in store.items(status="skipped")}
    candidates = [i.key for i in store.items(status="ok")
                  if i.key not in human and i.key not in taken and i.key not in skipped]
    if not candidates:
        return {"picked": 0, "reason": "nothing left to ask about"}
    if "file" not in predicted:
        n = min(loop.initial_random, len(candidates))
        chosen = rng.choice(len(candidates), size=n, replace=False)
        n_hold = int(round(n * loop.initial_holdout))
        new = [Pick(candidates[j], "random", holdout=r < n_hold) for r, j in enumerate(chosen)]
    else:
        new = _audit_and_strategy(project, candidates, predicted, rng)
    added = record_picks(store, new, round_id=round_id)
    reasons = {r: sum(p.reason == r for p in new) for r in ("random", "audit", "strategy")}
    return {"picked": len(added), **reasons}


def _audit_and_strategy(project, candidates, predicted, rng) -> list[Pick]:
    loop = project.config.loop
    n = min(loop.batch_size, len(candidates))
    n_audit = int(round(n * loop.audit_fraction))
    machine = project.store.current_labels(sources=("machine",))
    audit_idx = rng.choice(len(candidates), size=n_audit, replace=False)
    audit = [candidates[j] for j in audit_idx]
    out = [Pick(k, "audit", holdout=True,
                machine_label=machine[k].label if k in machine else None,
                machine_version=machine[k].model_version if k in machine else None)
           for k in audit]
    keys, probs, feats = load_predictions(predicted["file"])
    index = {k: i for i, k in enumerate(keys)}
    audit_set = set(audit)
    # Machine-accepted items are confident by construction; people get the uncertain rest.
    rest = [k for k in candidates if k not in audit_set and k in index and k not in machine]
    n_strategy = min(n - n_audit, len(rest))
    if n_strategy > 0:
        rows = [index[k] for k in rest]
        features = feats[rows] if feats.shape[1] else None
        chosen = select_for_review(probs[rows], n_strategy, strategy=loop.strategy, rng=rng,
                                   features=features)
        out += [Pick(rest[j], "strategy") for j in chosen]
    return out


