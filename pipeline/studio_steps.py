"""Round steps that talk to Label Studio: sync human labels in, push work out."""

from __future__ import annotations

from pipeline.project import Project


def sync(project: Project) -> dict:
    raise NotImplementedError


def push(project: Project, round_id: int, predicted: dict) -> dict:
    raise NotImplementedError
