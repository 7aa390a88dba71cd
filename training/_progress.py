"""One progress bar for long loops; silent unless asked for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """Advance and relabel a bar; every method is a no-op when the bar is disabled."""

    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        """Replace the text shown before the bar."""
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def progress_bar(enabled: bool, description: str, total: int) -> Iterator[Bar]:
    """A rich progress bar over ``total`` units when ``enabled``; prints nothing otherwise."""
    if not enabled:
        yield Bar(None, None)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        yield Bar(progress, progress.add_task(description, total=total))
