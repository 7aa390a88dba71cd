"""One round of the labeling loop, step by step, resumable after a crash.

Before the steps, the image folder's new files are ingested (``pipeline.round.ingest``).
Steps: sync human labels from Label Studio, train a challenger, evaluate and promote, predict
the pool, auto-accept, select the next batch for people, push it to Label Studio, monitor
(measure the loop and log it; ``pipeline.round.monitor``), then tune, which does nothing unless
``[tuning]`` asks for re-tuning every K rounds or on drift (``pipeline.round.tune``).

Each step's outcome is saved in the round's record in the label store before the next step
starts; a round interrupted anywhere (SIGKILL included) stays "running", and the next
``run_round`` resumes it at the first step not recorded as done. Every step is also idempotent
on its own (training is keyed by the label snapshot, registration by the snapshot, selection
records each item once, pushing checks what Label Studio already holds), so a crash inside a
step repeats no work that finished and duplicates nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.project.project import Project
from pipeline.round import accept, monitor, predict, promote, push, select, sync, train, tune
from pipeline.round.detection import accept as det_accept
from pipeline.round.detection import monitor as det_monitor
from pipeline.round.detection import predict as det_predict
from pipeline.round.detection import select as det_select
from pipeline.round.detection import train as det_train
from pipeline.round.ingest import ingest_new

# The step tables, in the order a round runs them: name -> the step, given the project, the
# round's id, the records of the steps before it and whether to show progress. Each step
# module takes a Project and returns its record; none imports the command line.
_TABLE: dict[str, Callable[[Project, int, dict, bool], dict]] = {
    "sync": lambda p, r, stats, progress: sync.sync(p, r),
    "train": lambda p, r, stats, progress: train.train_challenger(p, r, progress=progress),
    "promote": lambda p, r, stats, progress: promote.decide_promotion(
        p, stats["train"].get("version")),
    "predict": lambda p, r, stats, progress: predict.predict_pool(p, r, progress=progress),
    "accept": lambda p, r, stats, progress: accept.auto_accept(p, r, stats["predict"]),
    "select": lambda p, r, stats, progress: select.select_batch(p, r, stats["predict"],
                                                                progress=progress),
    "push": lambda p, r, stats, progress: push.push(p, r, stats["predict"]),
    "monitor": lambda p, r, stats, progress: monitor.monitor_round(p, r, stats),
    "tune": lambda p, r, stats, progress: tune.retune_step(p, r, stats),
}
# Detection: the same sync and push, through the task type; its own model, accept and select.
# Re-tuning works on classifiers and is not run for boxes yet.
_DETECTION: dict[str, Callable[[Project, int, dict, bool], dict]] = {
    "sync": _TABLE["sync"],
    "train": lambda p, r, stats, progress: det_train.train_challenger(p, r, progress=progress),
    "promote": lambda p, r, stats, progress: det_train.decide_promotion(
        p, stats["train"].get("version")),
    "predict": lambda p, r, stats, progress: det_predict.predict_pool(p, r, progress=progress),
    "accept": lambda p, r, stats, progress: det_accept.auto_accept(p, r, stats["predict"]),
    "select": lambda p, r, stats, progress: det_select.select_batch(p, r, stats["predict"],
                                                                    progress=progress),
    "push": lambda p, r, stats, progress: push.push(p, r, stats["predict"],
                                                    load=det_predict.pre_annotations),
    "monitor": lambda p, r, stats, progress: det_monitor.monitor_round(p, r, stats),
}
_TABLES = {"classification": _TABLE, "detection": _DETECTION}
STEPS = tuple(_TABLE)


class RoundStopped(Exception):
    """The round stopped between steps on request (SIGINT/SIGTERM); it resumes next time."""


def run_round(
    project: Project,
    *,
    progress: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[str, dict], None] | None = None,
) -> dict:
    """Run (or resume) one round; returns its record: ``{"id", "stats"}``."""
    # Fail before changing anything if the registry cannot be reached.
    project.registry.check()
    # Label Studio's project is looked up again each round (``session``): the scheduled loop
    # and `serve` keep one Project for many rounds, and a project renamed or deleted between
    # them must be found as it is at a round's start (``follow_tasks``).
    project.studio = None
    project.store.forget_memo()  # another process may have ingested since the last round
    fresh = ingest_new(project, progress=progress)
    store = project.store
    running = store.running_round()
    if running is None and should_stop():  # asked during the ingest: no empty round is left
        raise RoundStopped("stopped before a round started: nothing to resume")
    if running is None:
        round_id, stats = store.start_round(), {"done": []}
    else:
        round_id, stats = running["id"], running["stats"] or {"done": []}
        stats.setdefault("done", [])
        stats["resumed"] = stats.get("resumed", 0) + 1
    stats["ingest"] = _add_counts(stats.get("ingest", {}), fresh)
    if on_step is not None:
        on_step("ingest", fresh)
    table = _TABLES[project.task.labels.name]
    for step in table:
        if step in stats["done"]:
            continue
        if should_stop():
            store.save_round(round_id, stats)
            raise RoundStopped(f"round {round_id} stopped before step {step!r}; "
                               f"the next round resumes it")
        stats[step] = table[step](project, round_id, stats, progress)
        stats["done"].append(step)
        store.save_round(round_id, stats)
        if on_step is not None:
            on_step(step, stats[step])
    store.finish_round(round_id, stats)
    return {"id": round_id, "stats": stats}


def _add_counts(before: dict, now: dict) -> dict:
    """The ingest record of a resumed round: counts of every try added, the latest text. A
    count or the moved-file example only an earlier try found stays (status warns from it)."""
    out = {k: v for k, v in before.items()
           if isinstance(v, int) or k in ("not_moved_example", "replaced_example")}
    for k, v in now.items():
        out[k] = out.get(k, 0) + v if isinstance(v, int) and isinstance(out.get(k, 0), int) else v
    return out
