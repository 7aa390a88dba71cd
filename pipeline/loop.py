"""The scheduled loop: rounds every so often, stopped gracefully by SIGINT or SIGTERM.

A round only retrains when new labels arrived (the train step decides); the loop holds the
workspace lock for its whole life, so a second loop or a manual round refuses to start.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_interval(text: str) -> float:
    """'90s', '10m', '2h' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"bad interval {text!r}; use e.g. 30s, 10m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class StopFlag:
    """Set by SIGINT/SIGTERM; checked between steps and while waiting for the next round."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

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
    progress: bool = False,
) -> int:
    """Run rounds until ``max_rounds`` or a stop; returns the number of rounds completed."""
    # Imported here: the round steps load torch and the Label Studio SDK, which the commands
    # that only parse an interval (``tune --every``, config checks) should not wait for.
    from pipeline.round import RoundStopped, run_round

    done = 0
    while max_rounds is None or done < max_rounds:
        try:
            record = run_round(project, progress=progress, should_stop=stop)
        except RoundStopped:
            break
        done += 1
        if after_round is not None:
            after_round(record)
        if max_rounds is not None and done >= max_rounds:
            break
        if stop.wait(every_s):
            break
    return done
