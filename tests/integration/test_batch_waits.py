"""At most one batch waits in Label Studio: a round run while nobody answered picks nothing and
says why (a night of scheduled rounds sent the whole pool, chosen by models that had learned
nothing new); once the batch is answered the next one is picked."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from labeling.selections import picks
from labeling.studio.opinions import refused_only
from labeling.tasks.classification import choice_result
from pipeline.round import push as push_step
from pipeline.round import select as select_step
from pipeline.round.session import session, simulate_annotators
from pipeline.round.steps import run_round
from pipeline.round.sync import sync
from pipeline.status import project_status
from tests.integration.test_loop import make_project, state

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
        # One answer is refused (no class): Label Studio counts its task as done and offers
        # it to nobody again. It waits for a fix, not a turn: it does not hold a place.
        studio, sp = session(project)
        refused_key = sorted(k for k in picks(store))[0]
        refused_task = store.tasks(sp.id)[refused_key]
        with studio.errors("answering"):
            studio.client.annotations.create(id=refused_task, result=choice_result("horse"))
        assert simulate_annotators(project, truth, noise=0.0, seed=0) == first["picked"] - 1
        sync(project)
        assert select_step.waiting_picks(project) == 0
        (task, why), = refused_only(store).values()
        assert refused_key in refused_only(store) and task == refused_task
        assert "'horse' is not a class" in why
        shown = project_status(project)
        assert shown["pool"]["pending_in_label_studio"] == 0
        assert any("1 item(s) have only answers that do not count" in w
                   and f"task {refused_task})" in w for w in shown["warnings"])
        assert select_step.select_batch(project, store.start_round(), {})["picked"] > 0
    finally:
        project.close()


def test_with_a_model_a_partly_answered_batch_gets_company_once_half_of_it_is_free(
        studio_server, digits_export, tmp_path):
    # Rounds with a champion, people answering part of a batch between rounds: the next
    # picks fill the batch's free places once half of it is free, never more.
    project, truth, _ = make_project(studio_server, digits_export, tmp_path,
                                     f"waits-model-{next(_n)}-{tmp_path.name[-10:]}")
    try:
        store, batch = project.store, project.config.loop.batch_size
        run_round(project)  # the cold start
        simulate_annotators(project, truth, noise=0.0, seed=0)
        second = run_round(project)
        assert "version" in second["stats"]["predict"]  # picked by a model
        assert second["stats"]["push"]["pushed"] == batch
        studio, sp = session(project)
        tasks = store.tasks(sp.id)
        batch_keys = sorted(k for k, p in picks(store).items() if p.round_id == second["id"])
        items = store.items_by_key(batch_keys)
        answered = iter(batch_keys)

        def answer(n: int) -> None:
            for key in itertools.islice(answered, n):
                label = truth[str(Path(items[key].path).resolve())]
                with studio.errors("answering"):
                    studio.client.annotations.create(id=tasks[key], result=choice_result(label))

        answer(batch // 2 - 10)  # 40 of 60 still wait: a room of 20 is under half a batch
        third = run_round(project)["stats"]["select"]
        assert third["picked"] == 0 and third["waiting"] == batch - (batch // 2 - 10)
        answer(10)  # half the batch answered: its other half is picked
        fourth = run_round(project)
        assert fourth["stats"]["select"]["picked"] == batch // 2
        assert fourth["stats"]["push"]["pushed"] == batch // 2
        assert select_step.waiting_picks(project) == batch
        assert state(project)["tasks_per_item"] == {1}, "an item got two tasks"
    finally:
        project.close()
