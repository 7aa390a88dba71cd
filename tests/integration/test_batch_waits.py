"""At most one batch waits in Label Studio: a round run while nobody answered picks nothing and
says why (a night of scheduled rounds sent the whole pool, chosen by models that had learned
nothing new); once the batch is answered the next one is picked."""

from __future__ import annotations

import itertools

import pytest

from pipeline.round import push as push_step
from pipeline.round import select as select_step
from pipeline.round.session import simulate_annotators
from pipeline.round.sync import sync
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration]
_n = itertools.count()


def test_a_round_picks_nothing_while_its_batch_waits_for_people(studio_server, digits_export,
                                                                tmp_path):
    project, truth, _ = make_project(studio_server, digits_export, tmp_path,
                                     f"waits-{next(_n)}-{tmp_path.name[-10:]}")
    try:
        store = project.store
        rid = store.start_round()
        first = select_step.select_batch(project, rid, {})
        assert first["picked"] == project.config.loop.initial_random
        # Killed before the push: the picks not sent yet wait too, and the re-run adds none.
        assert select_step.select_batch(project, rid, {})["picked"] == 0
        assert push_step.push(project, rid, {})["pushed"] == first["picked"]
        again = select_step.select_batch(project, store.start_round(), {})
        assert again == {"picked": 0, "waiting": first["picked"],
                         "reason": f"{first['picked']} picked item(s) wait for people in Label "
                                   f"Studio: the next batch is picked as they are answered"}
        assert simulate_annotators(project, truth, noise=0.0, seed=0) == first["picked"]
        sync(project)
        assert select_step.waiting_picks(project) == 0
        assert select_step.select_batch(project, store.start_round(), {})["picked"] > 0
    finally:
        project.close()
