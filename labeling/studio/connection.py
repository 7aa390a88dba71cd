"""A checked connection to a Label Studio server: ``connect(url, api_key)`` -> ``Studio``.

Both kinds of API key work: a legacy token and a personal access token (a JWT that the SDK
exchanges for short-lived access tokens itself).

Retries: the SDK would retry every request, POSTs included, on 5xx, 408, 409, 429 and connection
errors; a retried import whose first try was still running on the server duplicates tasks. The
client is therefore built with retries off, and only reads (``Studio.read``, ``Studio.get_json``)
are retried here, with backoff. Writes are sent once; callers make them idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from labeling.studio.errors import (
    NotLabelStudio,
    StudioAuthError,
    StudioError,
    StudioUnreachable,
    scrub,
)
from labeling.studio.urls import url_secret_problem

T = TypeVar("T")

# Seconds to wait before each retry of a read; three retries span about 3.5 s.
READ_BACKOFF = (0.5, 1.0, 2.0)
KEY_HELP = ("set LABEL_STUDIO_API_KEY, or [studio] api_key_file in labelloop.toml "
            "(the embedded server's key is in its token file: `labelloop studio status`)")
# Said to users of the embedded server and of their own alike: `studio start` refuses a
# server set by [studio] url (a user's review followed it and got another error).
URL_HELP = ("start it (the embedded one with `labelloop studio start`; your own server as you "
            "run it), or fix [studio] url / LABEL_STUDIO_URL")


@dataclass(eq=False)
class Studio:
    """A Label Studio server reached with a key that it accepted.

    ``client`` is the SDK client (retries off). Wrap calls in ``errors(action)`` (writes) or go
    through ``read`` / ``get_json`` (reads, retried), so failures become ``StudioError``.
    """

    url: str
    client: LabelStudio = field(repr=False)
    user_id: int
    user_email: str
    version: str
    timeout: float = 60.0
    _secret: str = field(default="", repr=False)

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate SDK and HTTP failures inside the block into a one-line ``StudioError``."""
        try:
            yield
        except (ApiError, httpx.HTTPError) as err:
            raise _translate(err, self.url, action, self._secret) from None

    def read(self, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a read-only SDK method, retrying connection errors and 5xx/429 with backoff."""
        return _retrying(lambda: fn(*args, **kwargs), self.url, action, self._secret)

    def get_json(self, path: str, params: dict | None = None, *, action: str,
                 missing_ok: bool = False) -> Any:
        """GET ``path`` (relative to the server URL) as plain JSON, retried like ``read``;
        with ``missing_ok``, ``None`` for HTTP 404.

        For large listings: the SDK's typed models cost more to build than the request takes.
        The SDK's own HTTP client is used so that both kinds of key keep working.
        """
        http = self.client._client_wrapper.httpx_client

        def call() -> Any:
            response = http.request(path, method="GET", params=params or {},
                                    request_options={"max_retries": 0})
            if response.status_code == 404 and missing_ok:
                return None
            if response.status_code >= 400:
                raise ApiError(status_code=response.status_code, body=response.text[:300])
            return response.json()

        return _retrying(call, self.url, action, self._secret)


def connect(url: str, api_key: str | None, *, timeout: float = 60.0) -> Studio:
    """Reach Label Studio at ``url`` with ``api_key`` and check that it accepts the key.

    Raises ``StudioAuthError`` (no key, refused key), ``StudioUnreachable`` (nothing answers),
    ``NotLabelStudio`` (something else answers); the messages never include the key.
    """
    url = normalize_url(url)
    key = (api_key or "").strip()
    if not key:
        raise StudioAuthError(f"no API key for Label Studio at {url}: {KEY_HELP}")
    version = _probe_version(url, timeout, key)
    try:
        client = LabelStudio(base_url=url, api_key=key, timeout=timeout, max_retries=0)
    except ApiError as err:  # an expired or malformed personal access token, checked locally
        raise _translate(err, url, "reading the API key", key) from None
    who = _retrying(client.users.whoami, url, "checking the API key", key)
    return Studio(url=url, client=client, user_id=int(who.id), user_email=str(who.email or ""),
                  version=version, timeout=timeout, _secret=key)


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash; it must be http(s)."""
    url = (url or "").strip().rstrip("/")
    if problem := url_secret_problem(url):
        raise StudioError(f"{problem}; fix [studio] url, LABEL_STUDIO_URL or --studio-url")
    if not url.startswith(("http://", "https://")):
        raise StudioError(f"Label Studio URL {url!r} must start with http:// or https://; "
                          f"fix [studio] url or LABEL_STUDIO_URL")
    return url


def _probe_version(url: str, timeout: float, key: str) -> str:
    """The server's release, from ``/api/version`` (no auth needed)."""

    def call() -> httpx.Response:
        return httpx.get(f"{url}/api/version", timeout=min(timeout, 30.0),
                         follow_redirects=True)

    response = _retrying(call, url, "checking the server", key)
    body: Any = None
    if response.status_code == 200:
        try:
            body = response.json()
        except ValueError:
            body = None
    if not isinstance(body, dict) or "release" not in body:
        raise NotLabelStudio(
            f"{url} answered GET /api/version with HTTP {response.status_code} but not as "
            f"Label Studio does: it is not a Label Studio server; fix [studio] url or "
            f"LABEL_STUDIO_URL")
    return str(body["release"])


def _retrying(call: Callable[[], T], url: str, action: str, secret: str) -> T:
    timed_out = 0
    for attempt in range(len(READ_BACKOFF) + 1):
        try:
            return call()
        except (ApiError, httpx.HTTPError) as err:
            # A read that timed out is tried once more, not three times: each try waits the
            # whole timeout ([studio] timeout_s), and four made a hung server cost 8 minutes
            # before the user heard of it. One slow answer still gets its second chance.
            slow = isinstance(err, httpx.TimeoutException) and not isinstance(
                err, httpx.ConnectTimeout)
            timed_out += slow
            if attempt == len(READ_BACKOFF) or not _retryable(err) or timed_out > 1:
                raise _translate(err, url, action, secret) from None
        time.sleep(READ_BACKOFF[attempt])
    raise AssertionError("unreachable")  # the loop always returns or raises


def _retryable(err: Exception) -> bool:
    if isinstance(err, ApiError):
        return err.status_code is not None and (err.status_code >= 500 or err.status_code == 429)
    return isinstance(err, httpx.TransportError)


def _translate(err: Exception, url: str, action: str, secret: str) -> StudioError:
    """A one-line ``StudioError`` for an SDK/httpx failure, without the key."""
    where = f"Label Studio at {url}"
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
        return StudioUnreachable(f"cannot reach {where} while {action} (connection failed); "
                                 f"{URL_HELP}")
    if isinstance(err, httpx.TimeoutException):
        return StudioUnreachable(
            f"{where} did not answer in time while {action}; it may be overloaded, stopped or "
            f"still working on the request: try again (pushing and syncing are safe to "
            f"repeat; [studio] timeout_s sets how long to wait)")
    if isinstance(err, httpx.TransportError):
        return StudioUnreachable(f"lost the connection to {where} while {action} "
                                 f"({type(err).__name__}); is the server still running? "
                                 f"{URL_HELP}")
    if isinstance(err, ApiError):
        status = err.status_code
        detail = scrub(_short(err.body), secret)
        if status in (401, 403):
            return StudioAuthError(f"{where} refused the API key (HTTP {status}) while {action}: "
                                   f"{detail}; {KEY_HELP}")
        if status is None:
            return StudioAuthError(f"{where}: {detail}; {KEY_HELP}")
        return StudioError(f"{where} answered HTTP {status} while {action}: {detail}")
    return StudioError(f"request to {where} failed while {action} ({type(err).__name__})")


def _short(body: Any, limit: int = 300) -> str:
    if isinstance(body, dict):
        detail, fields = body.get("detail"), body.get("validation_errors")
        body = f"{detail} {fields}" if detail and fields else (detail or fields or body)
    text = " ".join(str(body).split())
    return text if len(text) <= limit else text[:limit] + "..."
