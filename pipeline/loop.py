"""The scheduled loop: rounds every so often, stopped gracefully by SIGINT or SIGTERM.

A round only retrains when new labels arrived (the train step decides); the loop holds the
workspace lock for its whole life, so a second loop or a manual round refuses to start.

An unattended loop outlives short outages: a round that fails because Label Studio or the model
registry did not answer (or answered an error) is reported and tried again after the interval,
resuming where it stopped; after ``max_failures`` failures in a row the loop stops with the last
error. Failures that waiting cannot fix (a refused API key, a URL that is not Label Studio, a
project whose classes disagree, a prediction outside the class list) stop it at once.

Between rounds the loop syncs at once when ``labelloop serve`` has noted that answers wait in
Label Studio (its annotation webhooks; ``pipeline.project.answers_waiting``), so a label reaches
the store seconds after it is submitted, not at the next round.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from labeling.store import StoreUnavailable
from labeling.studio.errors import (
    EmbeddedServerStopped,
    InvalidPrediction,
    NotLabelStudio,
    ProjectMismatch,
    StudioAuthError,
    StudioError,
)
from pipeline.compute.errors import ComputeError
from pipeline.files import write_text_atomic
from pipeline.project.answers_waiting import mark_answers_waiting, take_answers_waiting
from pipeline.registry.mlflow_store import RegistryError
from training.images import ImageError

# Failures a later try can get past (the server, the stores or the Ray cluster comes back; an
# image overwritten or half-written while the round read it: the retry's ingest finds it
# changed, and rounds leave it out until it is readable) ...
RETRIED = (StudioError, RegistryError, ComputeError, StoreUnavailable, ImageError)
# ... except these, which need a person to change something first.
# A stopped embedded server is one: nothing restarts it while the loop waits.
PERMANENT = (StudioAuthError, NotLabelStudio, ProjectMismatch, InvalidPrediction,
             EmbeddedServerStopped)


class StopFlag:
    """Set by SIGINT/SIGTERM; checked between steps and while waiting for the next round."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None
        # Where the round stopped (the round's own message), once it has.
        self.where: str | None = None

    def install(self) -> None:
        self._pid = os.getpid()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if os.getpid() != getattr(self, "_pid", os.getpid()):
            # A forked worker (a DataLoader's) inherits the handler: one Ctrl-C printed the
            # message once per worker. The process that installed it stops the round.
            return
        if self._event.is_set():
            # Asked twice: stop inside the step (a step of training can take minutes).
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self._event.set()
        sys.stderr.write(f"{self.signal_name}: stopping after the current step (again to stop "
                         "at once; the round resumes where it stopped)\n")
        sys.stderr.flush()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was asked for meanwhile."""
        return self._event.wait(seconds)


def run_loop(
    project,
    *,
    every_s: float,
    max_rounds: int | None,
    stop: StopFlag,
    after_round: Callable[[dict], None] | None = None,
    on_failure: Callable[[Exception, int], None] | None = None,
    on_empty: Callable[[Exception], None] | None = None,
    on_give_up: Callable[[Exception], None] | None = None,
    max_failures: int = 3,
    progress: bool = False,
) -> int:
    """Run rounds until ``max_rounds`` or a stop; returns the number of rounds completed.

    ``on_failure(error, failures_in_a_row)`` is called for each retried failure (see the module
    docstring); the failure that ends the loop is raised instead, after ``on_give_up(error)``
    (an unattended log must say the loop is gone, not only that a retry comes). While the pool
    is empty (no image in the folder yet) no round runs: ``on_empty(error)`` says so, and the
    loop waits for images through the intervals; that is neither a round done nor a failure.
    """
    if max_failures < 1:
        raise ValueError(f"max_failures must be >= 1, got {max_failures}")
    try:
        return _rounds(project, every_s, max_rounds, stop, after_round, on_failure, on_empty,
                       max_failures, progress)
    except Exception as err:
        if on_give_up is not None:
            on_give_up(err)
        raise
    finally:
        # The note says a round waits for this loop's retry: with the loop gone, none does.
        note_failure(project, None, 0, every_s)


def _rounds(project, every_s, max_rounds, stop, after_round, on_failure, on_empty,
            max_failures, progress) -> int:
    # Imported here: the round steps load torch and the Label Studio SDK, which the commands
    # that only parse an interval (``tune --every``, config checks) should not wait for.
    from pipeline.round.ingest import EmptyPool
    from pipeline.round.steps import RoundStopped, run_round

    done = failures = 0
    while max_rounds is None or done < max_rounds:
        try:
            record = run_round(project, progress=progress, should_stop=stop)
        except RoundStopped as err:
            stop.where = str(err)
            break
        except EmptyPool as err:
            if on_empty is not None:
                on_empty(err)
            if _between_rounds(project, stop, every_s):
                break
            continue
        except RETRIED as err:
            failures += 1
            if isinstance(err, PERMANENT) or failures >= max_failures:
                raise
            note_failure(project, err, failures, every_s)
            if on_failure is not None:
                on_failure(err, failures)
            if _between_rounds(project, stop, every_s):
                break
            continue
        failures = 0
        note_failure(project, None, 0, every_s)
        done += 1
        if after_round is not None:
            after_round(record)
        if max_rounds is not None and done >= max_rounds:
            break
        if _between_rounds(project, stop, every_s):
            break
    return done


# Where the scheduled loop notes a round that failed and waits to be tried again: while it
# waits the loop holds the lock, and `labelloop status` would read the round as running.
FAILURE_FILE = "loop-failure.json"


def note_failure(project, err: Exception | None, failures: int, every_s: float) -> None:
    """Record (``err``) or clear (None) the failure of the round the loop will try again."""
    path = project.config.workspace_dir / FAILURE_FILE
    # Best effort: the failure may be the store's, or the disk's, and the retry must not wait
    # on this note (status then reads the round as running, as it did before notes).
    try:
        if err is None:
            path.unlink(missing_ok=True)
            return
        rounds = project.store.rounds()
        now = time.time()
        write_text_atomic(path, json.dumps({
            "round": rounds[-1]["id"] if rounds else None, "error": str(err), "pid": os.getpid(),
            "failures_in_a_row": failures, "failed_at": now, "retry_at": now + every_s}))
    except (StoreUnavailable, OSError):
        pass


def read_failure(workspace) -> dict | None:
    """The failure ``note_failure`` recorded, if any (None: none, or unreadable)."""
    try:
        record = json.loads((workspace / FAILURE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# How often the loop looks for answers announced by webhooks while it waits.
ANSWERS_POLL_S = 1.0


def _between_rounds(project, stop: StopFlag, seconds: float) -> bool:
    """Wait ``seconds`` for the next round, syncing at once whenever answers are announced;
    True if a stop came. A sync that fails here is left to the next round's own sync."""
    from pipeline.round.sync import sync

    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.wait(min(left, ANSWERS_POLL_S)):
            return True
        if take_answers_waiting(project.config.workspace_dir):
            try:
                sync(project)
            except PERMANENT:
                raise
            except RETRIED:
                mark_answers_waiting(project.config.workspace_dir)  # still waiting
                return stop.wait(max(0.0, deadline - time.monotonic()))
    return False
