"""What an export writes per labeled item, shared by the class and the box formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COLUMNS = ("path", "label", "source", "who", "model_version", "confidence", "round",
           "labeled_at", "item_key")
PROVENANCE_FILE = "provenance.csv"


class ExportError(ValueError):
    """The export cannot be written as asked; the message says why and what to change."""


@dataclass(frozen=True)
class ExportRow:
    """One exported item and where its label came from."""

    path: str
    label: str
    source: str
    who: str | None
    model_version: str | None
    confidence: float | None
    round: int | None
    labeled_at: str
    item_key: str
    value: Any = None  # the typed label where it is more than the text (a detection's boxes)

    def as_csv(self, path: str) -> list:
        values = [path, self.label, self.source, self.who, self.model_version,
                  self.confidence, self.round, self.labeled_at, self.item_key]
        return ["" if v is None else v for v in values]
