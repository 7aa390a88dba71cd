"""The scheduled loop between rounds: answers announced by `labelloop serve`'s webhooks are
synced at once, not at the next round; a sync that fails leaves them announced."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from labeling.studio.errors import StudioUnreachable
from pipeline.loop import StopFlag, _between_rounds
from pipeline.project.answers_waiting import MARKER, mark_answers_waiting


def _project(tmp_path):
    return SimpleNamespace(config=SimpleNamespace(workspace_dir=tmp_path))


def test_announced_answers_are_synced_before_the_interval_ends(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("pipeline.round.sync.sync", lambda p: synced.append(time.monotonic()))
    threading.Timer(0.3, mark_answers_waiting, args=(tmp_path,)).start()
    started = time.monotonic()
    assert _between_rounds(_project(tmp_path), StopFlag(), 4.0) is False
    assert len(synced) == 1 and synced[0] - started < 2.5  # long before the 4 s interval
    assert not (tmp_path / MARKER).exists()


def test_a_failed_sync_leaves_the_answers_announced(tmp_path, monkeypatch):
    def down(_project):
        raise StudioUnreachable("cannot reach Label Studio")

    monkeypatch.setattr("pipeline.round.sync.sync", down)
    mark_answers_waiting(tmp_path)
    assert _between_rounds(_project(tmp_path), StopFlag(), 1.5) is False
    assert (tmp_path / MARKER).exists()  # the next round's sync takes them


def test_the_loop_retries_a_store_that_does_not_answer(tmp_path, monkeypatch):
    # The note of the failure read the store, which was the thing down: the loop ended at the
    # first failure instead of trying again.
    import pytest

    import pipeline.round.steps
    from labeling.store import StoreUnavailable
    from pipeline.loop import run_loop

    def down(*args, **kwargs):
        raise StoreUnavailable("the label store at postgresql://x did not answer")

    rounds_tried = []

    def round_down(*args, **kwargs):
        rounds_tried.append(1)
        down()

    project = SimpleNamespace(config=SimpleNamespace(workspace_dir=tmp_path),
                              store=SimpleNamespace(rounds=down))
    monkeypatch.setattr(pipeline.round.steps, "run_round", round_down)
    with pytest.raises(StoreUnavailable):
        run_loop(project, every_s=0.01, max_rounds=1, stop=StopFlag(), max_failures=3)
    assert len(rounds_tried) == 3
