"""The Train button's rounds (pipeline/backend/rounds.py): one child round at a time, none
started while another command holds the workspace."""

from __future__ import annotations

import sys
import time

import pipeline.backend.rounds as rounds
from pipeline.project.lock import WorkspaceLock


def test_no_round_is_started_while_another_command_holds_the_workspace(tmp_path, monkeypatch):
    # It started a `labelloop round` child every two seconds, each refused by the lock after
    # importing torch: 8 children and 50 CPU-seconds during one `labelloop tune`.
    monkeypatch.setattr(rounds, "RETRY_S", 0.05)
    runs = tmp_path / "runs.txt"
    runner = rounds.RoundRunner(tmp_path / "labelloop.toml", tmp_path / "lock",
                                tmp_path / "rounds.log")
    runner._command = [sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')"]
    with WorkspaceLock(tmp_path / "lock", command="labelloop tune"):
        assert runner.request() == "started"
        time.sleep(1.0)
        assert not runs.exists()
    deadline = time.monotonic() + 30
    while not runs.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner._worker.join(timeout=30)
    assert runs.read_text() == "x"  # once the lock was free, one round


def test_a_record_left_by_a_killed_holder_or_another_host_does_not_hold_the_round_back(
        tmp_path, monkeypatch):
    # Waiting on any record it could not prove free, a press sat an hour behind the record a
    # SIGKILLed round left (or one written in a container with another host name).
    import json
    import socket
    import subprocess

    monkeypatch.setattr(rounds, "RETRY_S", 0.05)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    for host, pid in ((socket.gethostname(), int(dead.stdout)), ("elsewhere", 1)):
        runs = tmp_path / f"runs-{host}.txt"
        (tmp_path / "lock").write_text(json.dumps(
            {"pid": pid, "host": host, "command": "labelloop round", "started_at": "then"}))
        runner = rounds.RoundRunner(tmp_path / "labelloop.toml", tmp_path / "lock",
                                    tmp_path / "rounds.log")
        runner._command = [sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')"]
        runner.request()
        runner._worker.join(timeout=10)
        assert runs.read_text() == "x", host
