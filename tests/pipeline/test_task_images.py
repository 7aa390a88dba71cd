"""How ``labelloop serve`` finds a task's image: pool items by key, local files only inside the
served folder, downloads cached by content, bad images with a reason instead of an error."""

from __future__ import annotations

import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import numpy as np
import pytest
from PIL import Image

from labeling.store import LabelStore, NewItem, file_key
from labeling.studio.project import ImageSource
from pipeline.task_images import TaskImages


@pytest.fixture
def setup(tmp_path):
    images = tmp_path / "served" / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(images / "a.png")
    (tmp_path / "secret.png").write_bytes((images / "a.png").read_bytes())
    store = LabelStore(tmp_path / "labels.db")
    key, size = file_key(images / "a.png")
    store.add_items([NewItem(key=key, path=str(images / "a.png"), size_bytes=size, width=8,
                             height=8)])
    source = ImageSource.local(images)
    found = TaskImages(store, source, tmp_path / "cache", studio_url="http://127.0.0.1:1",
                       api_key=None)
    yield found, source, images, key, tmp_path
    store.close()


def test_a_pool_item_and_a_served_local_file_are_found(setup):
    found, source, images, key, _ = setup
    shown = source.url_for(str(images / "a.png"))
    by_key = found.resolve({"data": {"item_key": key, "image": shown}})
    assert (by_key.path, by_key.key) == (str(images / "a.png"), key)
    # The task's image changed in Label Studio to another picture: that picture, not the
    # item's (it got the item's prediction).
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(images / "b.png")
    edited = found.resolve({"data": {"item_key": key,
                                     "image": source.url_for(str(images / "b.png"))}})
    assert edited.path == str(images / "b.png") and edited.key != key
    by_url = found.resolve({"data": {"image": source.url_for(str(images / "a.png"))}})
    assert by_url.key == key and by_url.reason is None


def test_paths_outside_the_served_folder_and_bad_tasks_get_reasons(setup):
    found, *_ = setup
    escape = found.resolve({"data": {"image": "/data/local-files/?d=../secret.png"}})
    assert escape.path is None and "outside the served folder" in escape.reason
    assert "no data object" in found.resolve("not a task").reason
    assert "no data.image" in found.resolve({"data": {}}).reason
    gs = found.resolve({"data": {"image": "gs://bucket/x.png"}})
    assert gs.path is None and "gs URLs are not read" in gs.reason


def test_a_password_or_a_signature_in_an_image_url_is_never_shown(setup):
    # serve's log showed `http://alice:S3cretPW@host/...` in the reason (and httpx's lines).
    found, *_ = setup
    url = "http://alice:S3cretPW@127.0.0.1:1/x.png?X-Amz-Signature=abcdef0123"
    gone = found.resolve({"data": {"image": url}})
    assert gone.path is None and "cannot be read" in gone.reason
    assert "S3cretPW" not in gone.reason and "abcdef0123" not in gone.reason
    assert "http://alice:***@127.0.0.1:1/x.png?..." in gone.reason
    # httpx quotes the URL it was redirected to (a presigned S3 URL behind Label Studio's
    # /presign/): masked too.
    from pipeline.task_images import _URL, shown_url

    said = "Client error '403' for url 'https://b.s3.x/k.png?X-Amz-Signature=abcdef0123'"
    assert "abcdef0123" not in _URL.sub(lambda m: shown_url(m.group(0)), said)
    # A local file's name, in the query of its URL, stays in the reason.
    assert "nothere.png" in found.resolve(
        {"data": {"image": "/data/local-files/?d=images/nothere.png"}}).reason


def test_a_host_that_never_answers_costs_a_batch_one_timeout_and_is_not_asked_again_at_once(
        setup, monkeypatch):
    # Tried one task after another, inside serve's lock: six such tasks took 120 s, past Label
    # Studio's 100 s for the whole batch, and every other request waited behind them.
    import socket
    import time

    import pipeline.task_images as task_images

    found, source, images, key, _ = setup
    monkeypatch.setattr(task_images, "DOWNLOAD_TIMEOUT_S", 1.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    try:
        port = silent.getsockname()[1]
        tasks = [{"data": {"image": f"http://127.0.0.1:{port}/{n}.png"}} for n in range(4)]
        tasks.append({"data": {"item_key": key,
                               "image": source.url_for(str(images / "a.png"))}})
        started = time.monotonic()
        got = found.resolve_all(tasks)
        assert time.monotonic() - started < 3.0  # side by side: one timeout, not four
        assert [g.path is None for g in got] == [True] * 4 + [False]
        started = time.monotonic()
        again = found.resolve_all(tasks[:1])  # failed a moment ago: not waited on again
        assert time.monotonic() - started < 0.5 and "not tried again yet" in again[0].reason
    finally:
        silent.close()


def test_downloads_are_cached_by_content_and_fetched_once(setup):
    found, _, images, key, tmp_path = setup
    (images / "junk.png").write_bytes(b"not an image")
    served = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # quiet test output
            pass

        def do_GET(self):  # noqa: N802 (the stdlib's name)
            served.append(self.path)
            super().do_GET()

    httpd = HTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(images)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/a.png"
        first = found.resolve({"data": {"image": url}})
        second = found.resolve({"data": {"image": url}})
        junk = found.resolve({"data": {"image": url.replace("a.png", "junk.png")}})
    finally:
        httpd.shutdown()
    assert first.key == second.key == key
    assert first.path == str(tmp_path / "cache" / key.removeprefix("sha256:"))
    assert served == ["/a.png", "/junk.png"]  # the second read came from the cache
    assert junk.path is None and "cannot be read" in junk.reason
