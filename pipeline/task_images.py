"""The image of a Label Studio task, as a local file the model can read: for ``labelloop serve``
(predictions for any task) and for the sync step, which adopts answered tasks that people
imported by hand into the pool (``pipeline.round.adopt``).

A task labelloop pushed names its item (``data.item_key``): the pool's file is used. A task
someone imported into the project by hand has only ``data.image``:

- a local-files URL under the served image folder (``/data/local-files/?d=...``): that file;
- a file uploaded to Label Studio (``/data/upload/...``, any URL relative to the server): read
  from the server with the project's key;
- an ``http(s)`` URL (a presigned S3 URL among them): downloaded;
- an ``s3://`` URL (a task made by Label Studio's own S3 storage): read through
  ``training.sources`` with this machine's AWS credentials.

Downloads land in a content-addressed cache (``<workspace>/backend/images/<sha256>``; a second
folder maps each URL to its content hash), written to a temporary name and renamed, so a
killed download is never used and a URL is fetched once. Any other scheme (``gs://``) is not
read yet: the task gets a reason, not an exception. Every file is decoded with the same
``open_image`` that ingest and training use before it is predicted.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from labeling.store import LabelStore, file_key
from labeling.studio.project import ImageSource
from pipeline.project.databases import masked
from training.images import DEFAULT_MAX_PIXELS, ImageError, open_image
from training.sources import RemoteUnavailable, is_remote, read_bytes

CACHE_FOLDER = Path("backend") / "images"  # under the workspace
# A download larger than this is refused (a photo is a few MB; this is not a file server).
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 20.0
# Downloads of one batch at once (a batch of tasks from Label Studio, a sync's hand-made tasks).
FETCHERS = 8
# A URL whose download failed is not tried again for this long.
RETRY_FAILED_S = 60.0
_URL = re.compile(r"https?://[^\s'\"<>]+")


def shown_url(url: str) -> str:
    """``url`` as logs and reasons show it: an http(s) URL without its password
    (``user:***@``) or query (a presigned URL's signature is a key for a week); at most 200
    characters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:200]
    if parts.scheme not in ("http", "https"):
        return url[:200]  # a local-files URL: its query is the file's name, no secret
    return masked(urlunsplit(parts._replace(query="..." if parts.query else "")))[:200]


@dataclass(frozen=True)
class TaskImage:
    """A task's image as a local file and its content key, or why there is none."""

    path: str | None = None
    key: str | None = None
    reason: str | None = None


class TaskImages:
    """Finds, fetches and checks the images of tasks (see the module docstring)."""

    def __init__(self, store: LabelStore, source: ImageSource, cache_dir: Path, *,
                 studio_url: str, api_key: str | None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._store = store
        self._source = source
        self._cache = cache_dir
        self._studio_url = studio_url.rstrip("/") + "/"
        self._api_key = api_key
        self._max_pixels = max_pixels
        # URL -> (when, why) of downloads that failed (see _fetched_unless_failed).
        self._failures: dict[str, tuple[float, str]] = {}
        self._failures_lock = threading.Lock()

    def __repr__(self) -> str:  # the key stays out of reprs
        return f"TaskImages(cache={str(self._cache)!r}, studio_url={self._studio_url!r})"

    def resolve_all(self, tasks: list) -> list[TaskImage]:
        """``resolve`` for each task, with the pool items looked up in one query, and the tasks
        resolved side by side: one slow image host cost a batch its download timeout once
        per task (six tasks: 120 s, past Label Studio's 100 s for the whole batch)."""
        keys = [_data(t).get("item_key") for t in tasks]
        pooled = self._store.items_by_key(k for k in keys if isinstance(k, str))
        if len(tasks) < 2:
            return [self.resolve(task, pooled) for task in tasks]
        with ThreadPoolExecutor(max_workers=min(FETCHERS, len(tasks))) as pool:
            return list(pool.map(lambda task: self.resolve(task, pooled), tasks))

    def resolve(self, task: object, pooled: dict | None = None) -> TaskImage:
        """The task's image; never raises for a bad task (the reason says what is wrong).
        ``pooled``: the pool's items by key, if already looked up."""
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            return TaskImage(reason="the task has no data object")
        data = task["data"]
        key = data.get("item_key")
        url = data.get("image")
        if isinstance(key, str):
            item = pooled.get(key) if pooled is not None else self._store.item(key)
            if item is not None and item.status == "ok" and self._shows_item(url, item.path):
                return TaskImage(path=item.path, key=key)
        if not isinstance(url, str) or not url:
            return TaskImage(reason="the task has no data.image URL")
        try:
            path = self._local_or_fetched(url)
            with open_image(path, max_pixels=self._max_pixels):
                pass
        except (ImageError, OSError, httpx.HTTPError, ValueError, RemoteUnavailable) as err:
            # httpx's messages quote a URL whole, the one redirected to as well (a presigned
            # S3 URL behind Label Studio's /presign/): every URL in them is shown masked.
            # Its first line: an HTTP error's second is httpx's link to a page on status codes.
            why = _URL.sub(lambda m: shown_url(m.group(0)), str(err).strip().split("\n")[0])
            return TaskImage(reason=f"image {shown_url(url)} cannot be read: {why}")
        return TaskImage(path=str(path), key=file_key(path)[0])

    def _shows_item(self, url: object, item_path: str) -> bool:
        """Whether a task's ``data.image`` still names its item's image: one edited in Label
        Studio to show another picture must not get the item's prediction (the push made it
        from the item's path; an S3 object's URL is signed anew at each push)."""
        if not isinstance(url, str) or not url:
            return True  # nothing else shown
        if item_path.startswith(("http://", "https://")):
            return url == item_path
        if is_remote(item_path):
            return self._source.signed_for(url, item_path)
        local = self._source.path_for(url)
        return local is not None and local == Path(item_path).resolve()

    def same_image(self, url: str, key: str) -> bool:
        """Whether ``url`` is known to show the image with item key ``key``: a served local
        file with those bytes, or a URL whose download had them (read from the cache's index,
        never fetched again here)."""
        local = self._source.path_for(url)
        if local is not None:
            return local.is_file() and file_key(local)[0] == key
        for candidate in (url, urljoin(self._studio_url, url.lstrip("/"))):
            by_url = self._cache / "urls" / hashlib.sha256(candidate.encode()).hexdigest()
            if by_url.is_file() and "sha256:" + by_url.read_text(encoding="ascii").strip() == key:
                return True
        return False

    def _local_or_fetched(self, url: str) -> Path:
        if url.startswith(("http://", "https://")):
            return self._fetched_unless_failed(url)
        if is_remote(url):
            return self._from_s3(url)
        local = self._source.path_for(url)
        if local is not None:
            # A task edited by hand can name any path: only the served folder is read.
            if self._source.document_root not in local.parents:
                raise ValueError(f"it is outside the served folder {self._source.document_root}")
            return local
        if url.startswith("/"):  # a file Label Studio serves itself (uploads): ask it
            headers = {"Authorization": f"Token {self._api_key}"} if self._api_key else {}
            return self._fetched(urljoin(self._studio_url, url.lstrip("/")), headers=headers)
        scheme = url.split(":", 1)[0] if ":" in url else "a relative path"
        raise ValueError(f"{scheme} URLs are not read by the backend yet (local files, "
                         f"uploads and http(s) are)")

    def _fetched_unless_failed(self, url: str) -> Path:
        """``_fetched``, except that a URL that failed in the last ``RETRY_FAILED_S`` fails
        again at once with the same reason: Label Studio asks again about such a task at every
        look (serve), and a dead host would cost each ask its timeout."""
        with self._failures_lock:
            failed = self._failures.get(url)
        if failed is not None and time.monotonic() - failed[0] < RETRY_FAILED_S:
            raise ValueError(f"{failed[1]} (less than {RETRY_FAILED_S:.0f} s ago; not tried "
                             "again yet)")
        try:
            return self._fetched(url, headers={})
        except (OSError, httpx.HTTPError, ValueError) as err:
            with self._failures_lock:
                self._failures[url] = (time.monotonic(), str(err))
            raise

    def _from_s3(self, url: str) -> Path:
        """The cached copy of the S3 object ``url`` (read now if it is not cached)."""
        by_url = self._cache / "urls" / hashlib.sha256(url.encode()).hexdigest()
        if by_url.is_file():
            cached = self._cache / by_url.read_text(encoding="ascii").strip()
            if cached.is_file():
                return cached
        data = read_bytes(url)
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise ValueError(f"larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
        name = hashlib.sha256(data).hexdigest()
        self._cache.mkdir(parents=True, exist_ok=True)
        tmp = self._cache / f".partial-{os.getpid()}-{threading.get_ident()}"
        try:
            tmp.write_bytes(data)
            tmp.replace(self._cache / name)
        finally:
            tmp.unlink(missing_ok=True)
        _write_index(by_url, name)
        return self._cache / name

    def _fetched(self, url: str, *, headers: dict) -> Path:
        """The cached download of ``url`` (fetched now if it is not cached)."""
        by_url = self._cache / "urls" / hashlib.sha256(url.encode()).hexdigest()
        if by_url.is_file():
            cached = self._cache / by_url.read_text(encoding="ascii").strip()
            if cached.is_file():
                return cached
        digest = hashlib.sha256()
        self._cache.mkdir(parents=True, exist_ok=True)
        # Unique per process and thread: the backend and a round's sync may fetch at once.
        tmp = self._cache / f".partial-{os.getpid()}-{threading.get_ident()}"
        size = 0
        try:
            with httpx.stream("GET", url, headers=headers, timeout=DOWNLOAD_TIMEOUT_S,
                              follow_redirects=True) as response, open(tmp, "wb") as out:
                response.raise_for_status()
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise ValueError(f"larger than {MAX_DOWNLOAD_BYTES // 2**20} MiB")
                    digest.update(chunk)
                    out.write(chunk)
            name = digest.hexdigest()
            tmp.replace(self._cache / name)
        finally:
            tmp.unlink(missing_ok=True)
        _write_index(by_url, name)
        return self._cache / name


def _write_index(by_url: Path, name: str) -> None:
    """Record that the URL hashed into ``by_url`` had the bytes cached as ``name``."""
    by_url.parent.mkdir(exist_ok=True)
    index_tmp = by_url.with_name(by_url.name + f".{os.getpid()}.tmp")
    index_tmp.write_text(name, encoding="ascii")
    index_tmp.replace(by_url)


def _data(task: object) -> dict:
    data = task.get("data") if isinstance(task, dict) else None
    return data if isinstance(data, dict) else {}


def project_task_images(project, studio_url: str, source: ImageSource) -> TaskImages:
    """The task images of ``project`` (a ``pipeline.project.project.Project``), with its key
    for files that Label Studio serves itself, cached in its workspace."""
    from pipeline.project.studio import studio_settings

    settings = studio_settings(project.config, project.env)
    return TaskImages(project.store, source, project.config.workspace_dir / CACHE_FOLDER,
                      studio_url=studio_url, api_key=settings.api_key)
