"""``labelloop tune``: search training hyperparameters, or undo the last search's choice
(``pipeline.tuning``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.cli.common import ConfigOption, console, fail, opened, out
from pipeline.project.config import ConfigError, parse_interval


def tune_command(
    config: Path | None = ConfigOption,
    sampler: str | None = typer.Option(
        None, help="tpe, random or grid (default: tuning.sampler in labelloop.toml)."),
    trials: int | None = typer.Option(
        None, min=1, help="Trials to run now (default: tuning.trials); the study keeps "
        "earlier ones."),
    timeout: str | None = typer.Option(
        None, help="Start no trial after this long: 30s, 30m, 2h (default: tuning.timeout)."),
    revert: bool = typer.Option(
        False, "--revert", help="Restore the training parameters in use before the last "
        "tuning, and exit."),
) -> None:
    """Tune training hyperparameters on the project's labels (scored on its held-out human
    labels); the best become the training parameters of later rounds."""
    # Imported here: tuning trains models (torch, Optuna), which `labelloop --help` should not
    # load.
    from pipeline.project.databases import masked
    from pipeline.tuning import TuningError, revert_tuning, study_storage, tune_project
    from training.tuning import list_samplers

    timeout_s = None
    if timeout is not None:
        try:
            timeout_s = parse_interval(timeout)
        except ValueError as err:
            fail(f"--timeout: {err}")
    if sampler is not None and sampler not in list_samplers():
        fail(f"--sampler: unknown sampler {sampler!r}; valid: {', '.join(list_samplers())}")
    with opened(config, lock="labelloop tune --revert" if revert else "labelloop tune") as project:
        if project.task.labels.name != "classification":
            fail(f"labelloop tune tunes classifiers; a {project.task.labels.name} project's "
                 "detector takes its settings from [training]")
        try:
            if revert:
                result = revert_tuning(project)
                _print(f"reverted trial {result['reverted_trial']}; training parameters are "
                       f"those of {result['restored']} again")
            else:
                result = tune_project(project, sampler=sampler, trials=trials,
                                      timeout_s=timeout_s, on_trial=_print)
        except (TuningError, ConfigError) as err:
            fail(str(err))  # fail() escapes: messages name tables such as [tuning.grid]
        except KeyboardInterrupt:
            _print(f"interrupted: finished trials are kept in "
                   f"{masked(study_storage(project))}; run `labelloop tune` again to continue")
            raise typer.Exit(130) from None
    if not revert:
        verdict = "adopted" if result["adopted"] else "kept the parameters in use"
        _print(f"{verdict}: {result['reason']}")
    out.print(json.dumps(result), markup=False, highlight=False, soft_wrap=True)


def _print(line: str) -> None:
    console.print(line, markup=False, highlight=False)
