"""Rounds answered by a simulated crowd of three real accounts: suspect training labels get a
second person within the review budget, every answer is a cost, references and the blind check
go without the pre-annotation, and each person's error rate (Dawid-Skene) reaches
`labelloop status`."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from labeling.schema import Item, SecondOpinion
from labeling.selections import picks
from labeling.studio.accounts import add_annotator
from labeling.studio.opinions import current_votes, human_answers
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.crowd import crowd_answers
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round.blind import checked
from pipeline.round.session import session
from pipeline.round.steps import run_round
from pipeline.status import project_status
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_crowd_gets_reviews_within_budget_and_its_people_are_rated(
        studio_server, digits_export, tmp_path):
    first, truth, env = make_project(studio_server, digits_export, tmp_path,
                                     f"crowd-loop-{os.getpid()}")
    first.close()
    config = tmp_path / "labelloop.toml"  # [loop] is its last section
    config.write_text(config.read_text() + 'review_share = 0.25\ndouble_check = 0.2\n'
                      'blind_check = 0.2\nreference_error = "measured"\n', encoding="utf-8")
    project = open_project(find_config(config), env=env)
    studio, _ = session(project)
    for n in range(3):
        add_annotator(studio, project.config.studio_dir, f"c{os.getpid()}p{n}")
    try:
        for n in range(4):
            run_round(project)
            crowd_answers(project, truth, mean_error=0.1, seed=n)
        last = run_round(project)  # syncs the last answers and measures the people
        store = project.store
        with store.transaction() as s:
            asked = s.execute(select(Item.key, SecondOpinion.reason, SecondOpinion.round_id)
                              .join(Item, Item.id == SecondOpinion.item_id)).all()
        held = set(picks(store, holdout=True))
        reviews = [(k, rid) for k, reason, rid in asked if reason.startswith("review:")]
        assert reviews, "no training label was reviewed"
        assert all(k not in held for k, _ in reviews)
        per_round = {}
        for _, r in reviews:
            per_round[r] = per_round.get(r, 0) + 1
        assert max(per_round.values()) <= int(0.25 * project.config.loop.batch_size)
        votes = current_votes(store, None)
        # A reviewed label was answered again by somebody else, and that answer is a cost.
        assert any(len(votes.get(k, {})) >= 2 for k, _ in reviews)
        labeled = len(store.current_labels(sources=("human",)))
        assert human_answers(store) > labeled
        status = project_status(project)
        people = {q["name"] for q in status["annotators"]}
        assert len(people) == 3
        for q in status["annotators"]:
            lo, hi = q["interval"]
            assert 0 <= lo <= hi <= 1 and 0 <= q["rate"] <= 1 and q["items"] > 0
            assert "Dawid-Skene" in q["method"]
        # References and the blind check carry no pre-annotation; other picks of a round with
        # a champion do.
        _, blind = checked(project, picks(store))
        # Blind checks go to training picks, where the model errs often enough to count.
        assert blind and not blind & held
        studio, sp = session(project)
        shown = {item_key_of(t): bool(t.get("predictions")) for t in iter_tasks(
            studio, sp.id, include="id,data,predictions", all_fields=True)}
        assert not any(shown[k] for k in held | blind if k in shown)
        later = [k for k, p in picks(store).items() if p.round_id and p.round_id > 1
                 and p.reason == "strategy" and k not in blind and k in shown]
        assert later and all(shown[k] for k in later)
        reference = last["stats"]["accept"]["reference"]
        assert "blind-checked" in reference["how"], reference
    finally:
        project.close()
