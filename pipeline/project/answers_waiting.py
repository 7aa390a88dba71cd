"""A marker that answers wait in Label Studio: set by ``labelloop serve`` when an annotation
webhook arrives, taken by the next sync (a round's, or the scheduled loop's between rounds).

The marker only hastens a sync; it is never the record of what changed. Label Studio sends each
webhook once, with a 1 s timeout, and never retries, so the poller (every sync reads every
changed task) stays the source of truth and a lost webhook only delays a label.
"""

from __future__ import annotations

from pathlib import Path

MARKER = "answers-waiting"


def mark_answers_waiting(workspace: Path) -> None:
    """Note that Label Studio has answers the store has not read yet."""
    (workspace / MARKER).touch()


def take_answers_waiting(workspace: Path) -> bool:
    """Whether answers were noted since the last take; clears the note. Taken *before* the sync
    reads: an answer arriving during the sync marks it again, so none waits for the interval."""
    try:
        (workspace / MARKER).unlink()
    except FileNotFoundError:
        return False
    return True
