"""The promotion log: every change of champion, appended and fsynced before the alias moves.

``<state_dir>/registry-history.jsonl`` holds one JSON object per line. The log is the intent and
the MLflow alias the applied state, so a move logged but not applied (a crash between the two)
can be finished later; the log is also the stack that ``rollback`` pops.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.files import fsync_dir
from pipeline.registry.mlflow_store import RegistryError


@dataclass(frozen=True)
class PromotionEvent:
    """A change of champion, with its reason. ``action`` is ``promote`` or ``rollback``."""

    time: datetime
    action: str
    from_version: str | None
    to_version: str
    reason: str

    def __str__(self) -> str:
        moved = (f"v{self.from_version} -> v{self.to_version}" if self.from_version
                 else f"v{self.to_version}")  # the first model replaced none
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.action} {moved}: {self.reason}"


def append_event(path: Path, model: str, event: PromotionEvent) -> None:
    """Append one event and fsync, so a logged move survives a crash."""
    record = {"model": model, "time": event.time.isoformat(), "action": event.action,
              "from_version": event.from_version, "to_version": event.to_version,
              "reason": event.reason}
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a+b") as f:
        f.seek(0)
        data = f.read()
        if data and not data.endswith(b"\n"):
            # A torn last line from a crash mid-append: drop it (that move never happened).
            f.truncate(data.rfind(b"\n") + 1)
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def read_events(path: Path) -> list[tuple[str, PromotionEvent]]:
    """Every (model name, event) in the log, oldest first; a torn last line is ignored."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    # The last element is "" after a complete line, or a torn line (ignored, see append_event).
    out = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out.append((r["model"], PromotionEvent(
                datetime.fromisoformat(r["time"]), r["action"], r["from_version"],
                r["to_version"], r["reason"])))
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryError(f"{path}, line {number}: not a promotion record ({err}); "
                                "fix or delete that line") from err
    return out


def champion_stack(events: list[PromotionEvent]) -> list[str]:
    """The champions in force, oldest first: a promotion pushes, a rollback pops."""
    stack: list[str] = []
    for event in events:
        if event.action == "rollback" and stack:
            stack.pop()
            if not stack or stack[-1] != event.to_version:
                stack.append(event.to_version)
        else:
            stack.append(event.to_version)
    return stack
