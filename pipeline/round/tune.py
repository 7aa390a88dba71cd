"""The tune step, the round's optional last one: re-tune the training parameters every K rounds
or when the monitor step found drift (``[tuning]``); otherwise nothing."""

from __future__ import annotations

from pipeline.project.project import Project
from pipeline.tuning import TuningError, tune_project


def retune_step(project: Project, round_id: int, stats: dict) -> dict:
    """The round's optional last step: tune when ``[tuning] every_rounds`` divides the round
    number or ``on_drift`` is set and the monitor step found drift; otherwise nothing."""
    settings = project.config.tuning
    if not settings.every_rounds and not settings.on_drift:
        return {"tuned": False, "reason": "off ([tuning] every_rounds = 0, on_drift = false)"}
    why = []
    if settings.every_rounds and round_id % settings.every_rounds == 0:
        why.append(f"every {settings.every_rounds} rounds")
    drift = ((stats.get("monitor") or {}).get("drift")) or {}
    if settings.on_drift and drift.get("drift"):
        why.append("drift detected")
    if not why:
        return {"tuned": False, "reason": "not due this round"}
    try:
        result = tune_project(project)
    except TuningError as err:  # too few labels yet, or a probe-only project: recorded, the
        # round goes on
        return {"tuned": False, "why": ", ".join(why), "reason": str(err)}
    return {"tuned": True, "why": ", ".join(why), **result}
