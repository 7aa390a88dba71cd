"""The fault ledger: every injected fault and every bad input a test tries is recorded with its
measured outcome, and the totals are printed at the end of the run.

A test records what it measured after the fault (``lost_labels``, ``duplicate_tasks``), then
asserts on it as usual; the summary is the count the reliability issue asks for, taken from the
suite itself rather than written by hand.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import pytest

from pipeline.compute.local_cluster import RAY_ENV

# Ray reads these when it is first imported, and a test module may import it at collection:
# set here, before any does, so every Ray of the suite stays on 127.0.0.1.
os.environ.update(RAY_ENV)

# The local S3 endpoint's fixtures (`s3_server`, `s3`), for the tests of images in S3.
pytest_plugins = ("tests.training.s3_server",)


@dataclass(frozen=True)
class Entry:
    test: str
    kind: str  # "fault" or "bad input"
    what: str
    outcome: str
    lost_labels: int = 0
    duplicate_tasks: int = 0


_ENTRIES: list[Entry] = []


class Ledger:
    """What one test injected or fed in, and what came of it."""

    def __init__(self, test: str) -> None:
        self.test = test

    def fault(self, what: str, *, outcome: str, lost_labels: int, duplicate_tasks: int) -> None:
        """Record an injected fault with the losses and duplicates counted afterwards."""
        _ENTRIES.append(Entry(self.test, "fault", what, outcome, lost_labels, duplicate_tasks))

    def bad_input(self, what: str, *, outcome: str) -> None:
        """Record one bad input and what labelloop did with it (e.g. "quarantined: <reason>")."""
        _ENTRIES.append(Entry(self.test, "bad input", what, outcome))


@pytest.fixture
def ledger(request) -> Ledger:
    return Ledger(request.node.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _ENTRIES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault ledger")
    faults = [e for e in _ENTRIES if e.kind == "fault"]
    inputs = [e for e in _ENTRIES if e.kind == "bad input"]
    write(f"faults injected: {len(faults)}; lost labels: {sum(e.lost_labels for e in faults)}; "
          f"duplicate tasks: {sum(e.duplicate_tasks for e in faults)}")
    for (what, outcome), n in sorted(Counter((e.what, e.outcome) for e in faults).items()):
        write(f"  {n:3d} x {what} -> {outcome}")
    write(f"bad inputs tried: {len(inputs)}")
    for outcome, n in sorted(Counter(e.outcome.split(":")[0] for e in inputs).items()):
        write(f"  {n:3d} -> {outcome}")


# ---- the database backends: SQLite (the default) and a throwaway PostgreSQL ----------------
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (tests/postgres.py), started on first use."""
    from tests.postgres import PostgresUnavailable, start_postgres

    try:
        server = start_postgres()
    except PostgresUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The SQLAlchemy URL of a new, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each test that uses it runs once per database backend."""
    return request.param


@pytest.fixture
def store_location(backend, tmp_path, request) -> str:
    """Where a test's label store lives: a SQLite file in ``tmp_path``, or a new PostgreSQL
    database (as a SQLAlchemy URL), per ``backend``."""
    if backend == "sqlite":
        return str(tmp_path / "labels.db")
    return request.getfixturevalue("postgres_url")
