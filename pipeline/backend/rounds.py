"""Rounds started from Label Studio's Train button, outside the web request.

Label Studio blocks the person who pressed Train until the backend answers (up to 100 s), so the
backend only queues: a worker thread runs ``labelloop round`` as a child process, which takes the
workspace lock like any round. One round at a time; presses while one runs coalesce into one
more round after it (it picks up every answer that arrived meanwhile). A round that finds the
lock taken by a manual round or a command waits for it (reading the lock's record, without
starting a child) and tries again; one that finds the
scheduled loop (``labelloop run``) holding it stops there, since the loop's next round does the
same work. The children's output goes to ``<workspace>/backend/rounds.log``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipeline.project.lock import held_here, read_holder

LOCK_HELD_EXIT = 3  # pipeline.cli.common.opened: the workspace lock is taken
RETRY_S = 2.0
MAX_WAIT_S = 3600.0

log = logging.getLogger("labelloop.serve")


class RoundRunner:
    """Queues rounds of one project and runs them one at a time."""

    def __init__(self, config_path: Path, lock_path: Path, log_path: Path) -> None:
        self._command = [sys.executable, "-m", "pipeline.cli", "round", "--quiet",
                         "--config", str(config_path)]
        self._lock_path = lock_path
        self._log_path = log_path
        self._mutex = threading.Lock()
        self._pending = False
        self._worker: threading.Thread | None = None

    def request(self) -> str:
        """Ask for a round; returns at once: ``started``, or ``queued`` behind a running one."""
        with self._mutex:
            if self._worker is not None and self._worker.is_alive():
                self._pending = True
                return "queued"
            self._pending = True
            self._worker = threading.Thread(target=self._work, name="labelloop-rounds",
                                            daemon=True)
            self._worker.start()
            return "started"

    def _work(self) -> None:
        while True:
            with self._mutex:
                if not self._pending:
                    return
                self._pending = False
            self._run_one()

    def _run_one(self) -> None:
        deadline = time.monotonic() + MAX_WAIT_S
        while True:
            # Wait here while a holder is on record: a child that finds the lock taken costs
            # seconds of CPU to import torch first, and `labelloop tune` or a round would be
            # slowed by one every two seconds for as long as they hold it.
            # Only a live holder here is waited on: a record left by a killed process, or
            # one of another host, is for the child's own try of the lock to tell apart.
            while (holder := held_here(self._lock_path)) is not None and \
                    time.monotonic() < deadline:
                if holder.command.startswith("labelloop run"):
                    break  # said below, once the child confirms it
                time.sleep(RETRY_S)
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "ab") as out:
                code = subprocess.call(self._command, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            if code != LOCK_HELD_EXIT:
                break
            try:
                holder = read_holder(self._lock_path)
            except OSError:  # another user's record: whose it is stays unknown
                holder = None
            if holder is not None and holder.command.startswith("labelloop run"):
                log.info("the scheduled loop (%s) holds the workspace: its next round picks "
                         "the answers up", holder.describe())
                return
            if time.monotonic() > deadline:
                log.warning("gave up waiting for the workspace lock after %.0f s", MAX_WAIT_S)
                return
            time.sleep(RETRY_S)
        if code == 0:
            log.info("round finished (output in %s)", self._log_path)
        else:
            log.warning("round exited %d; its output is in %s", code, self._log_path)
