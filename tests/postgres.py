"""A throwaway PostgreSQL server for the test session, from Debian's binaries.

initdb into a temp folder (as the ``postgres`` user through ``runuser`` when the tests run as
root: initdb refuses root), then ``pg_ctl start`` listening on no TCP address, only on a unix
socket in that temp folder, with fsync off (its data dies with the session). Stopped with
``pg_ctl stop`` on its own data folder, and its postmaster by its own PID if that fails: never
another process. Each test gets a database of its own (``create_database``). The user
``postgres`` connects without a password; ``PASSWORD_USER`` only with its password (scram), for
the tests of where a password comes from.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SETUP_HINT = "install it with `bash scripts/setup_postgres.sh` (Debian's postgresql package)"
# Only the socket's file name: the server listens on no TCP address.
PORT = 5432
PASSWORD_USER, PASSWORD = "labelloop_pw", "s3cret-Pw"
_names = itertools.count()


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start; says how to fix."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    for initdb in reversed(found):
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").is_file() and (bin_dir / "postgres").is_file():
            return bin_dir
    raise PostgresUnavailable(f"PostgreSQL server binaries not found "
                              f"(/usr/lib/postgresql/*/bin/initdb); {SETUP_HINT}")


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    pid: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (user postgres, trust auth, over the socket)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(host=str(self.socket_dir), port=PORT, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def config_sections(self) -> str:
        """``labelloop.toml`` sections putting a project's label store, MLflow store and Optuna
        storage each in a new database of this server."""
        return (f'[store]\nurl = "{self.create_database("store")}"\n'
                f'[registry]\ntracking_uri = "{self.create_database("registry")}"\n'
                f'[tuning]\nstorage = "{self.create_database("tuning")}"\n')

    def create_password_database(self) -> str:
        """A new database owned by ``PASSWORD_USER`` (whose password is ``PASSWORD``); returns
        its URL without the password."""
        import psycopg

        name = f"pw_{os.getpid()}_{next(_names)}"
        with psycopg.connect(host=str(self.socket_dir), port=PORT, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  (PASSWORD_USER,)).fetchone()
            if not exists:
                conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f'CREATE DATABASE "{name}" OWNER {PASSWORD_USER}')
        return (f"postgresql+psycopg://{PASSWORD_USER}@/{name}"
                f"?host={self.socket_dir}&port={PORT}")

    def stop(self) -> None:
        """Stop this server (fast shutdown), by its data folder, else by its own PID."""
        try:
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                          "-w", "-t", "30", "stop"], timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb and start a server in a new temp folder; raises ``PostgresUnavailable``."""
    bin_dir = find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="labelloop-pg-"))
    (root / "socket").mkdir()
    if os.geteuid() == 0:
        for path in (root, root / "socket"):
            shutil.chown(path, user="postgres", group="postgres")
    data, log = root / "data", root / "server.log"
    try:
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-sync"], timeout=120)
        hba = data / "pg_hba.conf"  # first match wins: this user needs its password
        hba.write_text(f"local all {PASSWORD_USER} scram-sha-256\n" + hba.read_text())
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                      "-o", f"-c listen_addresses='' -k {root / 'socket'} -p {PORT} "
                            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                            "-c max_connections=200",
                      "start"], timeout=120)
    except subprocess.CalledProcessError as err:
        shown = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"the throwaway PostgreSQL did not start: {err}\n"
                                  f"{err.stderr}{shown}") from None
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return PostgresServer(bin_dir, root, pid)


def _as_postgres(command: list[str], *, timeout: float) -> None:
    """Run a server command as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout,
                   cwd="/")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
