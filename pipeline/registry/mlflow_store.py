"""Where a registry's MLflow store lives, and whether it can be used right now.

The probes run before a round changes anything (``ModelRegistry.check``), so a store that is
missing, locked, corrupt or unreachable stops the round with a message naming the fix.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

from pipeline.project.databases import masked

REMOTE_SCHEMES = ("http", "https", "databricks")
# Long enough for a concurrent writer's short transaction, short enough to fail fast.
PROBE_TIMEOUT_S = 2.0


class RegistryError(RuntimeError):
    """The model registry is unavailable or was asked something impossible; says how to fix."""


class CheckpointMissing(RegistryError):
    """A version's checkpoint file is not where the registry keeps it (the artifact folder
    lost or pruned): the version cannot be loaded, as opposed to a registry that cannot be
    reached now."""


def default_tracking_uri(workspace: str | Path) -> str:
    """The tracking URI of a workspace's own registry: ``sqlite:///<workspace>/mlflow.db``."""
    return f"sqlite:///{Path(workspace).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URI."""
    rest = urllib.parse.urlparse(uri)
    raw = uri.split("://", 1)[1].split("?", 1)[0]
    if rest.netloc or not raw.startswith("/") or raw in ("/", "/:memory:"):
        raise RegistryError(f"unsupported SQLite URI {uri!r}; use sqlite:////absolute/path.db "
                            "or sqlite:///relative/path.db")
    return Path(urllib.request.url2pathname(raw[1:])).expanduser().resolve()


def require_folder(path: Path) -> None:
    """Refuse a store whose folder is missing: MLflow would create it, so a mistyped URI
    would silently start an empty registry."""
    if not path.parent.is_dir():
        raise RegistryError(f"the folder of the MLflow store does not exist: {path.parent}; "
                            "create the workspace with `labelloop init`, or fix "
                            "registry.tracking_uri in labelloop.toml")


def probe_sqlite(path: Path) -> None:
    """Fail fast if the SQLite store cannot be written now: missing folder, permissions, not
    a database, or another process holding its write lock."""
    require_folder(path)
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RegistryError(f"the MLflow store {path} is not writable; fix the permissions of "
                            "it and its folder")
    if not path.exists():
        return  # a new store: MLflow creates it on first use
    if not path.is_file():
        raise RegistryError(f"the MLflow store {path} is not a file; move it aside")
    uri = f"file:{urllib.parse.quote(str(path))}?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=PROBE_TIMEOUT_S, isolation_level=None)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            # Takes the write lock and gives it back: a locked store fails here, not mid-round.
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        text = str(err)
        if "locked" in text or "busy" in text:
            raise RegistryError(f"the MLflow store {path} is locked by another process (waited "
                                f"{PROBE_TIMEOUT_S:.0f} s); stop the other writer (an `mlflow "
                                "ui`, another labelloop) and retry") from err
        if "not a database" in text or "malformed" in text:
            raise RegistryError(f"the MLflow store {path} is corrupt ({text}); restore it from "
                                "a backup, or move it aside to start an empty registry") from err
        raise RegistryError(f"the MLflow store {path} cannot be opened: {text}") from err


def probe_server(uri: str) -> None:
    """Fail fast if nothing answers at a remote tracking server's host and port."""
    parts = urllib.parse.urlparse(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise RegistryError(f"the MLflow server {masked(uri)} is unreachable ({err}); start it "
                            "or fix registry.tracking_uri in labelloop.toml") from err


DEFAULT_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


def probe_database(uri: str) -> None:
    """Fail fast if nothing answers at a database store's host and port: MLflow retries a
    refused connection for minutes, silently."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except ArgumentError:
        return  # MLflow's own error says what is wrong with it
    port = url.port or DEFAULT_DB_PORTS.get(url.get_backend_name())
    if not url.host or port is None or url.host.startswith("/"):
        return  # a local socket or file: nothing to reach over TCP
    try:
        socket.create_connection((url.host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise RegistryError(f"the MLflow store's database {masked(uri)} is unreachable ({err}); "
                            "start it or fix registry.tracking_uri in labelloop.toml") from err


def local_folder(uri: str) -> Path | None:
    """The folder a ``file:`` URI or a plain path names; None for other stores."""
    parts = urllib.parse.urlparse(uri)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme == "":
        return Path(uri)
    return None
