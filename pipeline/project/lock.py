"""The workspace lock: one labelloop process at a time changes a workspace.

A loop, a manual round and ``models promote`` each hold ``<workspace>/lock`` while they run.
The lock is ``fcntl.flock`` on that file, so the OS releases it when the holder exits, however
it exits (SIGKILL included): there is never a stale lock to delete by hand. The file's text
(pid, host, command, start time, as JSON) only tells a second process who holds the lock; it
proves nothing, the flock does.

Limits of flock: it is advisory (only labelloop processes honour it), it may not work across
machines on network filesystems (keep workspaces on local disks), and a child made with a bare
``os.fork`` shares the lock with its parent (``subprocess`` children do not: the file is opened
close-on-exec).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# How often a waiting acquirer retries: flock has no timeout of its own.
_POLL_S = 0.1


class LockHeld(RuntimeError):
    """Another process holds the workspace lock; the message says who and since when."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a workspace lock, as written in the lock file."""

    pid: int
    host: str
    command: str
    started_at: str

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on host {self.host}"
        return f"pid {self.pid}{where} `{self.command}` since {self.started_at}"


class WorkspaceLock:
    """Hold the lock file ``path`` (``<workspace>/lock``) for a ``with`` block.

    ``command`` is shown to a process that finds the lock taken. With ``wait_s`` > 0 a taken
    lock is retried for that many seconds before ``LockHeld`` is raised.
    """

    def __init__(self, path: str | Path, *, command: str, wait_s: float = 0.0):
        self.path = Path(path)
        self.command = command
        self.wait_s = wait_s
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``LockHeld``; a lock held by this object is an error."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this WorkspaceLock")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"workspace folder does not exist: {self.path.parent}; "
                                    "create the project with `labelloop init`")
        # No O_TRUNC: the holder's record must survive until this process owns the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + max(0.0, self.wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockHeld(self._held_message()) from None
                time.sleep(_POLL_S)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (also done by the OS if this process dies)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # nobody holds it now
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def holder(self) -> LockHolder | None:
        """The process named in the lock file, or None if it names none."""
        return read_holder(self.path)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _held_message(self) -> str:
        # The holder writes its record right after taking the lock; give it a moment.
        holder = read_holder(self.path)
        for _ in range(5):
            if holder is not None:
                break
            time.sleep(_POLL_S)
            holder = read_holder(self.path)
        who = holder.describe() if holder else "(it has not recorded its pid yet)"
        waited = f" (waited {self.wait_s:g} s)" if self.wait_s > 0 else ""
        return (f"another labelloop process holds the workspace: {who}{waited}; wait for it "
                f"to finish, or stop it, then retry. Lock file: {self.path}")


def held_by_nobody(path: str | Path) -> bool:
    """Whether no labelloop command holds the lock, as its record tells without taking it
    (taking it, even for a moment, could refuse a round starting then): no record (a holder
    clears it on release), or the process it names has ended (SIGKILL leaves the record).
    False when not known: a holder on another host, or a process not ours to signal."""
    return _recorded(path)[1] is False


def held_here(path: str | Path) -> LockHolder | None:
    """The holder, when its record names a live process on this host (the lock is then
    surely taken); None when free or not known (another host, an unreadable record): only
    taking the lock tells those apart."""
    holder, alive = _recorded(path)
    return holder if alive else None


def _recorded(path: str | Path) -> tuple[LockHolder | None, bool | None]:
    """(the recorded holder, whether its process lives): (None, False) without a record;
    alive None when not known (an unreadable record, another host)."""
    try:
        holder = read_holder(path)
    except OSError:  # e.g. another user's 0600 lock file
        return None, None
    if holder is None:
        return None, False
    if holder.host != socket.gethostname():
        return holder, None
    try:
        os.kill(holder.pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return holder, False
    except PermissionError:
        pass  # alive, another user's
    return holder, True


def read_holder(path: str | Path) -> LockHolder | None:
    """The holder recorded in a lock file; None if the file is missing, empty or unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    try:
        r = json.loads(text)
        return LockHolder(int(r["pid"]), str(r["host"]), str(r["command"]), str(r["started_at"]))
    except (ValueError, KeyError, TypeError):
        return None
