"""``labelloop serve`` as Label Studio's connected model backend: the real server calls the real
backend (a child process), for tasks imported by hand, the Train button and annotation
webhooks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.datasets import read_labels_csv
from pipeline.project.answers_waiting import MARKER
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round
from pipeline.round.sync import sync
from tests.integration.browser import open_task
from tests.integration.cli import LABELLOOP, cli_env, labelloop
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Served:
    """A ``labelloop serve`` child process on a free loopback port, ended by its PID."""

    def __init__(self, folder: Path, env: dict) -> None:
        self.folder, self.env, self.port = folder, env, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [LABELLOOP, "serve", "--config", str(self.folder), "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"serve did not come up: {self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def served(digits_project, studio_server, tmp_path, request):
    """make(name) -> (project, Served, env): a digits project, its backend started."""
    def make(name: str, *, champion: bool):
        folder = digits_project(name, folder=tmp_path / name)
        env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
        project = open_project(find_config(folder), env=env)
        request.addfinalizer(project.close)
        if champion:
            _make_champion(project)
            assert project.registry.champion() is not None
        backend = Served(folder, env)
        request.addfinalizer(backend.kill)
        backend.start()
        return project, backend, env
    return make


def _make_champion(project):
    """Two rounds with every pushed task answered right in between: the first model."""
    images = project.config.images_dir
    truth = {str(p.resolve()): label
             for p, label in read_labels_csv(images.parent / "labels.csv")}
    run_round(project)
    studio_session.simulate_annotators(project, truth, noise=0.0, seed=0)
    run_round(project)


def import_by_hand(studio, project_id: int, studio_server, hand: Path,
                   names: list[str]) -> tuple[list[int], list[str]]:
    """Tasks made as a person would: the folder ``hand`` added as a local storage, one task
    per file of ``names`` in it, and one more for an unreachable URL. (task ids, their URLs)."""
    with studio.errors("adding the folder as a storage, as a person would"):
        studio.client.import_storage.local.create(project=project_id, path=str(hand),
                                                  use_blob_urls=True, title="by hand")
    root = studio_server.images_dir.parent
    urls = [f"/data/local-files/?d={(hand / n).relative_to(root).as_posix()}" for n in names]
    urls.append(f"http://127.0.0.1:{free_port()}/gone.png")
    with studio.errors("importing hand tasks"):
        made = studio.client.projects.import_tasks(
            id=project_id, request=[{"data": {"image": u}} for u in urls],
            return_task_ids=True)
    return [int(t) for t in made.task_ids], urls


def _predictions(studio, task_id: int) -> list[dict]:
    return studio.get_json("api/predictions", {"task": task_id}, action="reading predictions")


def _retrieve(studio, project_id: int, task_ids: list[int]) -> None:
    with studio.errors("retrieving predictions"):
        studio.client.actions.create(id="retrieve_tasks_predictions", project=project_id,
                                     selected_items={"all": False, "included": task_ids})


def test_connected_backend_predicts_hand_imported_tasks_once_per_champion(
        served, studio_server, tmp_path):
    project, backend, env = served("serve-predict", champion=True)
    studio, sp = studio_session.session(project)
    v1 = f"v{project.registry.champion().version}"

    connect = ["studio", "connect", "--config", str(backend.folder), "--url", backend.url]
    first = labelloop(*connect, env=env)
    assert first.returncode == 0, first.stderr
    assert "connected" in first.stdout and "already" not in first.stdout
    again = labelloop(*connect, env=env)
    assert again.returncode == 0 and "already connected" in again.stdout
    backends = studio.get_json("api/ml", {"project": sp.id}, action="listing backends")
    assert len(backends) == 1  # connecting twice registers it once

    # Tasks people import by hand: two good images, a corrupt file, an unreachable URL.
    hand = studio_server.images_dir.parent / f"hand-{tmp_path.name}"
    hand.mkdir()
    pool = sorted(project.config.images_dir.glob("*.png"))
    for src in pool[:2]:  # new pictures (inverted digits), not copies of pool items
        with Image.open(src) as img:
            ImageOps.invert(img.convert("L")).save(hand / src.name)
    (hand / "broken.png").write_bytes(b"this is not a png")
    ids, urls = import_by_hand(studio, sp.id, studio_server, hand,
                               [pool[0].name, pool[1].name, "broken.png"])

    _retrieve(studio, sp.id, ids)
    preds = {tid: _predictions(studio, tid) for tid in ids}
    assert all(len(p) == 1 for p in preds.values()), preds
    assert {preds[tid][0]["model_version"] for tid in ids[:2]} == {v1}
    # Unreadable: not the champion's version, so Label Studio asks again (it never did).
    assert {preds[tid][0]["model_version"] for tid in ids[2:]} == {f"{v1}-unread"}
    for tid in ids[:2]:  # the good images: the champion's class, with its score
        result = preds[tid][0]["result"]
        assert result and result[0]["value"]["choices"][0] in project.classes
        assert 0 < preds[tid][0]["score"] <= 1
    for tid in ids[2:]:  # unreadable: an empty result, the batch still answered
        assert preds[tid][0]["result"] == []
    log = backend.log.read_text()
    assert "broken.png" in log and "gone.png" in log  # each reason logged

    # The annotator opening a hand-made task sees the backend's class ticked, with its version.
    screen = open_task(studio_server, sp.id, ids[0], shot="hand-made-task", expect=v1)
    assert screen.ticked == [preds[ids[0]][0]["result"][0]["value"]["choices"][0]]
    assert "issue loading URL" not in screen.text  # and the picture itself

    _retrieve(studio, sp.id, ids)  # same champion: nothing predicted again ...
    assert all(len(_predictions(studio, tid)) == 1 for tid in ids[:2])
    # ... but the unreadable image, fixed meanwhile, is predicted now (then broken again for
    # the adoption below).
    with Image.open(pool[2]) as img:
        ImageOps.invert(img.convert("L")).save(hand / "broken.png")
    _retrieve(studio, sp.id, ids[2:3])
    fixed = [p for p in _predictions(studio, ids[2]) if p["model_version"] == v1]
    assert len(fixed) == 1 and fixed[0]["result"], _predictions(studio, ids[2])
    (hand / "broken.png").write_bytes(b"this is not a png")

    # A promotion: the next retrieve predicts again, with the new version.
    ckpt = project.registry.checkpoint_path(project.registry.champion().version)
    new = project.registry.register(ckpt, params={}, metrics={}, snapshot="serve-test-v2")
    project.registry.promote(new, reason="test: a new champion")
    _retrieve(studio, sp.id, ids[:2])
    for tid in ids[:2]:
        versions = sorted(p["model_version"] for p in _predictions(studio, tid))
        assert versions == sorted([v1, f"v{new}"])

    # Killed and restarted: it serves again; nothing is predicted twice.
    backend.kill()
    backend.start()
    _retrieve(studio, sp.id, ids[:2])
    assert all(len(_predictions(studio, tid)) == 2 for tid in ids[:2])

    # The hand-made tasks join the pool and their answers become labels (the images, outside
    # the image folder, copied into it; the tasks left as they were); the unreadable
    # ones stay out, with their reason.
    for tid in ids[:3]:
        with studio.errors("annotating a hand-made task"):
            studio.client.annotations.create(
                id=tid, result=project.task.labels.prediction_result("7"))
    got = sync(project)
    assert got["adopted_tasks"] == 2, got
    assert any("broken.png" in why for why in got["not_adopted"])
    assert any("gone.png" in why for why in got["not_adopted"])
    by_task = {t: k for k, t in project.store.tasks(sp.id).items()}
    labels = project.store.current_labels()
    for tid in ids[:2]:
        key = by_task[tid]
        assert (labels[key].label, labels[key].source) == ("7", "human")
        item = project.store.item(key)
        assert Path(item.path).parent == project.config.images_dir / "imported"
        data = studio.get_json(f"api/tasks/{tid}", action="reading a task")["data"]
        assert data == {"image": urls[ids.index(tid)]}  # the task is left as people made it
    again = sync(project)  # adopted once: nothing new, nothing twice
    assert again["adopted_tasks"] == 0 and len(project.store.current_labels()) == len(labels)

    # Bad requests get a 400 that says why, and the backend stays up.
    bad = [("/predict", b"{not json", "not JSON"),
           ("/setup", b'{"project": "99999.1", "schema": ""}', "not project 99999"),
           ("/predict", b'{"tasks": "x", "project": "1.1"}', "list under 'tasks'"),
           ("/webhook", b"{}", "needs an 'action'")]
    for path, body, reason in bad:
        answer = httpx.post(backend.url + path, content=body, timeout=10)
        assert answer.status_code == 400 and reason in answer.json()["error"], answer.text
    assert httpx.get(backend.url + "/health", timeout=2).json()["model_version"] == f"v{new}"


def test_train_button_runs_rounds_and_answers_mark_the_project(served):
    project, backend, env = served("serve-train", champion=False)
    studio, sp = studio_session.session(project)
    assert labelloop("studio", "connect", "--config", str(backend.folder), "--url",
                     backend.url, env=env).returncode == 0
    ml_id = studio.get_json("api/ml", {"project": sp.id}, action="listing backends")[0]["id"]

    started = time.monotonic()
    with studio.errors("pressing Train"):
        studio.client.ml.train(id=ml_id)
        studio.client.ml.train(id=ml_id)  # pressed again while the first round runs
    assert time.monotonic() - started < 15  # answered at once, not after the round

    rounds_log = backend.folder / "ws" / "backend" / "rounds.log"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        done = [r for r in project.store.rounds() if r["status"] == "done"]
        if len(done) >= 2:
            break
        time.sleep(2)
    assert len(done) == 2, rounds_log.read_text()
    assert "error" not in rounds_log.read_text().lower()  # the queued one exited cleanly
    assert project.store.running_round() is None

    # An annotation submitted in Label Studio: the webhook marks answers as waiting at once.
    marker = project.config.workspace_dir / MARKER
    assert not marker.exists()
    task = next(t for t in iter_tasks(studio, sp.id, include="id,data") if item_key_of(t))
    with studio.errors("annotating"):
        studio.client.annotations.create(
            id=int(task["id"]), result=project.task.labels.prediction_result("3"))
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists()
    assert sync(project)["labels"] >= 1
    assert not marker.exists()  # taken by the sync
    assert project.store.current_labels()[item_key_of(task)].label == "3"
