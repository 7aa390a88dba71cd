"""`labelloop studio sync` on tasks people imported by hand: adopted into the pool and their
answers labels, as a round's sync does. It once read them as no item's and kept their answers
so; later syncs saw them unchanged and the answers never came."""

from __future__ import annotations

import itertools

import pytest

from labeling.studio.sync import sync_annotations
from pipeline.round.session import session
from tests.integration.test_cli import run
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration]
_n = itertools.count()


def test_studio_sync_adopts_hand_imported_tasks_and_reads_answers_kept_as_no_items(
        studio_server, digits_export, tmp_path):
    project, truth, env = make_project(studio_server, digits_export, tmp_path,
                                       f"hand-sync-{next(_n)}-{tmp_path.name[-10:]}")
    try:
        studio, sp = session(project)
        items = project.store.items()[:2]
        tasks = []
        for item in items:
            with studio.errors("importing a task by hand"):
                made = studio.client.tasks.create(project=sp.id,
                                                  data={"image": sp.images.url_for(item.path)})
            tasks.append(int(made.id))

        def answer(task_id, item):
            with studio.errors("answering"):
                studio.client.annotations.create(
                    id=task_id, result=project.task.labels.prediction_result(
                        truth[str(item.path)]))

        answer(tasks[0], items[0])
        # As the sync before this fix did: the answer kept as no item's.
        sync_annotations(studio, project.store, sp)
        assert project.store.current_labels() == {}
        answer(tasks[1], items[1])
        code, text = run("studio", "sync", "--config", str(tmp_path / "labelloop.toml"),
                         env=env)
        assert code == 0, text
        assert "adopted 2 task(s)" in text and "labels written 2" in text
        labels = project.store.current_labels()
        assert {k: (v.label, v.source) for k, v in labels.items()} == {
            i.key: (truth[str(i.path)], "human") for i in items}
        assert project.store.tasks(sp.id) == {i.key: t for i, t in zip(items, tasks, strict=True)}
    finally:
        project.close()


def test_a_task_naming_an_item_key_this_store_lacks_is_adopted_and_its_answer_counts(
        studio_server, digits_export, tmp_path):
    # A hand-made task with an item_key of the user's own (or labelloop's, from a workspace
    # lost since): its answers were kept as no item's, silently, and never read again.
    project, truth, env = make_project(studio_server, digits_export, tmp_path,
                                       f"own-key-{next(_n)}-{tmp_path.name[-10:]}")
    try:
        studio, sp = session(project)
        item = project.store.items()[3]
        with studio.errors("importing a task by hand"):
            made = studio.client.tasks.create(project=sp.id, data={
                "image": sp.images.url_for(item.path), "item_key": "their-key-7"})
            studio.client.annotations.create(id=int(made.id), result=project.task.labels
                                             .prediction_result(truth[str(item.path)]))
        code, text = run("studio", "sync", "--config", str(tmp_path / "labelloop.toml"),
                         env=env)
        assert code == 0, text
        assert "adopted 1 task(s)" in text
        label = project.store.current_labels()[item.key]
        assert (label.label, label.source) == (truth[str(item.path)], "human")
        assert project.store.tasks(sp.id) == {item.key: int(made.id)}
    finally:
        project.close()
