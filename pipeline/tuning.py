"""Tune the project's training parameters on its own labels: ``labelloop tune``, and the loop's
optional re-tuning step (``pipeline.round.tune``, the last step of a round).

- Data: trials train on the training labels and are scored on the held-out items that
  choose (``pipeline.round.labeled.choosing_part``: random held-out human labels that never
  train a model, and never test the accept step's thresholds, which a choice on them would
  flatter). The images are decoded once per call and shared by its trials. Fewer than
  ``MIN_TRAIN_LABELS`` or ``MIN_EVAL_LABELS`` is an error: on a handful of items the scores only
  rank noise.
- Study: ``[tuning] storage`` (default ``sqlite:///<workspace>/optuna.db``), named after the
  project. A second call continues it; a trial left running by a killed process is marked
  failed (``training.tuning``). Each trial is tagged with the labels it saw, and the best is
  picked among trials on the current labels, where the parameters in use are scored too (the
  baseline trial): tuning recommends a change only when something scored better.
- MLflow: every finished trial is a run in the experiment ``<project>-tuning`` (tags ``study``
  and ``trial``); trials a crash left unlogged are logged by the next call.
- Result: the best trial's values become the project's training parameters.
  ``<workspace>/tuned_params.json`` (written atomically) holds them with the study, trial,
  score and time, the parameters they replaced, and the record they replaced;
  ``Project.train_params()`` overlays them on ``[training]``. ``revert_tuning`` puts the replaced
  record back (or removes the file), and a reverted trial is never adopted again. Every change
  is appended to ``<workspace>/tuning-history.jsonl``.

Callers hold the workspace lock: the CLI takes it, a round already holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from pipeline.files import fsync_dir, write_text_atomic
from pipeline.project.config import ConfigError
from pipeline.project.databases import masked
from pipeline.project.project import Project, read_tuned_params
from pipeline.round.labeled import (
    choosing_part,
    class_indices,
    labeled_sets,
    paths_of,
    snapshot_hash,
)
from training.params import TrainParams
from training.tuning import (
    SearchSpace,
    TuningData,
    apply_params,
    best_trial,
    list_samplers,
    open_study,
    run_trials,
    scored_trial,
    trial_values,
)

# Fewest labels a study is run on: below this, accuracy steps of 5% decide between trials.
MIN_TRAIN_LABELS = 20
MIN_EVAL_LABELS = 20
HISTORY_NAME = "tuning-history.jsonl"
_MAX_TAG = 5000  # MLflow's limit on a tag value


class TuningError(ValueError):
    """Tuning cannot run or undo as asked; the message says why and what fixes it."""


def study_storage(project: Project) -> str:
    """Where the project's Optuna study lives (``[tuning] storage``; default
    ``sqlite:///<workspace>/optuna.db``), its password included: show it ``masked``."""
    return project.databases.tuning


def fixed_settings_hash(base: TrainParams, space: SearchSpace) -> str:
    """What a trial trains with besides the searched values (min_steps, patience, the seed,
    the weights, ...): part of the data tag, so that a score counts only where adopting the
    trial would train as it did (a trial of min_steps 50 was adopted after the config said 3,
    and the next model trained 10 steps)."""
    searched = set(space.grid or space.ranges) | {"model"}
    fixed = {k: v for k, v in base.to_dict().items() if k not in searched}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True, default=str).encode()
                          ).hexdigest()[:12]


def tune_project(
    project: Project,
    *,
    sampler: str | None = None,
    trials: int | None = None,
    timeout_s: float | None = None,
    on_trial: Callable[[str], None] | None = None,
) -> dict:
    """Run up to ``trials`` more trials of the project's study (default: ``[tuning]``'s
    sampler, trials and timeout) and adopt the best parameters if they beat those in use.
    ``on_trial`` gets one line per finished trial. Returns a summary of plain values."""
    settings = project.config.tuning
    sampler = sampler or settings.sampler
    if sampler not in list_samplers():
        raise TuningError(f"unknown sampler {sampler!r}; valid: {', '.join(list_samplers())}")
    if trials is not None and trials < 1:
        raise TuningError(f"trials must be >= 1, got {trials}")
    base = project.train_params()
    if base.mode == "probe" and not project.config.training.finetune_after:
        # Trials fine-tune the whole network and are scored as such: the winner's lr, epochs
        # and weight decay do nothing to a probe head, and its model was never tried as one.
        raise TuningError("tuning searches fine-tuning's parameters, and this project trains "
                          "a probe head only ([training] mode = \"probe\", finetune_after = "
                          "0); set finetune_after to the label count at which to fine-tune")
    try:
        space = settings.search_space(sampler, base.model)
    except ConfigError as err:
        raise TuningError(str(err)) from None
    train_set, held_out = labeled_sets(project)
    eval_set = choosing_part(project, held_out)
    if len(train_set) < MIN_TRAIN_LABELS or len(eval_set) < MIN_EVAL_LABELS:
        share = project.config.loop.selection_share
        part = (f" in the {share:.0%} of held-out labels that choose models ([loop] "
                f"selection_share; {len(held_out)} held out in all)" if share else "")
        raise TuningError(
            f"tuning needs at least {MIN_TRAIN_LABELS} training labels and {MIN_EVAL_LABELS} "
            f"held-out evaluation labels (human labels of random picks){part}; the project "
            f"has {len(train_set)} and {len(eval_set)}. Run rounds and label their picks first")
    train_keys, eval_keys = sorted(train_set), sorted(eval_set)
    data = TuningData(paths_of(project, train_keys), class_indices(project, train_set, train_keys),
                      paths_of(project, eval_keys), class_indices(project, eval_set, eval_keys),
                      classes=project.classes, num_workers=base.num_workers)
    tag = (f"{snapshot_hash(train_set)}-{snapshot_hash(eval_set)}-"
           f"{fixed_settings_hash(base, space)}")
    storage = study_storage(project)
    try:
        study = open_study(storage, project.config.project.name)
    except SQLAlchemyError as err:  # a refused password, a server down: one line, not 155
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise TuningError(f"the Optuna storage ([tuning] storage, {masked(storage)}) cannot "
                          f"be opened: {first}") from None
    log_trials(project, study)  # trials a crash left unlogged, or marked interrupted just now

    exclude = reverted_trials(project, study.study_name)

    def after_trial(study, trial: FrozenTrial) -> None:
        log_trials(project, study, [trial])
        if on_trial is not None:
            on_trial(describe_trial(trial, best_trial(study, tag, exclude=exclude)))

    ran = run_trials(study, data, space, base, sampler=sampler,
                     n_trials=trials or settings.trials,
                     timeout_s=timeout_s if timeout_s is not None else settings.timeout_s,
                     data_tag=tag, callbacks=[after_trial])
    best = best_trial(study, tag, exclude=exclude)
    in_use = scored_trial(study, base, tag)
    summary = {
        "study": study.study_name, "storage": masked(study_storage(project)), "sampler": sampler,
        "trials_run": len(ran), "trials_total": len(study.get_trials(deepcopy=False)),
        **{state.name.lower(): sum(t.state == state for t in ran)
           for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)},
        "n_train": len(train_set), "n_eval": len(eval_set),
        "best_trial": best.number if best else None, "best_accuracy": best.value if best else None,
        "in_use_accuracy": in_use.value if in_use and in_use.state == TrialState.COMPLETE
        else None,
    }
    record = {"study": study.study_name, "sampler": sampler, "data": tag,
              "n_train": len(train_set), "n_eval": len(eval_set)}
    return {**summary, **adopt_best(project, best, record)}


def adopt_best(project: Project, best: FrozenTrial | None, record: dict) -> dict:
    """Make ``best``'s values the project's training parameters unless they are in use already.
    ``record`` (study, sampler, data) is stored with them. Returns ``adopted`` and a reason."""
    if best is None:
        return {"adopted": False, "reason": "no completed trial on the current labels"}
    config_params = project.config.training.params(root=project.config.root)
    current = project.train_params()
    values = trial_values(best)
    chosen = apply_params(config_params, values)
    if chosen == current:
        return {"adopted": False, "reason": f"the parameters in use scored best (trial "
                                            f"{best.number}, accuracy {best.value:.4f})"}
    defaults = config_params.to_dict()
    overlay = {k: v for k, v in chosen.to_dict().items() if k in values or v != defaults[k]}
    path = project.tuned_params_path
    entry = {**record, "trial": best.number, "score": best.value, "time": _now(),
             "params": overlay, "previous_params": current.to_dict(),
             "previous": read_tuned_params(path)}
    _write_json(path, entry)
    _append_history(project, {k: v for k, v in entry.items() if k != "previous"}, "adopt")
    return {"adopted": True, "reason": f"trial {best.number} scored {best.value:.4f}",
            "params": overlay}


def revert_tuning(project: Project) -> dict:
    """Restore the training parameters in use before the last adopted tuning: the record it
    replaced, or ``[training]`` alone. Raises ``TuningError`` if no tuning is in use."""
    path = project.tuned_params_path
    record = read_tuned_params(path)
    if record is None:
        raise TuningError(f"nothing to revert: no tuned parameters in use ({path} does not "
                          f"exist), so training uses [training] from labelloop.toml")
    previous = record.get("previous")
    if previous is None:
        path.unlink()
        fsync_dir(path.parent)
    else:
        _write_json(path, previous)
    restored = "[training]" if previous is None else f"trial {previous.get('trial')}"
    _append_history(project, {"time": _now(), "study": record.get("study"),
                              "trial": record.get("trial"), "params": record["params"],
                              "restored": restored}, "revert")
    return {"reverted_trial": record.get("trial"), "restored": restored,
            "params": project.train_params().to_dict()}


def reverted_trials(project: Project, study_name: str) -> set[int]:
    """Numbers of the trials of ``study_name`` whose adoption was reverted."""
    path = project.config.workspace_dir / HISTORY_NAME
    if not path.exists():
        return set()
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {e["trial"] for e in events
            if e.get("action") == "revert" and e.get("study") == study_name}


def describe_trial(trial: FrozenTrial, best: FrozenTrial | None) -> str:
    """One line about a finished trial: outcome, values, time, and the best so far."""
    values = " ".join(f"{k}={_short(v)}" for k, v in trial_values(trial).items())
    if trial.state == TrialState.COMPLETE:
        outcome = f"accuracy {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED:
        step = trial.last_step
        outcome = f"pruned at check {step} (hold-out {trial.intermediate_values[step]:.4f})"
    else:
        outcome = f"failed: {trial.system_attrs.get('fail_reason', 'see the log')}"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
    baseline = " [parameters in use]" if trial.user_attrs.get("baseline") else ""
    return f"trial {trial.number}{baseline}: {outcome} in {seconds:.1f} s; {values}; {best_text}"


def log_trials(project: Project, study, trials: list[FrozenTrial] | None = None) -> int:
    """Log finished trials of ``study`` (default: all) that MLflow does not hold yet as runs of
    ``<project>-tuning``; returns how many were logged."""
    from mlflow.entities import Metric, Param

    registry = project.registry
    # The registry owns the MLflow connection, its quieting and where artifacts go.
    with registry._call("logging tuning trials"):
        client = registry._client()
        exp_id = registry._experiment(client, f"{registry.model_name}-tuning",
                                      registry.artifact_dir / "tuning")
        finished = [t for t in (trials if trials is not None else study.get_trials())
                    if t.state.is_finished()]
        logged = _logged_trials(client, exp_id, study.study_name) if finished else set()
        count = 0
        for t in finished:
            if t.number in logged:
                continue
            tags = {"study": study.study_name, "trial": str(t.number), "state": t.state.name,
                    "data": str(t.user_attrs.get("data", "")),
                    "baseline": str(bool(t.user_attrs.get("baseline"))).lower()}
            if "fail_reason" in t.system_attrs:
                tags["fail_reason"] = str(t.system_attrs["fail_reason"])[:_MAX_TAG]
            if t.user_attrs.get("interrupted"):
                tags["interrupted"] = "true"
            start = _millis(t.datetime_start or t.datetime_complete)
            run_id = client.create_run(exp_id, run_name=f"trial-{t.number}", tags=tags,
                                       start_time=start).info.run_id
            stamp = _millis(t.datetime_complete) or start
            metrics = [Metric("check_accuracy", float(v), stamp, int(step))
                       for step, v in sorted(t.intermediate_values.items())]
            if t.state == TrialState.COMPLETE:
                metrics.append(Metric("val_accuracy", float(t.value), stamp, 0))
            for key, value in (t.user_attrs.get("train") or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    metrics.append(Metric(f"train_{key}", float(value), stamp, 0))
            params = [Param(k, str(v)) for k, v in trial_values(t).items()]
            client.log_batch(run_id, metrics=metrics, params=params)
            client.set_terminated(run_id, "FAILED" if t.state == TrialState.FAIL else "FINISHED",
                                  end_time=stamp)
            count += 1
    return count


def _logged_trials(client, exp_id: str, study_name: str) -> set[int]:
    quote = '"' if "'" in study_name else "'"
    query = f"tags.study = {quote}{study_name}{quote}"
    found, token = set(), None
    while True:
        page = client.search_runs([exp_id], query, max_results=1000, page_token=token)
        found.update(int(r.data.tags["trial"]) for r in page if "trial" in r.data.tags)
        token = page.token
        if not token:
            return found


def _write_json(path: Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def _append_history(project: Project, entry: dict, action: str) -> None:
    path = project.config.workspace_dir / HISTORY_NAME
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"action": action, **entry}, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _millis(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)
