"""Which human labels outside the held-out set get a second person this round
(``[loop] review_share``; the rule is ``labeling.studio.opinions.review_queue``).

A suspect is a label whose one answer differs from the pre-annotation its person was shown
(made while the item had no label: out-of-sample, as cleanlab's confident learning asks,
without training extra models) or from the newest champion's prediction (in-sample: the model
trained on the label and still contradicts it; this is what catches an answer that took a wrong
pre-annotation as it was shown). The score that orders the queue is the probability the newest
champion gave the person's answer, else the choosing round's (self-confidence): lowest first.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlalchemy import func, select

from labeling.schema import SecondOpinion
from pipeline.project.project import Project
from pipeline.round.predict import choosing_probs

REVIEW_REASON = "review:"  # how plan() words a review request


def answer_scores(project: Project, votes: Mapping[str, Mapping[str, str]],
                  newest: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Item key -> the probability a model gave the item's first answer, for items with one
    answer: the newest champion's (``newest``: key -> probabilities) where it predicted the
    item, else the choosing round's."""
    single = {k: next(iter(v.values())) for k, v in votes.items() if len(v) == 1}
    classes = list(project.classes)
    probs = {**choosing_probs(project, single), **{k: p for k, p in newest.items()
                                                    if k in single}}
    return {k: float(p[classes.index(single[k])])
            for k, p in probs.items() if single[k] in classes}


def review_budget(project: Project, studio_project_id: int, round_id: int | None) -> int:
    """How many review requests this round may still make: ``review_share`` of the batch,
    less those already made in the round (a manual sync counts toward the newest round)."""
    loop = project.config.loop
    allowed = int(loop.review_share * loop.batch_size)
    if allowed <= 0:
        return 0
    with project.store.transaction() as s:
        made = s.scalar(select(func.count()).select_from(SecondOpinion).where(
            SecondOpinion.project_id == studio_project_id,
            SecondOpinion.reason.startswith(REVIEW_REASON),
            SecondOpinion.round_id.is_(None) if round_id is None
            else SecondOpinion.round_id == round_id))
    return max(0, allowed - int(made or 0))


