"""Registering a model backend (``labelloop serve``) with a Label Studio project ("Connect model").

Idempotent: a backend already registered with the same URL is kept, never added twice. Label
Studio checks a new backend by calling its ``/health`` and ``/setup`` inside this request, so the
backend must be running first.

A server that refuses loopback backends (its default SSRF protection) answers 403, in some
set-ups *after* saving the backend row; that half-made row is deleted again, so a retry once the
server is set up right does not leave a duplicate. The embedded server is started with
``USE_DEFAULT_BANNED_SUBNETS=false`` (``labeling.studio.server``); an external server's admin
sets the same (or ``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from labeling.studio.connection import Studio
from labeling.studio.errors import StudioError

REFUSED_HINT = ("Label Studio refuses model backends on loopback or private addresses by "
                "default: start it with USE_DEFAULT_BANNED_SUBNETS=false (the embedded server "
                "does this; restart it with `labelloop studio stop` and `labelloop studio "
                "start` if it was started by an older labelloop)")


@dataclass(frozen=True)
class Connected:
    """The backend's id in Label Studio, and whether this call registered it."""

    backend_id: int
    created: bool


def connect_backend(studio: Studio, project_id: int, url: str, *, title: str) -> Connected:
    """Register the backend at ``url`` with project ``project_id`` (kept if it already is)."""
    url = url.strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        # Label Studio answers such a URL with 403, read as a refused API key.
        raise StudioError(f"model backend URL {url!r} must be http://HOST:PORT or "
                          f"https://HOST:PORT, as Label Studio reaches `labelloop serve`")
    existing = _backends(studio, project_id, url)
    if existing:
        return Connected(existing[0], created=False)
    try:
        with studio.errors(f"connecting the model backend {url} to project {project_id}"):
            made = studio.client.ml.create(project=project_id, url=url, title=title,
                                           is_interactive=False, auto_update=True,
                                           request_options={"max_retries": 0})
    except StudioError as err:
        for half_made in _backends(studio, project_id, url):
            with studio.errors(f"removing the half-registered backend {half_made}"):
                studio.client.ml.delete(id=half_made)
        if "403" in str(err) or "reserved" in str(err).lower():
            raise StudioError(f"{err}; {REFUSED_HINT}") from None
        if "HTTP 400" in str(err) and "health" in str(err).lower():
            # Its own words are an HTML link and a class name cut short.
            raise StudioError(f"Label Studio could not reach the model backend at {url} (its "
                              f"health check failed): start `labelloop serve` first, or give "
                              f"--url as Label Studio reaches it") from None
        raise
    return Connected(int(made.id), created=True)


def _backends(studio: Studio, project_id: int, url: str) -> list[int]:
    found = studio.get_json("api/ml", {"project": project_id},
                            action=f"listing the model backends of project {project_id}")
    return [int(b["id"]) for b in found or [] if str(b.get("url", "")).rstrip("/") == url]
