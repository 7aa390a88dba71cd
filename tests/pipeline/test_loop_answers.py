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
