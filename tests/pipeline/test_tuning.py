"""``labelloop tune`` on a digits project: the study lives in the workspace and resumes (after a
SIGKILL too), every trial reaches MLflow, the best parameters become the project's training
parameters and ``--revert`` restores the ones before; too few labels, a missing grid and a held
lock are clear errors; the round's tune step does nothing unless configured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from labeling.selections import Pick, record_picks
from labeling.store import NewLabel
from pipeline.cli.app import app
from pipeline.ingest import ingest_folder
from pipeline.project.config import TuningSection
from pipeline.project.lock import WorkspaceLock
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round.steps import STEPS
from pipeline.round.tune import retune_step
from pipeline.tuning import (
    TuningError,
    adopt_best,
    revert_tuning,
    study_storage,
    tune_project,
)
from tests.pipeline.conftest import on_postgres
from training.tuning import apply_params, trial_values

REPO = Path(__file__).resolve().parents[2]
NAME = "tune-test"
# On top of the shared quick settings (conftest.py): a training lr far below the searched
# range, so no trial scores the config's own parameters and the best trial always differs from
# them (it is adopted); trials of about a second. Trials are scored on the held-out items that
# choose models: half of them here, so that 60 held out leave about 30.
TUNING = {"lr = 0.003": "lr = 1e-05", "min_steps = 40": "min_steps = 20",
          "trials = 20": "trials = 2", "selection_share = 0.25": "selection_share = 0.5"}
SPACE = "\n[tuning.space]\nlr = [0.002, 0.01]\nepochs = [1, 2]\nbatch_size = [16, 32]\n"


@pytest.fixture(scope="module")
def digits160():
    """160 of sklearn's digits as uint8 [N, 8, 8] in a fixed shuffled order, labels [N]."""
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))[:160]
    return images[order], data.target[order]


@pytest.fixture
def make_project(quick_project, digits160, tmp_path, request):
    """make(n_eval=60, n_train=100, extra="") -> a project in ``tmp_path`` whose human labels
    are ``n_train`` training and ``n_eval`` held-out items; ``extra`` ends its config. A test
    that asks for ``backend`` runs with its stores on SQLite and on PostgreSQL."""
    on_pg = "backend" in request.fixturenames and request.getfixturevalue("backend") == "postgresql"

    def make(*, n_eval: int = 60, n_train: int = 100, extra: str = ""):
        proj, truth, config_path = quick_project(tmp_path, *digits160, NAME)
        proj.close()
        text = config_path.read_text()
        if on_pg:  # the images stay ingested in the SQLite store; ingest them again
            text = on_postgres(text, request.getfixturevalue("postgres_server"))
        for old, new in TUNING.items():
            assert old in text, old
            text = text.replace(old, new)
        config_path.write_text(text + SPACE + extra)
        project = open_project(find_config(tmp_path))
        if on_pg:
            ingest_folder(project.store, tmp_path / "images")
        keys = sorted((i.key, str(Path(i.path).resolve())) for i in project.store.items())
        eval_keys, train_keys = keys[:n_eval], keys[n_eval:n_eval + n_train]
        record_picks(project.store, [Pick(k, "random", holdout=True) for k, _ in eval_keys]
                     + [Pick(k, "random") for k, _ in train_keys], round_id=None)
        project.store.add_labels([NewLabel(k, truth[p], "human", who="oracle")
                                  for k, p in eval_keys + train_keys])
        return project

    return make


def mlflow_trials(project) -> list[int]:
    client = MlflowClient(tracking_uri=project.registry.tracking_uri)
    exp = client.get_experiment_by_name(f"{NAME}-tuning")
    return sorted(int(r.data.tags["trial"]) for r in client.search_runs([exp.experiment_id]))


@pytest.mark.slow
def test_tune_resumes_adopts_the_best_and_revert_restores(make_project, backend):
    project = make_project()
    config_params = project.config.training.params(root=project.config.root)
    lines = []
    first = tune_project(project, on_trial=lines.append)
    second = tune_project(project, trials=2)

    study = optuna.load_study(study_name=NAME, storage=study_storage(project))
    trials = study.get_trials()
    assert first["trials_run"] == second["trials_run"] == 2 and len(trials) == 4
    if backend == "postgresql":  # the study and MLflow's runs are in PostgreSQL, not files
        assert first["storage"].startswith("postgresql+psycopg://postgres@/tuning_")
        workspace = project.config.workspace_dir
        assert not (workspace / "optuna.db").exists() and not (workspace / "mlflow.db").exists()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len(lines) == 2 and lines[0].startswith("trial 0: accuracy ")
    assert mlflow_trials(project) == [0, 1, 2, 3]
    # The best trial's values are now the training parameters of later rounds.
    assert first["adopted"]
    record = json.loads(project.tuned_params_path.read_text())
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert record["study"] == NAME and record["trial"] == best.number
    assert record["score"] == best.value and record["time"]
    assert record["previous_params"] == config_params.to_dict()
    tuned = project.train_params()
    assert tuned == apply_params(config_params, trial_values(best)) != config_params
    assert 0.002 <= tuned.lr <= 0.01
    from pipeline.status import project_status

    shown = project_status(project)["training_params"]  # status says which are in use
    assert (shown["from"], shown["trial"], shown["score"]) == ("tune", best.number, best.value)

    # A second adoption stacks on the first; each revert undoes one.
    other = next(t for t in trials if t.number != best.number)
    assert adopt_best(project, other, {"study": NAME})["adopted"]
    assert project.train_params() == apply_params(config_params, trial_values(other))
    assert revert_tuning(project)["restored"] == f"trial {best.number}"
    assert project.train_params() == tuned
    assert revert_tuning(project)["restored"] == "[training]"
    assert project.train_params() == config_params and not project.tuned_params_path.exists()
    assert project_status(project)["training_params"] == {"from": "[training]"}
    with pytest.raises(TuningError, match="nothing to revert"):
        revert_tuning(project)
    history = (project.config.workspace_dir / "tuning-history.jsonl").read_text().splitlines()
    assert [json.loads(h)["action"] for h in history] == ["adopt", "adopt", "revert", "revert"]
    # Reverted trials are not adopted again.
    third = tune_project(project, trials=1)
    assert third["adopted"] and third["best_trial"] not in (best.number, other.number)
    project.close()


@pytest.mark.slow
def test_killed_tune_loses_no_finished_trial_and_resumes(make_project, tmp_path, backend):
    project = make_project()
    storage = study_storage(project)
    for _ in range(3):  # a kill can land just after a trial ended: then kill the next one
        _kill_tune_mid_trial(tmp_path, storage)
        running = [t.number for t in _trials(storage) if t.state == TrialState.RUNNING]
        if running:
            break
    assert running, "three kills in a row landed between trials"
    before = {t.number: t.value for t in _trials(storage) if t.state == TrialState.COMPLETE}

    result = tune_project(project, sampler="random", trials=2)

    trials = _trials(storage)
    after = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    assert result["trials_run"] == 2 and len(after) == len(before) + 2
    assert {n: after[n] for n in before} == before
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in interrupted] == running
    assert all(t.user_attrs["interrupted"] for t in interrupted)
    assert mlflow_trials(project) == [t.number for t in trials]  # the interrupted one too
    project.close()


def _kill_tune_mid_trial(config_dir, storage: str) -> None:
    """Start `labelloop tune` and SIGKILL it once two trials have finished and one runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "tune", "--trials", "40", "--sampler", "random",
         "--config", str(config_dir)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no two finished trials within 300 s"
            states = _states(storage)
            if states.count(TrialState.COMPLETE) >= 2 and states[-1] == TrialState.RUNNING:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _trials(storage: str) -> list:
    return optuna.load_study(study_name=NAME, storage=storage).get_trials()


def _states(storage: str) -> list:
    try:
        return [t.state for t in _trials(storage)]
    except KeyError:  # the study is not created yet
        return []


@pytest.mark.slow
def test_grid_from_the_config_runs_each_combination_once(make_project):
    project = make_project(extra="[tuning.grid]\nlr = [0.002, 0.004]\nbatch_size = [16]\n")
    first = tune_project(project, sampler="grid", trials=10)
    again = tune_project(project, sampler="grid", trials=10)
    assert first["trials_run"] == 2 and again["trials_run"] == 0
    study = optuna.load_study(study_name=NAME, storage=study_storage(project))
    assert sorted(t.params["lr"] for t in study.trials) == [0.002, 0.004]
    project.close()


def test_too_few_labels_missing_grid_and_held_lock_are_clear_errors(make_project, tmp_path):
    project = make_project(n_eval=12)
    workspace = project.config.workspace_dir
    project.close()
    runner = CliRunner()
    args = ["tune", "--config", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert ("tuning needs at least 20 training labels and 20 held-out evaluation labels"
            in _flat(result.output)) and "12 held out in all" in _flat(result.output)
    # Printed as written: "[loop]", not rich's escape of it.
    assert "choose models ([loop] selection_share" in _flat(result.output)
    result = runner.invoke(app, [*args, "--sampler", "grid"])
    assert result.exit_code == 2 and "sampler grid needs a grid" in _flat(result.output)
    result = runner.invoke(app, [*args, "--sampler", "bayes"])
    assert result.exit_code == 2 and "valid: tpe, random, grid" in _flat(result.output)
    result = runner.invoke(app, [*args, "--revert"])
    assert result.exit_code == 2 and "nothing to revert" in _flat(result.output)
    with WorkspaceLock(workspace / "lock", command="labelloop run --every 10m"):
        result = runner.invoke(app, args)
    assert result.exit_code == 3 and "labelloop run" in _flat(result.output)
    assert not (workspace / "optuna.db").exists()
    # A probe project's head has nothing the trials search: said, not tuned in vain.
    config = tmp_path / "labelloop.toml"
    text = config.read_text()
    assert text.count('mode = "finetune"') == 1
    config.write_text(text.replace('mode = "finetune"', 'mode = "probe"'))
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "trains a probe head only" in _flat(result.output)
    assert "set finetune_after" in _flat(result.output)
    assert not (workspace / "optuna.db").exists()


def test_a_refused_tuning_storage_password_is_one_line(make_project, tmp_path, postgres_server,
                                                       monkeypatch):
    # A wrong LABELLOOP_TUNING_PASSWORD was a 155-line traceback.
    make_project().close()
    config = tmp_path / "labelloop.toml"
    text = config.read_text()
    assert text.count('storage = ""') == 1
    url = postgres_server.create_password_database()
    config.write_text(text.replace('storage = ""', f'storage = "{url}"'))
    monkeypatch.setenv("LABELLOOP_TUNING_PASSWORD", "not-the-password")
    result = CliRunner().invoke(app, ["tune", "--config", str(tmp_path), "--trials", "1"])
    flat = _flat(result.output)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the Optuna storage ([tuning] storage" in flat and "password authentication" in flat
    assert "not-the-password" not in result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_round_tune_step_runs_only_when_configured(make_project):
    project = make_project()
    assert STEPS[-2:] == ("monitor", "tune")
    off = retune_step(project, 4, {"monitor": {"drift": {"drift": True}}})
    assert off == {"tuned": False, "reason": "off ([tuning] every_rounds = 0, on_drift = false)"}

    settings = project.config.tuning.model_dump()
    project.config = project.config.model_copy(
        update={"tuning": TuningSection(**{**settings, "every_rounds": 2, "on_drift": True,
                                           "trials": 1})})
    calm = {"monitor": {"drift": {"computed": True, "drift": False}}}
    assert retune_step(project, 3, calm) == {"tuned": False, "reason": "not due this round"}
    due = retune_step(project, 4, calm)
    assert due["tuned"] and due["why"] == "every 2 rounds" and due["trials_run"] == 1
    drift = retune_step(project, 5, {"monitor": {"drift": {"computed": True, "drift": True}}})
    assert drift["tuned"] and drift["why"] == "drift detected" and drift["trials_total"] == 2
    json.dumps(drift)  # round stats are stored as JSON
    project.close()


def test_scores_count_only_for_trials_trained_with_the_settings_in_use():
    # A trial trained with min_steps 50 was adopted after the config said 3: the next model
    # trained 10 steps and lost to the champion (0.64 against 0.96). Settings outside the
    # search are part of the data tag; the searched ones are what trials vary.
    from pipeline.tuning import fixed_settings_hash
    from training.params import TrainParams
    from training.tuning import search_space

    space = search_space({"lr": [1e-4, 1e-2], "epochs": [2, 10]})
    base = TrainParams(min_steps=50, lr=0.003, epochs=5)
    same = fixed_settings_hash(base, space)
    assert fixed_settings_hash(TrainParams(min_steps=50, lr=0.0001, epochs=1), space) == same
    assert fixed_settings_hash(TrainParams(min_steps=3, lr=0.003, epochs=5), space) != same
    assert fixed_settings_hash(TrainParams(min_steps=50, lr=0.003, epochs=5, seed=1),
                               space) != same
