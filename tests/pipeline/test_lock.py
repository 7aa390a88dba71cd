"""The workspace lock, held by real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.project.lock import LockHeld, WorkspaceLock, read_holder

ROOT = Path(__file__).resolve().parents[2]


def hold_in_subprocess(lock_path: Path, *, seconds: float = 60) -> subprocess.Popen:
    """A process that takes the lock, says so on stdout, then sleeps."""
    code = textwrap.dedent(f"""
        import sys, time
        from pipeline.project.lock import WorkspaceLock
        with WorkspaceLock({str(lock_path)!r}, command="labelloop run"):
            print("locked", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    lock_path = tmp_path / "lock"
    holder = hold_in_subprocess(lock_path)
    try:
        with pytest.raises(LockHeld) as err:
            with WorkspaceLock(lock_path, command="labelloop round"):
                pytest.fail("took a lock another process holds")
        message = str(err.value)
        assert f"pid {holder.pid} `labelloop run` since " in message
        assert message.startswith("another labelloop process holds the workspace")
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_free_again_after_the_holder_is_sigkilled(tmp_path):
    lock_path = tmp_path / "lock"
    holder = hold_in_subprocess(lock_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert read_holder(lock_path).pid == holder.pid  # its record stays, but not the lock
    with WorkspaceLock(lock_path, command="labelloop round") as lock:
        assert lock.holder().pid == os.getpid()
        assert lock.holder().command == "labelloop round"
    assert read_holder(lock_path) is None


def test_waiting_gets_the_lock_when_the_holder_finishes(tmp_path):
    lock_path = tmp_path / "lock"
    holder = hold_in_subprocess(lock_path, seconds=0.5)
    try:
        start = time.monotonic()
        with WorkspaceLock(lock_path, command="labelloop round", wait_s=20):
            assert time.monotonic() - start < 20
    finally:
        holder.wait()


def test_waiting_gives_up_after_wait_s(tmp_path):
    lock_path = tmp_path / "lock"
    holder = hold_in_subprocess(lock_path)
    try:
        start = time.monotonic()
        with pytest.raises(LockHeld, match=r"waited 0.5 s"):
            WorkspaceLock(lock_path, command="labelloop round", wait_s=0.5).acquire()
        assert 0.5 <= time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()


def test_two_locks_in_one_process_exclude_each_other_and_release(tmp_path):
    lock_path = tmp_path / "lock"
    with WorkspaceLock(lock_path, command="labelloop run"):
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            WorkspaceLock(lock_path, command="labelloop round").acquire()
    with WorkspaceLock(lock_path, command="labelloop round"):
        pass


def test_a_missing_workspace_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="labelloop init"):
        WorkspaceLock(tmp_path / "nope" / "lock", command="labelloop round").acquire()
