"""CLI commands of the labeling loop: init, round, run, status, models."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from labeling.tasks.registry import list_task_types
from pipeline.certify import describe
from pipeline.cli.common import ConfigOption, console, fail, opened, out
from pipeline.loop import StopFlag, run_loop
from pipeline.project.config import ConfigError, parse_interval, validate_classes
from pipeline.project.workspace import init_project
from pipeline.status import project_status, round_summary


def init_command(
    images: str = typer.Option(..., help="Folder of images to label (it may grow later), or "
                               "an S3 prefix s3://bucket/prefix."),
    classes: str | None = typer.Option(None, help="Comma-separated class names, e.g. cat,dog "
                                       "(with --from-studio: read from the project)."),
    name: str | None = typer.Option(None, help="Project name (default: this folder's name)."),
    studio_url: str = typer.Option("", help="Label Studio URL; empty: the embedded server."),
    folder: Path = typer.Option(Path("."), help="Where to write labelloop.toml."),
    task: str = typer.Option("classification", help="classification (one class per image) or "
                             "detection (boxes, one class each)."),
    from_studio: int | None = typer.Option(
        None, "--from-studio", help="Attach to this existing Label Studio project (id): its "
        "classes, tasks and annotations come in; nothing in it is changed. Needs --studio-url "
        "and the key in LABEL_STUDIO_API_KEY."),
) -> None:
    """Create labelloop.toml and the project's workspace."""
    if from_studio is not None:
        _init_from_studio(folder, from_studio, Path(images), studio_url)
        return
    if not classes:
        fail("--classes is required (or --from-studio ID to read them from Label Studio)")
    if task not in list_task_types():
        fail(f"--task {task!r} is not a task type; valid: {', '.join(list_task_types())}")
    try:
        class_list = list(validate_classes((c for c in classes.split(",")),
                                           minimum=1 if task == "detection" else 2))
        where = images if images.startswith("s3://") else Path(images)
        path = init_project(folder, images=where, classes=class_list, name=name,
                            studio_url=studio_url, task=task)
    except (ConfigError, ValueError) as err:
        fail(str(err))
    # Outside the project folder the next commands need the config's path.
    here = path.parent.resolve() == Path.cwd().resolve()
    flag = "" if here else f" -c {path}"
    console.print(f"wrote {path}; next: `labelloop ingest{flag}`, then `labelloop round{flag}`",
                  highlight=False, markup=False, soft_wrap=True)


def round_command(config: Path | None = ConfigOption,
                  quiet: bool = typer.Option(False, help="No progress bars.")) -> None:
    """Run one round (or resume an interrupted one)."""
    # Imported here, as in every command that trains: torch and the Label Studio SDK take
    # seconds to load, which `labelloop --help` and `status` should not pay.
    from pipeline.round.ingest import EmptyPool
    from pipeline.round.steps import RoundStopped, run_round

    stop = StopFlag()
    stop.install()
    with opened(config, lock="labelloop round") as project, _round_failures():
        try:
            record = run_round(project, progress=not quiet, should_stop=stop,
                               on_step=_print_step)
        except RoundStopped as err:
            console.print(str(err))
            raise typer.Exit(130) from None
        except EmptyPool as err:
            # A round on an empty pool would run every step, ask nobody anything and look
            # finished: say why instead.
            fail(str(err))
        print(json.dumps({"round": record["id"], **round_summary(record["stats"])}), flush=True)
        _say_next(project, record["stats"])


@contextmanager
def _round_failures():
    """One line, not a traceback, for what stops a round (or the scheduled loop) until a
    person acts; the round resumes where it stopped."""
    from training.checkpoint import CheckpointError
    from training.images import ImageError

    try:
        yield
    except ImageError as err:
        # A file gone or broken since the last ingest (rounds leave out the items whose
        # file an ingest found so): nothing of the round is lost, it resumes.
        fail(f"{err}. If the file changed since the last ingest, put it back, or run "
             f"`labelloop ingest` (rounds then leave its item out); `labelloop round` "
             f"resumes this round")
    except CheckpointError as err:
        fail(f"{err}. If it is the champion's, `labelloop models rollback` (or `models "
             f"promote VERSION`) makes another version the champion; `labelloop round` "
             f"then resumes this round")
    except KeyboardInterrupt:
        # A second Ctrl-C: stopped inside a step. Store writes are transactions, checkpoints
        # and pushes atomic or idempotent: the round resumes at that step.
        fail("stopped at once, inside a step; `labelloop round` resumes the round at that step",
             code=130)


def _init_from_studio(folder: Path, project_id: int, images: Path, studio_url: str) -> None:
    import os

    from labeling.studio.errors import StudioError
    from pipeline.from_studio import init_from_studio

    url = studio_url or os.environ.get("LABEL_STUDIO_URL", "")
    if not url:
        fail("--from-studio needs the server: --studio-url URL (or LABEL_STUDIO_URL)")
    try:
        done = init_from_studio(folder, project_id=project_id, images=images, studio_url=url,
                                env=os.environ)
    except (ConfigError, StudioError, ValueError) as err:
        fail(str(err))
    console.print(f"attached to Label Studio project {project_id} ({done['title']!r}, classes "
                  f"{', '.join(done['classes'])}): {done['tasks']} task(s), "
                  f"{done['items_added']} new item(s), {done['labels']} new label(s), "
                  f"{done['unchanged']} unchanged; config {done['config']}", highlight=False,
                  markup=False)  # a Label Studio title of "[wip] cats" lost its "[wip]"
    for why in done["not_added"][:20]:
        console.print(f"not added: {why}", highlight=False, markup=False)
    console.print("next: `labelloop round`", highlight=False, markup=False)


def _say_next(project, stats: dict) -> None:
    """One line on what the round leaves for people, and the command after it."""
    waiting = project_status(project, last_rounds=0)["pool"]["pending_in_label_studio"]
    if waiting:
        url = project.studio[0].url if project.studio else "Label Studio"
        console.print(f"next: {waiting} item(s) wait for people in Label Studio ({url}); "
                      f"run `labelloop round` again when they are answered", highlight=False)
    elif not stats.get("select", {}).get("picked"):
        console.print("next: nothing waits for people; `labelloop status` shows the pool, "
                      "`labelloop export` delivers it", highlight=False)


def run_command(
    config: Path | None = ConfigOption,
    every: str = typer.Option("10m", help="Time between rounds: 30s, 10m, 2h."),
    max_rounds: int | None = typer.Option(None, min=1, help="Stop after this many rounds."),
    max_failures: int = typer.Option(
        3, min=1, help="Stop after this many failed tries of a round in a row (Label Studio or "
        "the registry down); each is retried after --every."),
) -> None:
    """Repeat rounds on a schedule until stopped (SIGINT/SIGTERM stop between steps)."""
    try:
        every_s = parse_interval(every)
    except ValueError as err:
        fail(str(err))
    stop = StopFlag()
    stop.install()
    with opened(config, lock=f"labelloop run --every {every}") as project, _round_failures():
        done = run_loop(project, every_s=every_s, max_rounds=max_rounds, stop=stop,
                        max_failures=max_failures,
                        after_round=lambda r: print(json.dumps(
                            {"time": _now(), "round": r["id"], **round_summary(r["stats"])}),
                            flush=True),
                        on_failure=lambda err, n: _report_failure(err, n, every, max_failures),
                        on_empty=lambda err: _report_empty(err, every),
                        on_give_up=lambda err: print(json.dumps(
                            {"time": _now(), "loop_stopped": str(err)}), flush=True))
    why = f" (stopped by {stop.signal_name})" if stop.signal_name else ""
    console.print(f"{done} round(s) done{why}")
    if stop.where:
        console.print(stop.where)


def status_command(config: Path | None = ConfigOption,
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The pool by state, the champion and the last rounds."""
    with opened(config, reads=True) as project:
        status = project_status(project)
    if as_json:
        out.print_json(json.dumps(status))
        return
    # User text (names, reasons) is escaped: rich read "[v2]" as markup and dropped it, and a
    # reason of "[/]" made `models list` fail on every run after.
    table = Table(title=escape(f"project {status['project']}"))
    table.add_column("pool")
    table.add_column("items", justify="right")
    for key, value in status["pool"].items():
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)
    champ = status["champion"]
    out.print("champion: none yet" if champ is None else
              escape(f"champion: v{champ['version']} {_brief(champ['metrics'])}"))
    out.print(f"human answers: {status['human_answers']:,} (second opinions included)")
    tuned = status["training_params"]
    if tuned["from"] == "tune":
        values = ", ".join(f"{k} {v}" for k, v in sorted((tuned["params"] or {}).items()))
        out.print(escape(f"training parameters: tune's trial {tuned['trial']} (held-out "
                         f"accuracy {tuned['score']:.4f}, adopted {tuned['time']}): {values}; "
                         "`labelloop tune --revert` goes back"))
    elif tuned["from"] == "unreadable":
        out.print(escape(f"training parameters: {tuned['error']}"))
    else:
        out.print(escape("training parameters: [training] in labelloop.toml"))
    if (held := status.get("held_out")) is not None:
        out.print(escape(f"held-out answers: {held['test_thresholds']:,} test the thresholds, "
                         f"{held['choose_models']:,} choose models ([loop] selection_share "
                         f"{held['selection_share']:g}), {held['waiting']:,} wait for second "
                         f"opinions"))
    for q in status["annotators"]:
        lo, hi = q["interval"]
        out.print(escape(f"annotator {q['name']}: errs on {100 * q['rate']:.1f}% of {q['items']}"
                         f" shared items (95% interval {100 * lo:.1f}-{100 * hi:.1f}%, "
                         f"Dawid-Skene; differs from the others on {q['disagreements']})"))
    out.print("certificate: " + escape(describe(status["certificate"])))
    for r in status["rounds"]:
        out.print(escape(f"round {r['id']} {r['status']}: {_brief(r['summary'])}"))
    for warning in status.get("warnings") or []:
        out.print("[yellow]warning:[/yellow] " + escape(warning))


models_app = typer.Typer(help="The model registry: list, promote, roll back.",
                         no_args_is_help=True)


@models_app.command("list")
def models_list(config: Path | None = ConfigOption) -> None:
    """Every registered model version, the champion marked."""
    with opened(config, reads=True) as project:
        versions = project.registry.versions()
        history = project.registry.history()
        boxes = project.config.project.task == "detection"
    # A detector is scored by mAP@0.5 on the held-out images (its column was empty).
    metric, column = ("map_50", "eval_mAP@0.5") if boxes else ("eval_accuracy", "eval_accuracy")
    table = Table()
    for col in ("version", "champion", "created", "n_train", column, "snapshot"):
        table.add_column(col)
    for v in versions:
        table.add_row(str(v.version), "*" if "champion" in v.aliases else "",
                      str(v.created)[:19], _count(v.metrics.get("n_train")),
                      _fmt(v.metrics.get(metric)), v.snapshot or "")
    out.print(table)
    for event in history:
        out.print(escape(f"{event}"))


@models_app.command("promote")
def models_promote(version: str, config: Path | None = ConfigOption,
                   reason: str = typer.Option("manual promotion",
                                              help="Recorded with it.")) -> None:
    """Make VERSION the champion."""
    from pipeline.round.promote import checkpoint_problem

    with opened(config, lock="labelloop models promote") as project:
        problem = checkpoint_problem(project, project.registry.version(version).version)
        if problem:
            fail(f"v{version.lstrip('v')} cannot be the champion: {problem}")
        promoted = project.registry.promote(version, reason=reason)
    console.print(f"v{promoted.version} is the champion")  # "v3" and "3" name the same


@models_app.command("rollback")
def models_rollback(config: Path | None = ConfigOption,
                    reason: str = typer.Option("manual rollback",
                                               help="Recorded with it.")) -> None:
    """Restore the previous champion."""
    from pipeline.round.promote import checkpoint_problem

    with opened(config, lock="labelloop models rollback") as project:
        # Checked before the alias moves, as promote does: a champion that cannot be read
        # stops every round and `labelloop serve` (it was installed with a warning).
        previous = project.registry.previous_champion()
        problem = checkpoint_problem(project, previous)
        if problem:
            fail(f"v{previous} cannot be the champion again: {problem}. The champion is "
                 "unchanged; choose another version with `labelloop models promote VERSION` "
                 "(`labelloop models list` shows them)")
        restored = project.registry.rollback(reason=reason)
    console.print(f"v{restored.version} is the champion again")


def _count(value) -> str:
    """A count the registry keeps as a float (MLflow metrics are floats) shown as one."""
    return "" if value is None else f"{int(value):,}"


def _report_failure(err: Exception, failures: int, every: str, max_failures: int) -> None:
    """One JSON line on stdout (what the schedule's log reads) and one on stderr."""
    print(json.dumps({"time": _now(), "round_failed": str(err), "failures_in_a_row": failures,
                      "retry_in": every}), flush=True)
    console.print(f"round failed ({failures} of {max_failures} in a row), trying again in "
                  f"{every}: {err}", markup=False, highlight=False)


def _report_empty(err: Exception, every: str) -> None:
    print(json.dumps({"time": _now(), "round_waiting": str(err), "retry_in": every}),
          flush=True)
    console.print(f"no round: {err}; looking again in {every}", markup=False, highlight=False)


def _now() -> str:
    """When, in the scheduled loop's JSON lines: an unattended log is read hours later."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _print_step(step: str, result: dict) -> None:
    # Markup off: a reason may name a config table such as "[tuning]", which rich would eat.
    console.print(f"  {step}: {_brief(result)}", markup=False, highlight=False)


def _fmt(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4f}"
    return "" if value is None else str(value)


def _brief(result: dict) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, dict | list) or value is None:  # None: the step did not run
            continue
        parts.append(f"{key}={_fmt(value)}")
    return ", ".join(parts)
