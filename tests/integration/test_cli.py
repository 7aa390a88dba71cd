"""The command line against the session's server: ``labelloop studio ...`` and
``labelloop annotate-sim``, reading a labelloop.toml whose workspace holds the server."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labeling.store import LabelStore
from labeling.studio.push import PushItem, push_tasks
from pipeline.cli.app import app
from pipeline.project.config import load_config
from pipeline.project.studio import connect_studio, open_studio_project

pytestmark = pytest.mark.integration


def run(*args, env=None):
    # The caller's own LABEL_STUDIO_* variables must not leak into these tests.
    clean = {"LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None, **(env or {})}
    result = CliRunner().invoke(app, list(args), env=clean)
    return result.exit_code, result.output


def test_start_and_status_report_the_running_server_without_the_key(studio_server):
    config = str(studio_server.config_path)
    code, text = run("studio", "start", "--config", config)
    assert code == 0, text
    assert "already running" in text and studio_server.url in text
    assert "password in" in text and studio_server.token not in text
    code, text = run("studio", "status", "--config", config)
    assert code == 0 and "running" in text and studio_server.token not in text


def test_annotate_sim_then_sync_through_the_cli(studio_server, make_items):
    config = load_config(studio_server.config_path)
    env: dict[str, str] = {}
    studio = connect_studio(config, env)
    project = open_studio_project(config, studio)
    store = LabelStore(config.store_url)
    try:
        items = make_items(6)
        store.add_items(items)
        push_tasks(studio, store, project, [PushItem(i.key, i.path, "cat", 0.5) for i in items],
                   model_version="m1")
        truth = Path(items[0].path).parent / "labels.csv"
        with truth.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label"])
            writer.writerows([Path(i.path).name, "dog"] for i in items)
        cfg = str(studio_server.config_path)
        code, text = run("annotate-sim", "--truth", str(truth), "--noise", "0", "--skip", "0",
                         "--config", cfg)
        assert code == 0, text
        assert "answered 6" in text
        code, text = run("studio", "sync", "--config", cfg)
        assert code == 0, text
        assert "labels written 6" in text
        assert {store.current_labels()[i.key].label for i in items} == {"dog"}
    finally:
        store.close()


def test_a_wrong_key_in_the_environment_is_a_clear_error(studio_server):
    key = "wrong-key-0123456789abcdef"
    code, text = run("studio", "sync", "--config", str(studio_server.config_path),
                     env={"LABEL_STUDIO_API_KEY": key})
    assert code == 2
    assert "refused the API key" in text and key not in text


def test_push_by_hand_sends_unlabeled_items_without_a_task(studio_server, make_items):
    config = load_config(studio_server.config_path)
    store = LabelStore(config.store_url)
    try:
        items = make_items(6)
        store.add_items(items)
        gone = Path(items[5].path)  # an image people could not be shown waits, reported
        kept = gone.read_bytes()
        gone.unlink()
        cfg = str(studio_server.config_path)
        code, text = run("studio", "push", "--limit", "3", "--config", cfg)
        assert code == 0, text
        assert "pushed 3 new task(s)" in text
        code, text = run("studio", "push", "--config", cfg)
        assert code == 0 and "pushed 2 new task(s)" in text
        assert "not sent: 1 item(s) whose image cannot be shown" in text
        project = open_studio_project(config, connect_studio(config, {}))
        assert {i.key for i in items[:5]} <= set(store.tasks(project.id))
        assert items[5].key not in store.tasks(project.id)
        gone.write_bytes(kept)  # back: the next push sends it
        code, text = run("studio", "push", "--config", cfg)
        assert code == 0 and "pushed 1 new task(s)" in text and "not sent" not in text
        assert items[5].key in store.tasks(project.id)
    finally:
        store.close()
