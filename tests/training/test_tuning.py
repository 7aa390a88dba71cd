"""Hyperparameter search on real digits: a tiny study matches or beats the parameters it starts
from, a resumed study keeps its trials, does not repeat them and takes any sampler, grid search
covers its grid once, and bad search spaces say which parameter is wrong."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from training.evaluate import evaluate
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays
from training.tuning import (
    SearchSpaceError,
    TuningData,
    best_trial,
    grid_space,
    make_pruner,
    make_sampler,
    open_study,
    quiet_optuna,
    run_trials,
    search_space,
    trial_values,
)

CLASSES = [str(d) for d in range(10)]
# Short training: a trial takes a few seconds on two busy cores.
QUICK = TrainParams(epochs=3, min_steps=60, batch_size=32, seed=0)
QUICK_RANGES = {"epochs": [2, 6], "batch_size": [16, 64]}


@pytest.fixture(scope="module")
def split(digits):
    """300 training and 200 validation digits."""
    images, labels = digits
    return images[:300], labels[:300], images[300:500], labels[300:500]


@pytest.mark.slow
def test_tiny_study_matches_or_beats_the_default_parameters(split, tmp_path):
    x_train, y_train, x_val, y_val = split
    default = train_arrays(x_train, y_train, CLASSES, QUICK)
    default_acc = evaluate(predict_arrays(default, x_val).probs, y_val, CLASSES).accuracy

    study = open_study(f"sqlite:///{tmp_path / 'optuna.db'}", "digits")
    data = TuningData(x_train, y_train, x_val, y_val, classes=CLASSES)
    ran = run_trials(study, data, search_space(QUICK_RANGES), QUICK, n_trials=4)

    assert len(ran) == 4 == len(study.trials)
    # The first trial scores the parameters it starts from, trained the same way.
    assert ran[0].user_attrs["baseline"] and ran[0].value == pytest.approx(default_acc)
    best = best_trial(study)
    assert best.value >= default_acc > 0.8
    # Every trial reported the training loop's hold-out accuracy, which pruning judges by.
    assert all(t.intermediate_values for t in ran)
    searched = [trial_values(t) for t in ran[1:]]
    assert all(2 <= v["epochs"] <= 6 and 16 <= v["batch_size"] <= 64 for v in searched)


@pytest.fixture
def small_study(split, tmp_path):
    """(Optuna storage URL in tmp_path, 100 training and 60 validation digits)."""
    x_train, y_train, x_val, y_val = split
    data = TuningData(x_train[:100], y_train[:100], x_val[:60], y_val[:60], classes=CLASSES)
    return f"sqlite:///{tmp_path / 'optuna.db'}", data


@pytest.mark.slow
def test_resumed_study_keeps_its_trials_and_draws_new_points(small_study):
    storage, data = small_study
    base = TrainParams(epochs=1, min_steps=15, batch_size=32)
    space = search_space({"epochs": [1, 2], "batch_size": [16, 32]})
    first = run_trials(open_study(storage, "s"), data, space, base, sampler="random", n_trials=2)
    before = [(t.number, t.value, t.params) for t in first]

    study = open_study(storage, "s")  # as a second process would
    second = run_trials(study, data, space, base, sampler="random", n_trials=2)

    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [(t.number, t.value, t.params) for t in trials[:2]] == before
    # Only the first call scores the base parameters; the second draws points of its own.
    assert [bool(t.user_attrs.get("baseline")) for t in trials] == [True, False, False, False]
    assert second[0].params != first[1].params
    # Other samplers, ranges and a grid continue the same study.
    run_trials(study, data, search_space({"lr": [0.001, 0.002], "epochs": [1, 1]}), base,
               sampler="tpe", n_trials=1)
    run_trials(study, data, grid_space({"lr": [0.001, 0.004], "epochs": [1]}), base,
               sampler="grid")
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.params["lr"] for t in trials[-2:]] == [0.001, 0.004]


@pytest.mark.slow
def test_grid_covers_exactly_the_grid_even_after_an_interrupted_trial(small_study):
    storage, data = small_study
    base = TrainParams(epochs=1, min_steps=10, batch_size=32)
    space = grid_space({"lr": [0.001, 0.003], "augment": [0.0, 0.5]})
    # A process died while training the first combination: its trial stays "running".
    study = open_study(storage, "grid")
    first = space.combinations()[0]
    study.enqueue_trial(first, user_attrs={"grid": first})
    study.ask()

    study = open_study(storage, "grid")  # the next call finds it and marks it failed
    ran = run_trials(study, data, space, base, sampler="grid", n_trials=10)
    again = run_trials(study, data, space, base, sampler="grid", n_trials=10)

    assert len(ran) == 4 and again == []
    done = [trial_values(t) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(map(sorted_items, done)) == sorted(map(sorted_items, space.combinations()))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["interrupted"]


def sorted_items(d: dict) -> tuple:
    return tuple(sorted(d.items()))


@pytest.mark.slow
@pytest.mark.parametrize("held_out", [0.15, 0.0], ids=["split", "check_on"])
def test_on_check_stops_training_and_changes_nothing_when_it_declines(split, held_out):
    x_train, y_train, x_val, y_val = split
    params = TrainParams(epochs=2, min_steps=40, batch_size=32, val_fraction=held_out)
    # Without a split of its own, the checks are on images given for them (a tuner's).
    check_on = None if held_out else (x_val, y_val)
    plain = train_arrays(x_train, y_train, CLASSES, params)
    seen = []
    watched = train_arrays(x_train, y_train, CLASSES, params, check_on=check_on,
                           on_check=lambda step, acc: seen.append((step, acc)) or False)
    assert seen and seen[-1][0] == plain.metrics["steps"] == 40
    if check_on is not None:  # the accuracy on exactly those images
        assert seen[-1][1] == pytest.approx(
            evaluate(predict_arrays(plain, x_val).probs, y_val, CLASSES).accuracy)
    assert not watched.metrics.pop("stopped_by_on_check")
    assert watched.metrics.keys() - {"seconds"} == plain.metrics.keys() - {"seconds"}
    for key in watched.metrics.keys() - {"seconds"}:
        assert watched.metrics[key] == plain.metrics[key]
    for a, b in zip(plain.module.state_dict().values(), watched.module.state_dict().values(),
                    strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    stopped = train_arrays(x_train, y_train, CLASSES, params, check_on=check_on,
                           on_check=lambda step, acc: True)
    assert stopped.metrics["stopped_by_on_check"] and stopped.metrics["steps"] == seen[0][0]


@pytest.mark.parametrize("ranges, models, message", [
    ({"lrr": [0.001, 0.01]}, ["small_cnn"], "unknown search range 'lrr'; valid: lr, "),
    ({"lr": [0.01, 0.001]}, ["small_cnn"], "'lr': low 0.01 > high 0.001"),
    ({"lr": [0.01]}, ["small_cnn"], "'lr': expected [low, high]"),
    ({"epochs": [1.5, 3]}, ["small_cnn"], "'epochs': 1.5 is not an integer"),
    ({"augment": [0.0, 2.0]}, ["small_cnn"], "'augment': 2.0 is out of range"),
    ({"weight_decay": [0, 0.01]}, ["small_cnn"], "log scale, so low must be > 0"),
    ({"batch_size": "big"}, ["small_cnn"], "'batch_size': expected [low, high]"),
    ({}, [], "models: empty list"),
    ({}, ["vgg99"], "unknown model 'vgg99'; valid: "),
])
def test_bad_search_range_names_the_parameter(ranges, models, message):
    with pytest.raises(SearchSpaceError) as err:
        search_space(ranges, models=models)
    assert message in str(err.value)


@pytest.mark.parametrize("grid, message", [
    ({}, "the grid is empty"),
    ({"lr": []}, "grid parameter 'lr': empty list"),
    ({"momentum": [0.9]}, "unknown grid parameter 'momentum'; valid: lr, weight_decay, "),
    ({"batch_size": [32, "64"]}, "grid parameter 'batch_size': '64' is not an integer"),
    ({"epochs": [True]}, "grid parameter 'epochs': True is not an integer"),
    ({"lr": [0.001, 0.001]}, "grid parameter 'lr': repeats a value"),
    ({"weight_decay": [0, 0.001]}, "grid parameter 'weight_decay': searched on a log scale"),
    ({"lr": 0.001}, "grid parameter 'lr': expected a list of values"),
    ({"model": ["small_cnn", "vgg99"]}, "grid parameter 'model': unknown model 'vgg99'"),
])
def test_bad_grid_names_the_parameter(grid, message):
    with pytest.raises(SearchSpaceError) as err:
        grid_space(grid)
    assert message in str(err.value)


def test_samplers_by_name_and_grid_only_with_a_grid(split):
    assert isinstance(make_sampler("tpe", seed=0), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", seed=0), optuna.samplers.RandomSampler)
    with pytest.raises(ValueError, match="unknown sampler 'bayes'; valid: tpe, random, grid"):
        make_sampler("bayes", seed=0)
    study = optuna.create_study(direction="maximize")
    x, y, _, _ = split
    data = TuningData(x[:30], y[:30], x[:30], y[:30], classes=CLASSES)
    with pytest.raises(ValueError, match="sampler 'grid' needs a grid"):
        run_trials(study, data, search_space(), QUICK, sampler="grid")
    with pytest.raises(ValueError, match="sampler 'tpe' needs ranges"):
        run_trials(study, data, grid_space({"lr": [0.001]}), QUICK, sampler="tpe")
    assert study.trials == []


def test_ctrl_c_in_a_trial_prints_no_optuna_traceback():
    # `labelloop tune` says what an interruption keeps; Optuna printed a traceback above it.
    import io
    import logging

    import optuna

    from training.tuning import quiet_optuna

    printed = io.StringIO()
    terminal = logging.StreamHandler(printed)  # as Optuna's own handler on stderr
    logging.getLogger("optuna").addHandler(terminal)
    try:
        study = optuna.create_study()

        def interrupted(trial):
            raise KeyboardInterrupt

        with quiet_optuna(), pytest.raises(KeyboardInterrupt):
            study.optimize(interrupted, n_trials=1)
        assert "Traceback" not in printed.getvalue() and "failed" not in printed.getvalue()

        def broken(trial):
            raise ValueError("a real failure")

        with quiet_optuna(), pytest.raises(ValueError):
            study.optimize(broken, n_trials=1)
        assert "a real failure" in printed.getvalue()  # other failures still show
    finally:
        logging.getLogger("optuna").removeHandler(terminal)


def test_the_pruner_judges_a_trial_by_trials_on_its_own_labels_and_spares_the_baseline():
    # Once labels grew, every trial was pruned against the median of accuracies on the old,
    # smaller held-out set (all 1.0), the parameters in use too: tuning could adopt nothing.
    study = optuna.create_study(direction="maximize", pruner=make_pruner())

    def reporting(tag: str, accuracy: float, *, baseline: bool = False):
        def objective(trial):
            trial.set_user_attr("data", tag)
            if baseline:
                trial.set_user_attr("baseline", True)
            for step in range(1, 5):
                trial.report(accuracy, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return accuracy
        return objective

    with quiet_optuna():
        for _ in range(4):
            study.optimize(reporting("old", 1.0), n_trials=1)
        study.optimize(reporting("new", 0.94), n_trials=1)  # the first on the new labels
        assert study.trials[-1].state == TrialState.COMPLETE
        for _ in range(3):
            study.optimize(reporting("new", 0.95), n_trials=1)
        study.optimize(reporting("new", 0.90), n_trials=1)  # below the new labels' median
        assert study.trials[-1].state == TrialState.PRUNED
        study.optimize(reporting("new", 0.80, baseline=True), n_trials=1)
        assert study.trials[-1].state == TrialState.COMPLETE  # what a winner must beat
