"""Images in S3 and Label Studio (a local moto endpoint): a project takes an ``s3://`` prefix,
tasks carry presigned URLs that fetch the image's bytes, the sync accepts a re-signed URL of
the same object, and the model backend reads ``s3://`` task URLs."""

from __future__ import annotations

import hashlib
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from labeling.store import LabelStore
from labeling.studio.project import StudioProject
from labeling.studio.push import PushItem, _validated_tasks
from labeling.studio.sync import _wrong_image
from pipeline.ingest import ingest_folder
from pipeline.project.config import ConfigError, load_config, render_config
from pipeline.project.studio import image_source
from pipeline.task_images import TaskImages
from tests.data.make_corpus import encoded


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encoded(Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)), "PNG")


@pytest.fixture
def project(s3, tmp_path):
    """(config, store, studio project, ingested items by key) for images in s3://BUCKET/photos."""
    for i in range(3):
        s3.put(f"photos/{i}.png", _png(i))
    path = tmp_path / "labelloop.toml"
    path.write_text(render_config("s3demo", ["cat", "dog"], f"s3://{s3.name}/photos/"),
                    encoding="utf-8")
    config = load_config(path)
    store = LabelStore(tmp_path / "labels.db")
    report = ingest_folder(store, config.images_location)
    sp = StudioProject(id=1, title="s3demo", classes=("cat", "dog"), images=image_source(config))
    yield config, store, sp, {i.key: i for i in report.added}
    store.close()


def test_config_takes_an_s3_prefix(project, s3, tmp_path):
    config, *_ = project
    assert config.images_remote and config.images_location == f"s3://{s3.name}/photos"
    assert config.studio.s3_url_expiry_s == 7 * 24 * 3600
    bad = tmp_path / "bad" / "labelloop.toml"
    bad.parent.mkdir()
    bad.write_text(render_config("s3demo", ["cat", "dog"], "x").replace(
        'images = "x"', 'images = "s3:///photos"'), encoding="utf-8")
    with pytest.raises(ConfigError, match="project.images.*names no bucket"):
        load_config(bad)


def test_pushed_task_data_carries_a_url_that_fetches_the_image(project, s3):
    _, store, sp, items = project
    tasks = _validated_tasks(store, sp, [PushItem(k, i.path) for k, i in items.items()], "")
    assert len(tasks) == 3
    for key, task in tasks.items():
        url = task["data"]["image"]
        assert url.startswith(s3.endpoint + "/") and "X-Amz-Expires=604800" in url
        response = httpx.get(url)  # as a browser would: no AWS credentials
        assert response.status_code == 200
        assert "sha256:" + hashlib.sha256(response.content).hexdigest() == key
        assert task["data"]["item_key"] == key


def test_sync_takes_a_re_signed_url_of_the_same_object_and_refuses_another(project):
    _, store, sp, items = project
    (key, item), (other, _) = list(items.items())[:2]
    records = {r.key: r for r in store.items()}
    old = sp.images.url_for(item.path)
    time.sleep(1.1)  # signed in another second: another signature
    assert sp.images.url_for(item.path) != old
    assert _wrong_image(sp.images, records, {"data": {"image": old}}, key) is None
    swapped = sp.images.url_for(records[other].path)
    why = _wrong_image(sp.images, records, {"data": {"image": swapped}}, key)
    assert why is not None and "was changed in Label Studio" in why


def test_model_backend_reads_s3_and_presigned_task_urls(project, tmp_path):
    _, store, sp, items = project
    key, item = next(iter(items.items()))
    images = TaskImages(store, sp.images, tmp_path / "cache", studio_url="http://127.0.0.1:1",
                        api_key=None)
    # A pushed task: its item, whenever its URL was signed (not read from S3 again).
    pooled = images.resolve({"data": {"item_key": key, "image": sp.images.url_for(item.path)}})
    assert (pooled.path, pooled.key) == (item.path, key)
    for url in (item.path, sp.images.url_for(item.path)):  # hand-made tasks: no item key
        found = images.resolve({"data": {"image": url}})
        assert found.reason is None and found.key == key
        assert images.same_image(url, key)
    gone = images.resolve({"data": {"image": item.path.replace(".png", "-gone.png")}})
    assert gone.path is None and "no such object" in gone.reason


class _FakeStudio:
    """Just enough of ``labeling.studio.connection.Studio`` for ``resign_images``: the tasks it
    holds, and the updates it was sent."""

    def __init__(self, tasks: list[dict]) -> None:
        self.tasks, self.updates = tasks, []
        self.client = type("Client", (), {"tasks": self})()

    def update(self, *, id, data):  # client.tasks.update
        self.updates.append((id, data))

    def errors(self, action):
        import contextlib

        return contextlib.nullcontext()


def test_push_re_signs_urls_close_to_expiring_and_leaves_others(project, monkeypatch):
    import labeling.studio.push as push_module
    from labeling.studio.push import resign_images

    _, store, sp, items = project
    (k1, i1), (k2, i2), (k3, i3) = items.items()
    tasks = [{"id": 1, "data": {"image": sp.images.url_for(i1.path), "item_key": k1}},
             {"id": 2, "data": {"image": sp.images.url_for(i2.path), "item_key": k2}},
             # edited by hand to show another object: not re-signed (the sync reports it)
             {"id": 3, "data": {"image": sp.images.url_for(i1.path), "item_key": k3}}]
    studio = _FakeStudio(tasks)
    monkeypatch.setattr(push_module, "iter_tasks", lambda *a, **k: iter(tasks))
    paths = {k: i.path for k, i in items.items()}
    week = 7 * 24 * 3600
    assert resign_images(studio, sp, paths, within_s=week / 2) == 0  # fresh: untouched
    later = time.time() + week - 3600  # an hour before they expire
    assert resign_images(studio, sp, paths, within_s=week / 2, now=later) == 2
    assert [tid for tid, _ in studio.updates] == [1, 2]
    for tid, data in studio.updates:
        assert data["item_key"] == tasks[tid - 1]["data"]["item_key"]
        assert sp.images.signed_for(data["image"], paths[data["item_key"]])
        assert httpx.get(data["image"]).status_code == 200


def test_a_rounds_push_re_signs_the_tasks_of_earlier_rounds_too(project, monkeypatch):
    # The presigned URLs of tasks made in earlier rounds expire as well: the push hands every
    # task's item to the re-signing, not only the items it sends now.
    from types import SimpleNamespace

    import pipeline.round.push as round_push

    config, store, sp, items = project
    store.record_tasks(sp.id, {k: 100 + n for n, k in enumerate(items)}, round_id=None)
    handed = {}
    monkeypatch.setattr(round_push, "session", lambda _project: (None, sp))
    monkeypatch.setattr(round_push, "push_tasks", lambda *a, **k: SimpleNamespace(
        created=[], existing=[], predictions_dropped=0))
    monkeypatch.setattr(round_push, "resign_images",
                        lambda studio, project, paths, within_s: handed.update(paths) or 0)
    round_push.push(SimpleNamespace(store=store, config=config), 1, {})
    assert handed == {k: i.path for k, i in items.items()}
