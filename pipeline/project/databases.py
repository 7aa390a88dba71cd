"""The database URLs of a project's three stores, with their passwords, and how they are shown.

The label store (``[store] url``), MLflow's tracking and registry store (``[registry]
tracking_uri``) and Optuna's study storage (``[tuning] storage``) each default to a SQLite file
in the workspace and take any SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``. The
embedded Label Studio takes a PostgreSQL URL for its own database (``[studio] database``).

A password never goes in ``labelloop.toml`` (a URL holding one is refused when the config is
read), on a command line or in a log. It comes, for each store, from the file named by that
section's ``password_file`` (the file holds the password alone; ``[studio]
database_password_file``), else from the environment variable ``LABELLOOP_STORE_PASSWORD``,
``LABELLOOP_REGISTRY_PASSWORD``, ``LABELLOOP_TUNING_PASSWORD`` or
``LABELLOOP_STUDIO_DB_PASSWORD``. ``Config.database_urls`` (``with_password`` for each store) is
the boundary where they are read; every message that shows a URL shows it through ``masked``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Per config section: its URL key and the environment variable its password may come from.
URL_KEYS = {"store": "url", "registry": "tracking_uri", "tuning": "storage",
            "studio": "database"}
PASSWORD_ENV = {"store": "LABELLOOP_STORE_PASSWORD", "registry": "LABELLOOP_REGISTRY_PASSWORD",
                "tuning": "LABELLOOP_TUNING_PASSWORD", "studio": "LABELLOOP_STUDIO_DB_PASSWORD"}
# [studio] has a password_file of another kind in mind (the admin's): its key says database.
PASSWORD_KEYS = {"store": "password_file", "registry": "password_file",
                 "tuning": "password_file", "studio": "database_password_file"}
# URLs that take no password from us: files (SQLite, plain paths) and tracking servers (MLflow
# reads MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for those itself).
_NOT_DATABASES = ("", "file", "sqlite", "http", "https", "databricks")


class DatabaseError(ValueError):
    """A store's password cannot be read or does not fit its URL; the message says the fix."""


@dataclass(frozen=True)
class DatabaseUrls:
    """The URLs to connect with, passwords included: kept in memory, never shown (``repr``
    masks them)."""

    store: str
    registry: str
    tuning: str
    studio: str = ""  # empty: the embedded Label Studio's own SQLite file

    def __repr__(self) -> str:
        return (f"DatabaseUrls(store={masked(self.store)!r}, registry={masked(self.registry)!r}, "
                f"tuning={masked(self.tuning)!r}, studio={masked(self.studio)!r})")


def password_problem(url: str, section: str) -> str | None:
    """Why ``url``, written in ``labelloop.toml``'s ``[section]``, is refused, or None."""
    if url_password(url) is None:
        return None
    key = URL_KEYS[section]
    if _scheme(url) in ("http", "https"):
        return (f"[{section}] {key} holds a password; remove it from labelloop.toml and set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment")
    return (f"[{section}] {key} holds a password; remove it from labelloop.toml (keep the user "
            f"name) and put the password in a file named by [{section}] "
            f"{PASSWORD_KEYS[section]}, or in the environment variable {PASSWORD_ENV[section]}")


# Query parameters that carry a password (libpq's, which psycopg passes through): the user
# part is not the only place a URL can hold one.
SECRET_QUERY_KEYS = ("password", "sslpassword")


def url_password(url: str) -> str | None:
    """The password in ``url``'s user part or its query (``?password=``), if it has one."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is not None:
            return parts.password
        query = urllib.parse.parse_qs(parts.query)
    except ValueError:
        return None  # not a URL with a user part: nothing secret in it
    return next((v[0] for k, v in query.items() if k.lower() in SECRET_QUERY_KEYS), None)


def _masked_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{k}={'***' if k.lower() in SECRET_QUERY_KEYS else urllib.parse.quote(v)}"
                    for k, v in pairs)


def not_a_url_problem(url: str, section: str) -> str | None:
    """Why ``url``, a database URL of ``[section]``, is no SQLAlchemy URL, or None (empty: the
    workspace's SQLite file). SQLAlchemy would otherwise take some such text for a file name
    relative to wherever the command runs."""
    try:
        if not url or "://" in url and make_url(url).drivername:
            return None
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        pass
    return (f"[{section}] {URL_KEYS[section]} is not a database URL; write one like "
            "postgresql+psycopg://user@host/dbname (or sqlite:////absolute/path.db), or leave "
            "it empty for a SQLite file in the workspace")


def masked(url: str) -> str:
    """``url`` as shown in messages and logs: any password (in the user part or the query)
    replaced by ``***``."""
    shown = url
    if _scheme(url) in _NOT_DATABASES:
        password = url_password(urllib.parse.urlsplit(url)._replace(query="").geturl())
        if password is not None:
            shown = url.replace(f":{password}@", ":***@", 1)
    else:
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            pass
    if url_password(url) is not None and "?" in shown:
        base, _, query = shown.partition("?")
        shown = f"{base}?{_masked_query(query)}"
    return shown


def with_password(url: str, section: str, password_file: Path | None,
                  env: Mapping[str, str]) -> str:
    """``url`` (of ``[section]``) with the password from ``password_file`` (an absolute path),
    else from the section's environment variable in ``env`` (where the URL takes a password);
    as is without either. Raises ``DatabaseError``."""
    password = None
    if password_file is not None:
        path = password_file
        try:
            password = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise DatabaseError(f"[{section}] {PASSWORD_KEYS[section]} {path} cannot be read "
                                f"({reason}); "
                                f"fix the path, or set {PASSWORD_ENV[section]} instead"
                                ) from None
        if not password:
            raise DatabaseError(f"[{section}] {PASSWORD_KEYS[section]} {path} is empty; write the "
                                "password in it")
    elif env.get(PASSWORD_ENV[section]) and _scheme(url) not in _NOT_DATABASES:
        # The environment is the shell's, shared by every project run from it: a variable set
        # for one project's PostgreSQL says nothing about another's SQLite file, so it is
        # used only where a URL takes a password.
        password = env[PASSWORD_ENV[section]]
    if password is None:
        return url
    if _scheme(url) in _NOT_DATABASES:
        where = f"[{section}] {PASSWORD_KEYS[section]}"
        raise DatabaseError(f"{where} gives a password, but [{section}] {URL_KEYS[section]} "
                            f"({masked(url) or 'the workspace default'}) is not a database "
                            "URL that takes one; remove it, or point the URL at your database")
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""
