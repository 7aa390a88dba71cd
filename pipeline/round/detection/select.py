"""The select step for detection: a random audit share plus the images whose boxes the
champion is least sure of (``[loop] strategy``: ``labeling.box_scores``), or the random
cold-start batch before there is a model (the classification one: it looks at no label)."""

from __future__ import annotations

import numpy as np

from labeling.box_scores import choose_uncertain
from labeling.selections import Pick, picks, record_picks
from pipeline.project.project import Project
from pipeline.round.detection.predict import load_predictions
from pipeline.round.select import audit_draw, batch_room, cold_start_picks, unasked


def select_batch(project: Project, round_id: int, predicted: dict, *,
                 progress: bool = False) -> dict:
    """Pick the next images for people; recorded before anything is pushed."""
    store = project.store
    loop = project.config.loop
    rng = np.random.default_rng([project.config.training.seed, round_id])
    candidates = unasked(project, picks(store))
    if not candidates:
        return {"picked": 0, "reason": "nothing left to ask about"}
    room, full = batch_room(project, predicted, len(candidates))
    if full is not None:
        return full
    if "file" not in predicted:
        new = cold_start_picks(project, candidates, rng, progress=progress)
    else:
        n = min(room, len(candidates))
        machine = store.current_labels(sources=("machine",))
        audit = audit_draw(project, round_id, candidates, n, machine, rng)
        n_audit = len(audit)
        new = [Pick(k, "audit", holdout=True,
                    machine_label=machine[k].label if k in machine else None,
                    machine_version=machine[k].model_version if k in machine else None)
               for k in audit]
        preds = load_predictions(predicted["file"])
        chosen = set(audit)
        # Accepted images are confident by construction; people get the doubtful rest.
        rest = [k for k in candidates if k not in chosen and k in preds and k not in machine]
        order = choose_uncertain([preds[k] for k in rest], n - n_audit, kind=loop.strategy,
                                 rng=rng)
        new += [Pick(rest[j], "strategy") for j in order]
    added = record_picks(store, new, round_id=round_id)
    reasons = {r: sum(p.reason == r for p in new) for r in ("random", "audit", "strategy")}
    return {"picked": len(added), **reasons}
