"""Label Studio faults during push and sync, injected by a proxy in front of the real server:
5xx answers, a slow server, an answer that comes after the client gave up, a dropped connection
and a server stopped mid-push. Reads are retried with backoff; a POST is sent once; a failure
stops with a one-line message; the next run completes with no lost label and no duplicate task.
"""

from __future__ import annotations

import pytest

from labeling.studio import server
from labeling.studio.connection import READ_BACKOFF, connect
from labeling.studio.errors import StudioError, StudioUnreachable
from labeling.studio.push import PushItem, push_tasks, refresh_predictions
from labeling.studio.remote import iter_tasks, tasks_by_key
from labeling.studio.sync import sync_annotations
from labeling.studio.sync_store import load_cursor
from tests.integration.fault_proxy import Fault
from tests.integration.test_sync import annotate

pytestmark = pytest.mark.integration
TIMEOUT = 4.0  # the client's timeout through the proxy: slow faults wait longer than this
TRIES = len(READ_BACKOFF) + 1
IMPORT = "/api/projects/"  # + id + /import
LISTING = "/api/tasks"


@pytest.fixture
def via_proxy(proxy, studio_server):
    return connect(proxy.url, studio_server.token, timeout=TIMEOUT)


def duplicate_tasks(studio, project) -> int:
    _, duplicates = tasks_by_key(studio, project.id)
    return sum(len(ids) - 1 for ids in duplicates.values())


def to_push(items):
    return [PushItem(i.key, i.path, "cat", 0.6) for i in items]


@pytest.fixture
def annotated(studio, store, project, make_items):
    """Four items pushed directly and answered "dog" in Label Studio, not synced yet."""
    items = make_items(4)
    created = push_tasks(studio, store, project, to_push(items), model_version="m1").created
    for item in items:
        annotate(studio, created[item.key], "dog")
    return items


def lost_labels(store, items) -> int:
    """Answered items whose human label is not in the store."""
    labels = store.current_labels(sources=("human",))
    return sum(1 for i in items if i.key not in labels)


def test_5xx_on_reads_is_retried_and_the_sync_completes(via_proxy, proxy, studio, store,
                                                        project, annotated, ledger):
    fault = proxy.inject(Fault("GET", LISTING, "status", status=503, times=2))
    report = sync_annotations(via_proxy, store, project)
    ledger.fault("HTTP 503 on two task listings during sync", outcome="retried, sync completed",
                 lost_labels=lost_labels(store, annotated),
                 duplicate_tasks=duplicate_tasks(studio, project))
    assert fault.hits == 2
    assert sorted(report.labeled) == sorted(i.key for i in annotated)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_answering_5xx_stops_the_sync_clearly_and_the_next_completes(
        via_proxy, proxy, studio, studio_server, store, project, annotated, ledger, status):
    proxy.inject(Fault("GET", LISTING, "status", status=status))
    with pytest.raises(StudioError) as caught:
        sync_annotations(via_proxy, store, project)
    text = str(caught.value)
    assert f"answered HTTP {status} while listing the tasks" in text
    assert "\n" not in text and studio_server.token not in text
    assert proxy.count("GET", LISTING) == TRIES  # retried with backoff, then stopped
    assert store.current_labels() == {} and load_cursor(store, project.id) == {}

    proxy.clear()
    report = sync_annotations(via_proxy, store, project)
    ledger.fault(f"HTTP {status} on every task listing during sync",
                 outcome="stopped with a message; next sync completed",
                 lost_labels=lost_labels(store, annotated),
                 duplicate_tasks=duplicate_tasks(studio, project))
    assert sorted(report.labeled) == sorted(i.key for i in annotated)


def test_a_slow_server_times_out_clearly_and_the_next_sync_completes(
        via_proxy, proxy, studio, store, project, annotated, ledger):
    proxy.inject(Fault("GET", LISTING, "slow", delay=TIMEOUT + 2))
    with pytest.raises(StudioUnreachable) as caught:
        sync_annotations(via_proxy, store, project)
    assert "did not answer in time while listing the tasks" in str(caught.value)
    # Tried twice, not TRIES times: each try waits the whole timeout.
    assert proxy.count("GET", LISTING) == 2
    assert store.current_labels() == {}

    proxy.clear()
    once = proxy.inject(Fault("GET", LISTING, "slow", delay=TIMEOUT + 2, times=1))
    report = sync_annotations(via_proxy, store, project)  # one slow answer: retried
    ledger.fault("server slower than the timeout on every listing, then on one",
                 outcome="stopped with a message; next sync retried and completed",
                 lost_labels=lost_labels(store, annotated),
                 duplicate_tasks=duplicate_tasks(studio, project))
    assert once.hits == 1
    assert sorted(report.labeled) == sorted(i.key for i in annotated)


@pytest.mark.parametrize("kind,status", [("status", 500), ("status", 503), ("drop", 0)])
def test_a_failed_import_is_sent_once_and_the_next_push_completes(
        via_proxy, proxy, studio, store, project, make_items, ledger, kind, status):
    items = make_items(5)
    proxy.inject(Fault("POST", IMPORT, kind, status=status, times=1))
    with pytest.raises(StudioError) as caught:
        push_tasks(via_proxy, store, project, to_push(items), model_version="m1")
    assert "re-running the push is safe" in str(caught.value) or kind == "drop"
    assert proxy.count("POST", "/import") == 1  # never retried blindly
    assert store.tasks(project.id) == {}

    result = push_tasks(via_proxy, store, project, to_push(items), model_version="m1")
    held, _ = tasks_by_key(studio, project.id)
    ledger.fault(f"import POST {'dropped' if kind == 'drop' else f'answered HTTP {status}'}",
                 outcome="sent once, stopped; next push completed",
                 lost_labels=0, duplicate_tasks=duplicate_tasks(studio, project))
    assert len(result.created) == 5 and duplicate_tasks(studio, project) == 0
    assert store.tasks(project.id) == {i.key: held[i.key] for i in items}


def test_an_import_answered_after_the_timeout_is_repaired_without_duplicates(
        via_proxy, proxy, studio, store, project, make_items, ledger):
    """The server created the tasks but the answer came too late: the client cannot know which
    exist, so the next push lists them by item key and imports nothing twice."""
    items = make_items(6)
    proxy.inject(Fault("POST", IMPORT, "answer_late", delay=TIMEOUT + 2, times=1))
    with pytest.raises(StudioUnreachable) as caught:
        push_tasks(via_proxy, store, project, to_push(items), model_version="m1",
                   timeout=TIMEOUT)
    assert "did not answer in time" in str(caught.value)
    assert proxy.count("POST", "/import") == 1

    result = push_tasks(via_proxy, store, project, to_push(items), model_version="m1")
    ledger.fault("import answered after the client's timeout (tasks created)",
                 outcome="next push reconciled, imported nothing twice",
                 lost_labels=0, duplicate_tasks=duplicate_tasks(studio, project))
    assert result.created == {} and len(result.existing) == 6
    assert duplicate_tasks(studio, project) == 0
    assert set(store.tasks(project.id)) == {i.key for i in items}
    assert proxy.count("POST", "/import") == 1


def test_a_server_stopped_mid_push_and_restarted_gives_one_task_per_item(
        studio_server, studio, store, project, make_items, monkeypatch, ledger):
    items = make_items(8)
    push_tasks(studio, store, project, to_push(items[:3]), model_version="m1")
    lister = studio.get_json

    def list_then_stop(*args, **kwargs):
        answer = lister(*args, **kwargs)
        monkeypatch.setattr(studio, "get_json", lister)
        server.stop(studio_server.data_dir)  # gone between the listing and the import
        return answer

    monkeypatch.setattr(studio, "get_json", list_then_stop)
    try:
        with pytest.raises(StudioUnreachable) as caught:
            push_tasks(studio, store, project, to_push(items), model_version="m1")
    finally:
        studio_server.restart()
    assert "cannot reach" in str(caught.value)

    again = connect(studio_server.url, studio_server.token)
    result = push_tasks(again, store, project, to_push(items), model_version="m1")
    ledger.fault("server stopped between listing and import, then restarted",
                 outcome="stopped with a message; next push completed",
                 lost_labels=0, duplicate_tasks=duplicate_tasks(again, project))
    assert len(result.created) == 5 and len(result.existing) == 3
    assert duplicate_tasks(again, project) == 0
    assert set(store.tasks(project.id)) == {i.key for i in items}


def test_predictions_dropped_by_label_studio_are_sent_again_and_the_version_set(
        via_proxy, proxy, studio, store, project, make_items, ledger):
    """Label Studio can keep an import's tasks and drop their predictions (still HTTP 201):
    the push must not then ask for a model version no prediction carries (HTTP 400), and the
    refresh that follows gives every pending task its prediction."""
    items = make_items(4)
    proxy.inject(Fault("POST", IMPORT, "strip_predictions", times=1))
    result = push_tasks(via_proxy, store, project, to_push(items), model_version="m7")
    assert len(result.created) == 4 and result.predictions_dropped == 4
    refreshed = refresh_predictions(via_proxy, store, project,
                                    {i.key: ("dog", 0.7) for i in items}, model_version="m7")
    found = list(iter_tasks(studio, project.id, all_fields=True,
                            include="id,predictions_model_versions"))
    versions = studio.get_json(f"api/projects/{project.id}", action="reading the project")
    ledger.fault("import whose predictions Label Studio dropped (HTTP 201)",
                 outcome="push completed without setting the version; refresh sent them again",
                 lost_labels=0, duplicate_tasks=duplicate_tasks(studio, project))
    assert refreshed.updated == 4
    assert {t["predictions_model_versions"] for t in found} == {"m7"}
    assert versions["model_version"] == "m7"
