"""The embedded Label Studio server: start, stop and inspect a local one for a labelloop project.

Layout of ``data_dir`` (the project's ``workspace/studio``)::

    server.pid    JSON: pid, port, url, username, document_root of the running server
    token         the admin's API key (legacy token), mode 0600
    password      the admin's web login password, mode 0600
    server.log    the server's output
    data/         Label Studio's own data: SQLite database, media, its .env

The server binds 127.0.0.1 only, runs with a clean environment (Label Studio reads settings as
``LABEL_STUDIO_X``, ``HEARTEX_X`` *and plain* ``X``, so a stray ``USERNAME``, ``PORT`` or
``DEBUG`` would leak in), with signup, Sentry, analytics and the version check off, and serves
local files from the folder above the image folder (Label Studio refuses a storage at the
document root itself: it must be a strict subdirectory).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from labeling.studio.errors import ServerError, scrub

if TYPE_CHECKING:
    import httpx

SETUP_COMMAND = "bash scripts/setup_studio.sh"
EXECUTABLE_NAME = "label-studio"
# A first start on an empty data dir runs the migrations: 30-40 s here, more on slow disks.
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0
HEALTH_POLL_S = 0.5


@dataclass(frozen=True)
class ServerFiles:
    """Where the embedded server keeps its files, inside ``data_dir``."""

    data_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "server.pid"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "token"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def studio_data(self) -> Path:
        return self.data_dir / "data"


@dataclass(frozen=True)
class ServerInfo:
    """A running embedded server. ``first_start``: its token was created by this start."""

    url: str
    port: int
    pid: int
    username: str
    token_file: Path
    password_file: Path
    log_file: Path
    document_root: Path
    first_start: bool = False
    already_running: bool = False


@dataclass(frozen=True)
class ServerStatus:
    """What ``status`` found: ``state`` is running, starting, stopped or stale (PID file left
    behind by a server that is gone, or whose PID now belongs to another program)."""

    state: str
    pid: int | None = None
    url: str | None = None
    username: str | None = None
    token_file: Path | None = None
    log_file: Path | None = None


def local_files_root(images_dir: Path) -> Path:
    """The document root for local file serving: the folder holding the image folder, so that
    the image folder is the strict subdirectory Label Studio requires for a storage."""
    images_dir = Path(images_dir).resolve()
    if images_dir.parent == images_dir:
        raise ServerError(f"the image folder cannot be the file-system root {images_dir}; "
                          f"put the images in a folder and set [project] images")
    return images_dir.parent


def resolve_executable(configured: Path | None = None, *, search_path: str | None = None) -> Path:
    """The ``label-studio`` executable: ``configured`` if given, else one on ``search_path``
    (a PATH string; ``None`` skips the search), else ``.venv-studio`` beside this checkout."""
    if configured is not None:
        exe = Path(configured).expanduser()
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise ServerError(f"[studio] executable = {exe} is not an executable file; fix the "
                              f"path, or remove it and install Label Studio with "
                              f"`{SETUP_COMMAND}`")
        return exe
    if search_path is not None:
        found = shutil.which(EXECUTABLE_NAME, path=search_path)
        if found:
            return Path(found)
    tried = []
    # Beside the checkout: the package's folder, then the toolkit's own venv's folder.
    for base in (Path(__file__).resolve().parents[2], Path(sys.prefix).resolve().parent):
        candidate = base / ".venv-studio" / "bin" / EXECUTABLE_NAME
        tried.append(str(candidate))
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServerError(f"Label Studio is not installed (not on PATH, not at "
                      f"{' or '.join(dict.fromkeys(tried))}); install it into its own "
                      f"virtual environment with `{SETUP_COMMAND}`, or set [studio] executable")


def port_in_use(port: int) -> bool:
    """Whether something on this machine listens on ``port`` or holds it (loopback checks
    as Label Studio does, which would otherwise silently move to the next port)."""
    for host in ("127.0.0.1", "localhost"):
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            continue
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: connections left in TIME_WAIT by a stopped server do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start(
    data_dir: Path,
    *,
    port: int,
    images_dir: Path,
    executable: Path,
    username: str = "admin@labelloop.local",
    timeout: float = START_TIMEOUT_S,
    database: str = "",
) -> ServerInfo:
    """Start the embedded server, or return the one already running for ``data_dir``.
    ``database``: Label Studio's own database (``database_env``; default its SQLite file).

    Waits until ``/health`` answers and the admin token is accepted. Raises ``ServerError`` if
    the port is busy, the server exits or does not come up within ``timeout`` seconds (the
    message points at ``server.log``).
    """
    files = ServerFiles(Path(data_dir).resolve())
    root = local_files_root(images_dir)
    if not (Path(executable).is_file() and os.access(executable, os.X_OK)):
        raise ServerError(f"{executable} is not an executable file; install Label Studio with "
                          f"`{SETUP_COMMAND}`, or fix [studio] executable")
    running = _running_record(files)
    if running is not None:
        if Path(running["document_root"]) != root:
            raise ServerError(
                f"the embedded Label Studio (PID {running['pid']}) serves files from "
                f"{running['document_root']}, not {root}; stop it with `labelloop studio stop` "
                f"and start it again")
        token = _read_secret(files.token_file)
        _wait_until_up(files, running["url"], running["pid"], running["username"], token,
                       timeout=timeout)
        return _info(files, running, first_start=False, already_running=True)
    if port_in_use(port):
        raise ServerError(f"port {port} on 127.0.0.1 is already in use by another program; "
                          f"choose a free one with [studio] port in labelloop.toml (Label "
                          f"Studio would silently move to another port)")
    files.data_dir.mkdir(parents=True, exist_ok=True)
    # Owner only, also when the folder already existed (the workspace makes it 0755).
    files.data_dir.chmod(0o700)
    first_start = not files.token_file.exists()
    if first_start and (files.studio_data / "label_studio.sqlite3").exists():
        raise ServerError(f"{files.token_file} is missing but {files.studio_data} already has "
                          f"a database whose admin token labelloop cannot know; restore the "
                          f"token file, or delete {files.data_dir} to start afresh")
    # 40 hex characters: the longest token Label Studio stores.
    token = _ensure_secret(files.token_file, lambda: secrets.token_hex(20))
    password = _ensure_secret(files.password_file, lambda: secrets.token_urlsafe(18))
    url = f"http://127.0.0.1:{port}"
    env = server_env(files, username=username, password=password, token=token, root=root,
                     database=database)
    command = [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(port), "--enable-legacy-api-token"]
    with open(files.log_file, "ab") as log:
        # A new session: Ctrl-C in the terminal that ran `start` must not reach the server,
        # and stop() can end the whole process group if SIGTERM is not enough.
        proc = subprocess.Popen(command, env=env, cwd=files.data_dir, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    record = {"pid": proc.pid, "port": port, "url": url, "username": username,
              "document_root": str(root), "executable": str(executable),
              "started_at": time.time()}
    write_private(files.pid_file, json.dumps(record))
    try:
        _wait_until_up(files, url, proc.pid, username, token, timeout=timeout, proc=proc)
    except ServerError:
        _terminate(proc.pid, timeout=10.0)
        files.pid_file.unlink(missing_ok=True)
        raise
    return _info(files, record, first_start=first_start, already_running=False)


def stop(data_dir: Path, *, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the server whose PID is in ``data_dir``'s PID file; return whether one was running.

    Only that PID is signalled, and only after checking that it is still a ``label-studio``
    process (a PID can be reused after a crash).
    """
    files = ServerFiles(Path(data_dir).resolve())
    record = _read_record(files)
    if record is None:
        return False
    pid = int(record["pid"])
    if not _alive(pid):
        files.pid_file.unlink(missing_ok=True)
        return False
    if not _is_label_studio(pid):
        raise ServerError(f"PID {pid} in {files.pid_file} is no longer a label-studio process "
                          f"(the server ended and the PID was reused); nothing was signalled; "
                          f"delete {files.pid_file}")
    _terminate(pid, timeout=timeout)
    files.pid_file.unlink(missing_ok=True)
    return True


def status(data_dir: Path) -> ServerStatus:
    """The state of the embedded server of ``data_dir``, without changing anything."""
    files = ServerFiles(Path(data_dir).resolve())
    record = _read_record(files)
    if record is None:
        return ServerStatus("stopped", token_file=_existing(files.token_file))
    pid = int(record["pid"])
    if not (_alive(pid) and _is_label_studio(pid)):
        return ServerStatus("stale", pid=pid, log_file=files.log_file)
    state = "running" if _healthy(record["url"]) else "starting"
    return ServerStatus(state, pid=pid, url=record["url"], username=record["username"],
                        token_file=_existing(files.token_file), log_file=files.log_file)


def read_token(data_dir: Path) -> str | None:
    """The embedded server's API key, or ``None`` if it was never started."""
    path = ServerFiles(Path(data_dir).resolve()).token_file
    return _read_secret(path) if path.exists() else None


def database_env(database: str) -> dict[str, str]:
    """Label Studio's settings for its database: ``""`` for its own SQLite file in the data
    folder, or a ``postgresql://`` URL (password included; a unix socket as ``?host=DIR``)."""
    if not database:
        return {"DJANGO_DB": "sqlite"}
    url = make_url(database)
    if url.get_backend_name() != "postgresql":
        raise ServerError(f"Label Studio's database must be PostgreSQL, not "
                          f"{url.get_backend_name()!r}; fix [studio] database")
    host = url.query.get("host") or url.host or "localhost"
    port = url.query.get("port") or url.port or 5432
    return {"DJANGO_DB": "postgresql", "POSTGRE_NAME": url.database or "postgres",
            "POSTGRE_USER": url.username or "postgres", "POSTGRE_PASSWORD": url.password or "",
            "POSTGRE_HOST": str(host), "POSTGRE_PORT": str(port)}


def server_env(files: ServerFiles, *, username: str, password: str, token: str,
               root: Path, database: str = "") -> dict[str, str]:
    """The complete environment of the server process; nothing is inherited. ``database``:
    see ``database_env`` (its password travels in the environment, never the command line)."""
    return {
        **database_env(database),
        "PATH": os.defpath,
        # Anything that writes under ~ writes into the data dir, not the user's home.
        "HOME": str(files.data_dir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "LABEL_STUDIO_BASE_DATA_DIR": str(files.studio_data),
        # Applied when the user (token) and the organization (legacy tokens) are created.
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root),
        # No calls out: without these it contacts Sentry, analytics and PyPI at start.
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
        "LABEL_STUDIO_CONVERTER_DOWNLOAD_RESOURCES": "false",
        # `labelloop serve` runs on 127.0.0.1 too: without this the server refuses to connect
        # a loopback model backend (and to send it webhooks). It binds loopback only itself.
        "USE_DEFAULT_BANNED_SUBNETS": "false",
    }


# ---- internals ---------------------------------------------------------------------------
def _info(files: ServerFiles, record: dict, *, first_start: bool,
          already_running: bool) -> ServerInfo:
    return ServerInfo(url=record["url"], port=int(record["port"]), pid=int(record["pid"]),
                      username=record["username"], token_file=files.token_file,
                      password_file=files.password_file, log_file=files.log_file,
                      document_root=Path(record["document_root"]), first_start=first_start,
                      already_running=already_running)


def _wait_until_up(files: ServerFiles, url: str, pid: int, username: str, token: str, *,
                   timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        exited = proc.poll() is not None if proc is not None else not _alive(pid)
        if exited:
            raise ServerError(f"Label Studio exited during start; the end of {files.log_file}: "
                              f"{_log_tail(files, token)}")
        if time.monotonic() > deadline:
            raise ServerError(f"Label Studio did not answer {url}/health within {timeout:.0f} s; "
                              f"see {files.log_file} (last lines: {_log_tail(files, token)})")
        time.sleep(HEALTH_POLL_S)
    # Health alone could come from another program on the port; the token proves it is ours.
    import httpx  # here: `labelloop status` reads this module's files, it needs no HTTP

    try:
        r = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"},
                      timeout=30.0)
    except httpx.HTTPError as err:
        raise ServerError(f"Label Studio at {url} stopped answering after start "
                          f"({type(err).__name__}); see {files.log_file}") from None
    if r.status_code != 200 or _json_field(r, "email") != username:
        raise ServerError(f"the server at {url} does not accept the token in {files.token_file} "
                          f"(HTTP {r.status_code}); its data dir {files.studio_data} was created "
                          f"with another token or user: restore the token file, or delete "
                          f"{files.data_dir} to start afresh")


def _json_field(response: httpx.Response, name: str):
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get(name) if isinstance(body, dict) else None


def _healthy(url: str) -> bool:
    import httpx

    try:
        r = httpx.get(f"{url}/health", timeout=2.0)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def _running_record(files: ServerFiles) -> dict | None:
    """The PID file's record if that PID is a live label-studio; a stale file is removed."""
    record = _read_record(files)
    if record is None:
        return None
    pid = int(record["pid"])
    if _alive(pid) and _is_label_studio(pid):
        return record
    files.pid_file.unlink(missing_ok=True)
    return None


def _read_record(files: ServerFiles) -> dict | None:
    try:
        text = files.pid_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        int(record["pid"])
    except (ValueError, KeyError, TypeError):
        raise ServerError(f"{files.pid_file} is not a labelloop PID file; if no server runs, "
                          f"delete it") from None
    return record


def _alive(pid: int) -> bool:
    try:
        # Reap it first if it is our own child that exited (a zombie still accepts signal 0).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_label_studio(pid: int) -> bool:
    """Whether ``pid`` runs ``label-studio start`` (guards against a reused PID)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
    else:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, check=False)
        args = out.stdout.split()
    return any(Path(a).name == EXECUTABLE_NAME for a in args) and "start" in args


def _terminate(pid: int, *, timeout: float) -> None:
    """SIGTERM ``pid``; if it is still there after ``timeout`` s, SIGKILL its process group."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        # The server was started as the leader of its own session: its group id is its PID.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if not _alive(pid):
            return
        time.sleep(0.1)
    raise ServerError(f"Label Studio (PID {pid}) did not stop, even after SIGKILL")


def _ensure_secret(path: Path, make) -> str:
    if path.exists():
        return _read_secret(path)
    value = make()
    write_private(path, value)
    return value


def _read_secret(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ServerError(f"{path} is missing; restore it, or stop the server and delete "
                          f"{path.parent} to start afresh") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, no permission, not text
        why = getattr(err, "strerror", None) or "not UTF-8 text"
        raise ServerError(f"{path} cannot be read ({why}); restore it, or stop the server and "
                          f"delete {path.parent} to start afresh") from None
    if not value:
        raise ServerError(f"{path} is empty; restore it, or delete {path.parent} to start afresh")
    return value


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None


def _log_tail(files: ServerFiles, token: str, lines: int = 5) -> str:
    try:
        text = files.log_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    password = files.password_file.read_text().strip() if files.password_file.exists() else ""
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
    return scrub(tail, token, password) or "(empty log)"
