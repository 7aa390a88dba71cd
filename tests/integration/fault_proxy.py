"""A fault-injecting HTTP proxy in front of the real Label Studio.

labelloop is pointed at the proxy's URL; every request is forwarded to the real server unless a
``Fault`` matches it, which then answers with an error status, delays the request (a slow
server), forwards it and answers only after a delay (the server did the work, the client timed
out), or drops the connection. The proxy records every request it saw, so a test can count
retries and prove that a POST was sent once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

KINDS = ("status", "slow", "answer_late", "drop", "strip_predictions")
# Hop-by-hop and length headers are the proxy's own business on each side.
_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding",
                 "keep-alive"}


@dataclass
class Fault:
    """Requests whose method is ``method`` and whose path contains ``path`` get ``kind``:
    ``status`` (answer ``status`` without forwarding), ``slow`` (wait ``delay`` s, then
    forward), ``answer_late`` (forward, then wait ``delay`` s before answering) or ``drop``
    (close the connection without forwarding) or ``strip_predictions`` (forward a task import
    without its tasks' predictions, as a server that drops them would). ``times``: how many
    requests it hits (None: all).
    """

    method: str
    path: str
    kind: str
    status: int = 503
    delay: float = 0.0
    times: int | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; valid: {', '.join(KINDS)}")

    def matches(self, method: str, path: str) -> bool:
        return (method == self.method and self.path in path
                and (self.times is None or self.hits < self.times))


class FaultProxy:
    """The proxy, serving on a free loopback port from a daemon thread until ``close``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=300.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, fault: Fault) -> Fault:
        """Add ``fault`` (it takes precedence over earlier ones); returns it to read ``hits``."""
        with self._lock:
            self.faults.insert(0, fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, method: str, path: str) -> int:
        """How many requests with this method and a path containing ``path`` arrived."""
        with self._lock:
            return sum(1 for m, p in self.seen if m == method and path in p)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.seen.append((method, path))
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _forward(self, method: str, path: str, headers, body: bytes) -> httpx.Response:
        sent = {k: v for k, v in headers.items() if k.lower() not in _SKIP_HEADERS}
        return self._client.request(method, path, headers=sent, content=body)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy._fault_for(self.command, self.path)
            if fault is not None and fault.kind == "drop":
                self.close_connection = True
                self.connection.close()
                return
            if fault is not None and fault.kind == "status":
                self._answer(fault.status, {"Content-Type": "application/json"},
                             b'{"detail": "injected fault"}')
                return
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            if fault is not None and fault.kind == "strip_predictions":
                tasks = json.loads(body)
                body = json.dumps([{k: v for k, v in t.items() if k != "predictions"}
                                   for t in tasks]).encode()
            response = proxy._forward(self.command, self.path, self.headers, body)
            if fault is not None and fault.kind == "answer_late":
                time.sleep(fault.delay)
            self._answer(response.status_code, response.headers, response.content)

        def _answer(self, status: int, headers, content: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in _SKIP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up waiting (the point of a delay fault): nobody to answer.
                self.close_connection = True

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
            """Quiet: the test output is for the test's own messages."""

    return Handler
