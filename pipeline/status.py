"""What a project holds right now: the pool by state, the champion, the last rounds."""

from __future__ import annotations

import os
import time

from labeling.schema import PEOPLE_SOURCES
from labeling.seen_files import replaced_items, unusable_items
from labeling.selections import unanswered_picks, unpicked_tasks_waiting
from labeling.store import LabelStore
from labeling.studio.opinions import human_answers, refused_only
from labeling.studio.sync_store import rejected_annotations
from pipeline.certify import (
    certificate,
    drifts_flagged,
    latest_accept,
    latest_annotator_quality,
)
from pipeline.loop import read_failure
from pipeline.project.config import ConfigError
from pipeline.project.lock import held_by_nobody, held_here
from pipeline.project.project import Project, read_tuned_params
from pipeline.project.studio import annotator_emails
from pipeline.round.labeled import ties_nobody_can_break, unresolved_held_out


def project_status(project: Project, *, studio_project_id: int | None = None,
                   last_rounds: int = 5) -> dict:
    """A plain dict (JSON-ready) of the pool, the champion and the last rounds."""
    store = project.store
    # Read before the rounds: a round that finishes in between reads as done, not stopped.
    lock = project.config.workspace_dir / "lock"
    unheld = held_by_nobody(lock)
    n_items = store.count_items()
    # Counted by the database: status reads no row per item (a million take seconds).
    by_source = store.current_source_counts()
    by_status = {s: store.count_items(status=s) for s in ("skipped", "disagreement")}
    human = sum(by_source.get(s, 0) for s in PEOPLE_SOURCES)
    machine = by_source.get("machine", 0)
    # Waiting for people: in Label Studio, or sendable (not an item whose file is gone or
    # broken and that has no task yet: the push holds those back). The unusable items are the
    # warnings' query, kept in the store's memo.
    unusable = unusable_items(store)
    refused = refused_only(store)
    # Picks not sent yet (a round stopped before its push, a task deleted in Label Studio)
    # apart: counted as waiting in Label Studio, where nobody could see them.
    unanswered = [tasked for key, _, tasked in unanswered_picks(store)
                  if key not in refused and (tasked or key not in unusable)]
    pending = sum(unanswered) + unpicked_tasks_waiting(store)
    to_send = len(unanswered) - sum(unanswered)
    rejected = rejected_annotations(store)
    near = store.near_duplicate_groups()
    champion = _champion(project)
    all_rounds = store.rounds()
    warnings = latest_warnings(all_rounds)
    if rejected:
        warnings.append(f"{len(rejected)} answer(s) in Label Studio do not count; the newest: "
                        f"task {rejected[0][0]}: {rejected[0][1]}")
    if refused:
        tasks = ", ".join(str(task) for task, _ in list(refused.values())[:10])
        warnings.append(f"{len(refused)} item(s) have only answers that do not count, and Label "
                        f"Studio offers their tasks to nobody again: fix the answer in Label "
                        f"Studio (task {tasks}{', ...' if len(refused) > 10 else ''})")
    warnings += held_back_warnings(all_rounds) + replaced_warning(store)
    warnings += dropped_classes_warning(store, project) + other_models_warning(store, champion)
    stuck = ties_nobody_can_break(store, annotator_emails(project.config))
    if stuck:
        warnings.append(f"{stuck} held-out item(s) tied or skipped, and every annotator "
                        f"account has answered or skipped them: each counts against the model "
                        f"until someone else answers it in Label Studio (you, or an account added "
                        f"with `labelloop studio add-annotator`)")
    skipped = set(unresolved_held_out(store)) & set(store.item_keys(status="skipped"))
    if skipped and not stuck:
        warnings.append(f"{len(skipped)} held-out item(s) skipped by everyone who opened them: "
                        f"each counts against the model until someone answers it in Label "
                        f"Studio (people skip hard images; left out, they flattered the bound)")
    rounds = all_rounds[-last_rounds:]
    # Free before and after the rounds were read: a round starting in between is not stopped.
    stopped = (all_rounds and all_rounds[-1]["status"] == "running" and unheld
               and held_by_nobody(lock))
    failed = read_failure(project.config.workspace_dir)
    holder = held_here(lock)
    # The loop that wrote the note holds the lock still, not a manual round run since (where
    # the holder or the note's process is not known, as before: the note tells).
    waiting = bool(failed and not unheld
                   and (holder is None or failed.get("pid") in (None, holder.pid))
                   and all_rounds and all_rounds[-1]["status"] == "running"
                   and failed.get("round") == all_rounds[-1]["id"]
                   and float(failed.get("retry_at", 0)) > time.time())
    if waiting:
        # The scheduled loop holds the lock and waits to try the round again: not running.
        when = time.strftime("%H:%M:%S", time.localtime(float(failed["retry_at"])))
        warnings.append(f"round {failed['round']} failed ({failed.get('failures_in_a_row')} "
                        f"in a row) and `labelloop run` tries it again at {when}: "
                        f"{failed.get('error')}")
    if stopped:  # (a round run from Python without the lock reads as stopped too)
        done = len(all_rounds[-1]["stats"].get("done", []))
        warnings.append(f"round {all_rounds[-1]['id']} stopped after {done} step(s) (no "
                        f"labelloop command holds the workspace); `labelloop round` resumes it")
    out = {
        "project": project.config.project.name,
        "pool": {
            "items": n_items,
            "unlabeled": n_items - sum(by_source.values()),
            "human": human,
            "machine": machine,
            "pending_in_label_studio": pending,
            "picked_not_sent_yet": to_send,
            "skipped": by_status["skipped"],
            "disagreement": by_status["disagreement"],
            "quarantined": len(store.quarantined()),
            "rejected_answers": len(rejected),
            # Items nearly identical to another (kept on one side of the evaluation split).
            "near_duplicates": len(near),
            "near_duplicate_groups": len(set(near.values())),
        },
        "champion": champion,
        "rounds": [
            {"id": r["id"], "status": "stopped" if stopped and r is all_rounds[-1]
             else "failed, waiting to retry" if waiting and r is all_rounds[-1]
             else r["status"],
             "started_at": r["started_at"].isoformat() if r["started_at"] else None,
             "summary": round_summary(r["stats"])}
            for r in rounds
        ],
        "annotators": latest_annotator_quality(all_rounds),
        "human_answers": human_answers(store),
        "training_params": _tuned(project),
        "held_out": held_out_parts(latest_accept(all_rounds)),
        "certificate": certificate(store, latest_accept(all_rounds),
                                   reference_error=project.config.loop.people_error,
                                   confidence=project.config.loop.confidence_level,
                                   boxes=project.config.project.task == "detection",
                                   drifts=drifts_flagged(all_rounds)),
        "warnings": warnings,
    }
    if out["certificate"].get("people_disagreed"):
        # The accept step still tests machine labels against people's labels assumed right.
        warnings.append("people's answers differ, yet [loop] reference_error = 0 assumes they "
                        "are right: machine labels are accepted on that assumption; set it to "
                        '"measured" (see the certificate)')
    return out


def _tuned(project: Project) -> dict:
    """Where the next round's training parameters come from: [training], or the trial
    ``labelloop tune`` adopted over it (its values, score and time)."""
    try:
        record = read_tuned_params(project.tuned_params_path)
    except ConfigError as err:
        return {"from": "unreadable", "error": str(err)}
    if record is None:
        return {"from": "[training]"}
    return {"from": "tune", "trial": record.get("trial"), "score": record.get("score"),
            "time": record.get("time"), "params": record.get("params")}


def held_out_parts(accept: dict | None) -> dict | None:
    """How the last accept step used the held-out answers: how many tested the thresholds, how
    many chose models (``[loop] selection_share``), how many wait for second opinions. None
    before any accept step (or one recorded before 2026-12-06)."""
    if not accept or "held_out_choosing" not in accept:
        return None
    return {"test_thresholds": accept.get("validation"),
            "choose_models": accept["held_out_choosing"],
            "waiting": accept.get("validation_waiting"),
            "selection_share": accept.get("selection_share")}


def _champion(project: Project) -> dict | None:
    """The champion's version and metrics from the registry's pointer file (no MLflow: that
    takes seconds to open); from MLflow only when no pointer was written yet."""
    cached = project.registry.cached_champion()
    if cached is None:
        info = project.registry.champion()
        cached = {"version": None if info is None else info.version,
                  "metrics": {} if info is None else info.metrics}
    return None if cached["version"] is None else cached


def dropped_classes_warning(store, project) -> list[str]:
    """Labels in force whose class the config no longer names (a class taken out of
    ``[project] classes``): export delivers them as they are, so say so (a review found them
    exported without a word)."""
    if project.config.project.task != "classification":  # a box label's text is no class
        return []
    known = set(project.classes)
    gone = {c: n for c, n in store.current_class_counts().items() if c not in known}
    if not gone:
        return []
    shown = ", ".join(f"{c} ({n:,})" for c, n in sorted(gone.items())[:10])
    return [f"{sum(gone.values()):,} label(s) carry a class [project] classes no longer names: "
            f"{shown}{', ...' if len(gone) > 10 else ''}; a CSV export delivers them as they "
            "are (an imagefolder, COCO or YOLO export refuses them): put the class back, or "
            "relabel those items"]


def other_models_warning(store, champion: dict | None) -> list[str]:
    """Machine labels in force that a model other than the champion made: a rollback or a
    promotion by hand since the last accept step (after a round they are all the champion's).
    Export delivers them until the next round decides them again (a review found them
    exported and certified after a rollback without a word)."""
    if champion is None:
        return []
    others = {v: n for v, n in store.current_machine_versions().items()
              if v != str(champion["version"])}
    if not others:
        return []
    shown = ", ".join(f"v{v} ({n:,})" for v, n in sorted(others.items()))
    return [f"{sum(others.values()):,} machine label(s) in force were made by a model that is "
            f"not the champion (v{champion['version']}): {shown}; export delivers them as they "
            "are until the next round's accept step decides them again with the champion"]


def latest_warnings(rounds: list[dict]) -> list[str]:
    """The warnings (drift, audited precision) of the newest round that was monitored."""
    for r in reversed(rounds):
        monitor = r["stats"].get("monitor")
        if monitor is not None:
            return [f"round {r['id']}: {w}" for w in monitor.get("warnings", [])]
    return []


def held_back_warnings(rounds: list[dict]) -> list[str]:
    """Picked items the newest push could not send (``pipeline.round.push``), and why; files
    moved since their task was made, which ingest could not follow (``pipeline.ingest``)."""
    out = []
    push = next(((r["id"], r["stats"]["push"]) for r in reversed(rounds)
                 if "push" in r["stats"]), None)
    if push is not None and push[1].get("held_back"):
        out.append(f"round {push[0]}: {push[1]['held_back']} picked item(s) not sent to Label "
                   f"Studio, their image cannot be shown; e.g. {push[1]['held_back_why']}")
    moved = [(r["id"], r["stats"]["ingest"]) for r in rounds
             if r["stats"].get("ingest", {}).get("not_moved")]
    # Until the example is moved back (then it is gone from where it was found).
    if moved and os.path.lexists(moved[-1][1]["not_moved_example"]):
        rid, ingest = moved[-1]
        out.append(f"round {rid}: {ingest['not_moved']} file(s) moved or renamed after their "
                   f"task was made, whose task shows the old name (e.g. now at "
                   f"{ingest['not_moved_example']}): move them back")
    return out


def replaced_warning(store: LabelStore) -> list[str]:
    """Items whose file now holds another image (``replaced_items``), or was gone or broken
    at the last ingest (``unusable_items``), while they are."""
    replaced = sorted(replaced_items(store))
    out = []
    if replaced:
        out.append(f"{len(replaced)} item(s) whose image file now holds another image (e.g. "
                   f"{store.item(replaced[0]).path}): rounds and exports leave them out and "
                   f"their labels stay in the store; put their images back under those names "
                   f"to use them")
    return out + _missing_warning(store)


def _missing_warning(store: LabelStore) -> list[str]:
    """Items whose file was gone or broken at the last ingest, while it is."""
    replaced = replaced_items(store)
    missing = {k: why for k, why in unusable_items(store).items() if k not in replaced}
    if not missing:
        return []
    key = min(missing)
    return [f"{len(missing)} item(s) whose image file is gone or cannot be read (e.g. "
            f"{store.item(key).path}: {missing[key]}): rounds leave them out and their labels "
            f"stay in the store; put the files back, then `labelloop ingest`"]


def round_summary(stats: dict) -> dict:
    """The few numbers of a round that people look at."""
    accept = stats.get("accept", {})
    return {
        "ingested": stats.get("ingest", {}).get("added"),
        "steps_done": len(stats.get("done", [])),
        "trained": stats.get("train", {}).get("version"),
        "promoted": stats.get("promote", {}).get("promoted"),
        # The model the round predicted with; a round resumed after a rollback predicts with
        # another champion than its promote step left.
        "champion": stats.get("predict", {}).get("version")
        or stats.get("promote", {}).get("champion"),
        "coverage": accept.get("coverage"),
        "accepted": accept.get("accepted"),
        "picked": stats.get("select", {}).get("picked"),
        "pushed": stats.get("push", {}).get("pushed"),
        "synced": stats.get("sync", {}).get("labels"),
        # A detector that could not learn is news; "no new labels" is not.
        **({"train_failed": stats["train"]["reason"]}
           if stats.get("train", {}).get("stalled") else {}),
        **_monitor_summary(stats.get("monitor")),
    }


def _monitor_summary(monitor: dict | None) -> dict:
    """Champion accuracy and drift, once the round's monitor step ran (``pipeline.round.monitor``):
    ``drift`` is "none", "not computed" or the drifting signals, e.g. "confidence+embeddings"."""
    if monitor is None:
        return {}
    drift = monitor.get("drift") or {}
    if not drift.get("computed"):
        verdict = "not computed"
    else:
        flagged = [name for name, s in drift["signals"].items() if s["drift"]]
        verdict = "+".join(flagged) if flagged else "none"
    evaluation = (monitor.get("champion") or {}).get("eval") or {}
    return {"eval_accuracy": evaluation.get("accuracy"), "drift": verdict}
