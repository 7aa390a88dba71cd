"""Search training hyperparameters with Optuna: which learning rate, weight decay, epochs, batch
size, augmentation strength and model score best on validation images.

Vocabulary:

- a *search space* (``SearchSpace``) gives each searched parameter a range ``(low, high)`` for the
  tpe and random samplers (lr, weight_decay and batch_size on a log scale), or, for grid search,
  the values to try; parameters it leaves out keep the base ``TrainParams`` values;
- a *trial* trains once (``train_arrays``) with the parameters its sampler suggests and scores
  the model's accuracy on the validation images, which it never trained on;
- *pruning*: training reports the accuracy on the validation images at every check (the
  ``on_check`` hook with ``check_on``); the median pruner stops a trial whose best accuracy so
  far is below the median of completed trials at the same check number;
- a *data tag* names the labels a trial saw. Scores are comparable only between trials of the
  same tag, so ``best_trial`` picks among those, and the base parameters are scored once per
  tag (the *baseline* trial) so that the best is at least as good as what it would replace.

One study may be searched by every sampler in turn, with ranges, grids and model lists that
change between calls, because Optuna fixes each parameter's kind for a study's life: numeric
parameters are always suggested as the same kind (float or int, log scale or not, ``NUMERIC``),
grid values included; the model is never an Optuna parameter (its choices could not change):
grid trials take it from their combination, tpe and random draw it uniformly from ``models``.

Grid search runs each combination of the grid once: combinations are queued one at a time
(``Study.enqueue_trial``, the combination in the trial's user attribute ``grid``) until every one
has a completed or pruned trial. A trial left running by a process that died is marked failed
when the study is next opened (``open_study``); grid search then runs its combination again.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from training.data import ArrayDataset, TransformConfig, load_arrays
from training.evaluate import evaluate
from training.labels import check_classes, check_label_idx, check_same_length
from training.models import list_models
from training.params import TrainParams
from training.predict import predict_arrays
from training.train import train_arrays, transform_for


@dataclass(frozen=True)
class _Numeric:
    integer: bool
    log: bool
    minimum: float  # smallest valid value (TrainParams' own rule)
    maximum: float = math.inf
    strict: bool = False  # the minimum itself is invalid


# The numeric parameters a study can search, with the rules TrainParams enforces.
NUMERIC = {
    "lr": _Numeric(integer=False, log=True, minimum=0.0, strict=True),
    "weight_decay": _Numeric(integer=False, log=True, minimum=0.0),
    "epochs": _Numeric(integer=True, log=False, minimum=1),
    "batch_size": _Numeric(integer=True, log=True, minimum=2),
    "augment": _Numeric(integer=False, log=False, minimum=0.0, maximum=1.0),
}
SEARCHABLE = (*NUMERIC, "model")
# Ranges for tpe and random where the config gives none; each holds TrainParams' defaults.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "lr": (1e-4, 3e-2),
    "weight_decay": (1e-6, 1e-2),
    "epochs": (5, 60),
    "batch_size": (16, 256),
    "augment": (0.0, 1.0),
}
# Below this many completed trials nothing is pruned; before this check number neither.
_PRUNE_AFTER_TRIALS = 3
_PRUNE_AFTER_CHECKS = 2
# Budgets here are tens of trials: let TPE model the results after a few random ones.
_TPE_STARTUP_TRIALS = 5
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SearchSpaceError(ValueError):
    """A search space or grid is invalid; the message names the parameter and what is valid."""


@dataclass(frozen=True)
class SearchSpace:
    """What a study searches. Build it with ``search_space`` or ``grid_space``, which validate.

    ``ranges``: parameter -> ``(low, high)`` and ``models``: the architectures to choose from,
    for tpe and random. ``grid``: parameter -> values, for grid search (``ranges`` and
    ``models`` are then empty; a grid may hold ``model``).
    """

    ranges: Mapping[str, tuple[float, float]]
    models: tuple[str, ...]
    grid: Mapping[str, tuple[Any, ...]] | None = None

    @property
    def is_grid(self) -> bool:
        return self.grid is not None

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid, in a fixed order (parameters sorted by name)."""
        if self.grid is None:
            raise ValueError("only a grid has combinations; build it with grid_space")
        names = sorted(self.grid)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.grid[n] for n in names))]

    def contains(self, params: TrainParams) -> bool:
        """Whether ``params`` lies in the ranges and models (a grid contains no such point)."""
        in_ranges = all(low <= getattr(params, k) <= high for k, (low, high) in self.ranges.items())
        return self.grid is None and in_ranges and params.model in self.models


def search_space(
    ranges: Mapping[str, Sequence[float]] | None = None,
    *,
    models: Sequence[str] = ("small_cnn",),
) -> SearchSpace:
    """The space tpe and random search: ``DEFAULT_RANGES`` with ``ranges`` (parameter ->
    ``[low, high]``) replacing theirs, and ``models`` from the zoo (``list_models()``).
    ``low == high`` fixes a parameter. Raises ``SearchSpaceError`` naming the parameter for an
    unknown name, a value that is not ``[low, high]``, a wrong type, ``low > high`` or a value
    outside what training accepts; and for an empty or unknown model list.
    """
    checked = dict(DEFAULT_RANGES)
    for name, value in (ranges or {}).items():
        if name not in NUMERIC:
            raise SearchSpaceError(_unknown(name, "search range", NUMERIC))
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
            raise SearchSpaceError(f"search range {name!r}: expected [low, high], got {value!r}")
        low, high = (_check_number(name, v, f"search range {name!r}") for v in value)
        if low > high:
            raise SearchSpaceError(f"search range {name!r}: low {low!r} > high {high!r}")
        if NUMERIC[name].log and low <= 0:
            raise SearchSpaceError(f"search range {name!r}: searched on a log scale, so low "
                                   f"must be > 0; got {low!r}")
        checked[name] = (low, high)
    return SearchSpace(ranges=checked, models=_check_models(models, "models"))


def grid_space(grid: Mapping[str, Sequence[Any]]) -> SearchSpace:
    """The space grid search covers: parameter -> values (``model`` takes zoo names). Raises
    ``SearchSpaceError`` naming the parameter for an unknown name, an empty grid or list, a
    repeated value, a wrong type or a value training does not accept.
    """
    if not grid:
        raise SearchSpaceError(f"the grid is empty; give a list of values for at least one of "
                               f"{', '.join(SEARCHABLE)}")
    checked: dict[str, tuple[Any, ...]] = {}
    for name, values in grid.items():
        where = f"grid parameter {name!r}"
        if name not in SEARCHABLE:
            raise SearchSpaceError(_unknown(name, "grid parameter", SEARCHABLE))
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise SearchSpaceError(f"{where}: expected a list of values, got {values!r}")
        if not values:
            raise SearchSpaceError(f"{where}: empty list; give at least one value")
        if name == "model":
            checked[name] = _check_models(values, where)
        else:
            checked[name] = tuple(_check_number(name, v, where) for v in values)
            if NUMERIC[name].log and min(checked[name]) <= 0:
                raise SearchSpaceError(f"{where}: searched on a log scale, so values must be "
                                       f"> 0; got {min(checked[name])!r}")
        if len(set(checked[name])) != len(checked[name]):
            raise SearchSpaceError(f"{where}: repeats a value in {list(values)}; each "
                                   f"combination runs once")
    return SearchSpace(ranges={}, models=(), grid=checked)


def _check_number(name: str, value: Any, where: str) -> float | int:
    rule = NUMERIC[name]
    ok_type = int if rule.integer else int | float
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "an integer" if rule.integer else "a number"
        raise SearchSpaceError(f"{where}: {value!r} is not {kind}")
    below = value <= rule.minimum if rule.strict else value < rule.minimum
    if below or value > rule.maximum or not math.isfinite(value):
        low = f"> {rule.minimum:g}" if rule.strict else f">= {rule.minimum:g}"
        high = f" and <= {rule.maximum:g}" if math.isfinite(rule.maximum) else ""
        raise SearchSpaceError(f"{where}: {value!r} is out of range; {name} must be {low}{high}")
    return value if rule.integer else float(value)


def _check_models(models: Sequence[str], where: str) -> tuple[str, ...]:
    models = tuple(models)
    if not models:
        raise SearchSpaceError(f"{where}: empty list; give at least one of "
                               f"{', '.join(list_models())}")
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise SearchSpaceError(f"{where}: unknown model {unknown[0]!r}; valid: "
                               f"{', '.join(list_models())}")
    return models


def _unknown(name: str, what: str, valid: Iterable[str]) -> str:
    return f"unknown {what} {name!r}; valid: {', '.join(valid)}"


# ---- samplers and pruner ----------------------------------------------------------------------
class _QueuedOnly(optuna.samplers.BaseSampler):
    """Grid search's sampler: every trial is queued with all its values fixed, so there is
    nothing to sample; being asked anyway is a bug, and says so."""

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        raise RuntimeError(f"grid search runs queued combinations only, but trial "
                           f"{trial.number} asked for {param_name!r}")


_SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=_TPE_STARTUP_TRIALS),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda seed: _QueuedOnly(),
}


def list_samplers() -> list[str]:
    """The sampler names ``make_sampler`` accepts."""
    return list(_SAMPLERS)


def make_sampler(name: str, *, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``; an unknown name raises ``ValueError`` listing the
    valid ones."""
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(list_samplers())}")
    return _SAMPLERS[name](seed)


def make_pruner() -> optuna.pruners.BasePruner:
    """The median pruner, silent for the first trials and checks (their numbers are noise),
    judging a trial against the trials on its own data tag only; the baseline is never pruned."""
    return SameDataPruner()


class SameDataPruner(optuna.pruners.BasePruner):
    """Optuna's median pruner over the trials on the same data tag. Study-wide, once a
    project's labels grew, every trial (the parameters in use too) was pruned against medians
    of accuracies on the old, smaller held-out set, and tuning could adopt nothing. The
    baseline (the parameters in use) runs to the end: it is what a winner must beat."""

    def __init__(self) -> None:
        self._median = optuna.pruners.MedianPruner(n_startup_trials=_PRUNE_AFTER_TRIALS,
                                                   n_warmup_steps=_PRUNE_AFTER_CHECKS)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if trial.user_attrs.get("baseline"):
            return False
        return self._median.prune(_TrialsOn(study, trial.user_attrs.get("data")), trial)


class _TrialsOn:
    """A study seen through the trials on one data tag: what the median pruner reads."""

    def __init__(self, study: optuna.Study, tag: str | None) -> None:
        self._study, self._tag = study, tag

    @property
    def direction(self):
        return self._study.direction

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states)
                if t.user_attrs.get("data") == self._tag]


# ---- data and objective -----------------------------------------------------------------------
class TuningData:
    """The images a study trains and scores on, decoded once per model input (channels, size)
    and shared by every trial.

    ``train`` and ``val`` are image files, or uint8 arrays ``[N, H, W]`` / ``[N, H, W, C]``;
    ``train_labels`` and ``val_labels`` are class indices into ``classes``. File reading uses
    ``num_workers`` processes and raises ``ImageError`` naming a file that cannot be read.
    """

    def __init__(
        self,
        train: Sequence[str | Path] | np.ndarray,
        train_labels: Sequence[int] | np.ndarray,
        val: Sequence[str | Path] | np.ndarray,
        val_labels: Sequence[int] | np.ndarray,
        *,
        classes: Sequence[str],
        num_workers: int = 0,
    ) -> None:
        self.classes = check_classes(classes)
        self.train_labels = check_label_idx(train_labels, len(self.classes))
        self.val_labels = check_label_idx(val_labels, len(self.classes))
        check_same_length(len(train), len(self.train_labels), "training images")
        check_same_length(len(val), len(self.val_labels), "validation images")
        if len(self.train_labels) == 0 or len(self.val_labels) == 0:
            raise ValueError("tuning needs training and validation images; got "
                             f"{len(self.train_labels)} and {len(self.val_labels)}")
        self._sources = (train, val)
        self._num_workers = num_workers
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def pixels(self, tconf: TransformConfig) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) images as uint8 ``[N, S, S, C]`` at ``tconf``'s size."""
        key = (tconf.channels, tconf.image_size)
        if key not in self._cache:
            self._cache[key] = tuple(self._decode(s, tconf) for s in self._sources)
        return self._cache[key]

    def _decode(self, source, tconf: TransformConfig) -> np.ndarray:
        if isinstance(source, np.ndarray):
            # [N, C, S, S] channels-last memory viewed back as [N, S, S, C]: no copy.
            return ArrayDataset(source, tconf).images.permute(0, 2, 3, 1).numpy()
        return load_arrays(source, tconf, num_workers=self._num_workers)


def apply_params(base: TrainParams, values: Mapping[str, Any]) -> TrainParams:
    """``base`` with the searched ``values``. A model other than ``base.model`` starts from
    random weights at its own default size: weights and image size set for one architecture do
    not fit another."""
    changes = dict(values)
    if changes.get("model", base.model) != base.model:
        changes.update(weights=None, image_size=None)
    return replace(base, **changes)


def suggest_values(trial: optuna.Trial, space: SearchSpace, *, seed: int = 0
                   ) -> dict[str, Any]:
    """The values ``trial`` trains with: its grid combination, or numbers its sampler suggests
    within ``space.ranges`` and a model drawn from ``space.models`` (seeded by ``seed`` and the
    trial number). A value queued in the trial's user attribute ``model`` is used as is."""
    if space.grid is not None:
        combination = trial.user_attrs.get("grid")
        if combination is None:
            raise RuntimeError(f"grid trial {trial.number} was not queued with a combination")
        for name, values in space.grid.items():
            if name in NUMERIC:  # the queued value is used; the range only fixes the kind
                _suggest(trial, name, min(values), max(values))
        return dict(combination)
    values = {name: _suggest(trial, name, low, high)
              for name, (low, high) in space.ranges.items()}
    model = trial.user_attrs.get("model")
    if model is None:
        rng = np.random.default_rng([seed, trial.number])
        model = space.models[int(rng.integers(len(space.models)))]
    values["model"] = model
    return values


def _suggest(trial: optuna.Trial, name: str, low: float, high: float) -> float | int:
    rule = NUMERIC[name]
    if rule.integer:
        return trial.suggest_int(name, int(low), int(high), log=rule.log)
    return trial.suggest_float(name, float(low), float(high), log=rule.log)


def make_objective(
    data: TuningData, space: SearchSpace, base: TrainParams, *, data_tag: str = ""
) -> Callable[[optuna.Trial], float]:
    """The function a study maximises: train with ``base`` overlaid with the trial's values
    (``suggest_values``), return the accuracy on ``data``'s validation images. Reports the
    accuracy on them at each check, for pruning. Records on the trial (user
    attributes): ``values`` (what it trained with), ``data`` (``data_tag``), ``train``
    (training metrics) and the validation ``macro_f1``."""

    def objective(trial: optuna.Trial) -> float:
        values = suggest_values(trial, space, seed=base.seed)
        trial.set_user_attr("values", values)
        trial.set_user_attr("data", data_tag)
        params = apply_params(base, values)
        train_x, val_x = data.pixels(transform_for(params))
        checks = 0

        def on_check(step: int, val_accuracy: float) -> bool:
            nonlocal checks
            checks += 1
            trial.report(val_accuracy, checks)
            return trial.should_prune()

        # Pruning judges by the images the trial is scored on: the training recipe may hold
        # nothing out of its labels (val_fraction 0, the default), and then has no other.
        model = train_arrays(train_x, data.train_labels, data.classes, params, on_check=on_check,
                             check_on=(val_x, data.val_labels))
        trial.set_user_attr("train", {k: v for k, v in model.metrics.items()
                                      if isinstance(v, int | float | str | bool)})
        if model.metrics["stopped_by_on_check"]:
            raise optuna.TrialPruned(f"validation accuracy below the median at check {checks}")
        report = evaluate(predict_arrays(model, val_x).probs, data.val_labels, data.classes)
        trial.set_user_attr("macro_f1", report.macro_f1)
        return report.accuracy

    return objective


# ---- studies ----------------------------------------------------------------------------------
@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's INFO lines (one per trial) while inside; callers print their own. Its
    warning with a traceback for a trial stopped by Ctrl-C goes too: the caller says what an
    interruption keeps."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # On the handlers: a logger's own filters do not see its children's records.
    handlers = logging.getLogger("optuna").handlers
    for handler in handlers:
        handler.addFilter(_not_interrupted)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_not_interrupted)
        optuna.logging.set_verbosity(level)


def _not_interrupted(record: logging.LogRecord) -> bool:
    """False for Optuna's two lines on a trial stopped by Ctrl-C."""
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
        return False
    return "KeyboardInterrupt" not in record.getMessage() and not (
        record.getMessage().endswith("failed with value None."))


def open_study(storage: str, name: str) -> optuna.Study:
    """Load the study ``name`` from ``storage`` (an SQLAlchemy URL such as
    ``sqlite:///path/optuna.db``), creating it if new; it maximises validation accuracy.

    Trials still marked running or queued are left over from a process that died: they are
    marked failed (user attribute ``interrupted``), and grid search queues their combinations
    again. So call this only where no other process runs the study
    (labelloop holds the workspace lock).
    """
    with quiet_optuna():
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    pruner=make_pruner(), load_if_exists=True)
    for trial in study.get_trials(deepcopy=False,
                                  states=(TrialState.RUNNING, TrialState.WAITING)):
        # Optuna has no public call to end another process's trial; its own stale-trial
        # handling (heartbeats) goes through the storage the same way.
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return study


def run_trials(
    study: optuna.Study,
    data: TuningData,
    space: SearchSpace,
    base: TrainParams,
    *,
    sampler: str = "tpe",
    n_trials: int | None = None,
    timeout_s: float | None = None,
    data_tag: str = "",
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> list[FrozenTrial]:
    """Run up to ``n_trials`` more trials of ``study`` (None: no limit; grid: until every
    combination is done); start none after ``timeout_s`` seconds. Returns the trials run.

    With tpe or random, the first trial scores ``base`` itself (the baseline) unless a trial on
    ``data_tag`` already did, or ``base`` lies outside ``space``. ``sampler`` must be ``"grid"``
    exactly when ``space`` is a grid. Each finished trial is passed to ``callbacks``. A trial
    that runs out of GPU memory fails and the study goes on; any other error stops it (the
    trial is recorded as failed).
    """
    # A new seed per call: a resumed study must not repeat the points it drew before.
    new_sampler = make_sampler(sampler, seed=base.seed + len(study.trials))
    if (sampler == "grid") != space.is_grid:
        need = "a grid (grid_space)" if sampler == "grid" else "ranges (search_space)"
        raise ValueError(f"sampler {sampler!r} needs {need}, got "
                         f"{'a grid' if space.is_grid else 'ranges'}")
    if n_trials is not None and n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    study.sampler = new_sampler
    objective = make_objective(data, space, base, data_tag=data_tag)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    ran: list[FrozenTrial] = []
    tried: set[tuple] = set()
    with quiet_optuna():
        while n_trials is None or len(ran) < n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                break
            before = len(study.get_trials(deepcopy=False))
            if space.is_grid:
                queued = _queue_next_combination(study, space, skip=tried)
                if queued is None:
                    break
                tried.add(queued)  # a combination that fails runs again next call, not now
            elif not ran and space.contains(base) and scored_trial(study, base, data_tag) is None:
                study.enqueue_trial({name: getattr(base, name) for name in space.ranges},
                                    user_attrs={"baseline": True, "model": base.model})
            study.optimize(objective, n_trials=1, catch=(torch.cuda.OutOfMemoryError,),
                           callbacks=list(callbacks))
            ran.extend(study.get_trials(deepcopy=False)[before:])
    return ran


def best_trial(study: optuna.Study, data_tag: str = "", *, exclude: Collection[int] = ()
               ) -> FrozenTrial | None:
    """The completed trial with the highest validation accuracy among those scored on
    ``data_tag``, leaving out trial numbers in ``exclude``; the earliest wins a tie. None if
    there is none."""
    scored = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.user_attrs.get("data") == data_tag and t.number not in exclude]
    return max(scored, key=lambda t: (t.value, -t.number), default=None)


def trial_values(trial: FrozenTrial) -> dict[str, Any]:
    """The searched values a trial trained with (its suggested parameters, model included)."""
    return dict(trial.user_attrs.get("values") or trial.params)


def scored_trial(study: optuna.Study, params: TrainParams, data_tag: str = ""
                 ) -> FrozenTrial | None:
    """The first completed trial on ``data_tag`` that trained with exactly ``params``, or
    None (a pruned one has no score: the parameters in use are then scored again)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("data") == data_tag and apply_params(params, trial_values(t)) == params:
            return t
    return None


def _queue_next_combination(study: optuna.Study, space: SearchSpace, *, skip: set[tuple]
                            ) -> tuple | None:
    """Queue the first combination that has no completed or pruned trial and is not in
    ``skip``; returns its key, or None when there is none left."""
    trials = study.get_trials(deepcopy=False, states=_FINISHED)
    done = {_combination_key(t.user_attrs["grid"]) for t in trials if "grid" in t.user_attrs}
    for combination in space.combinations():
        key = _combination_key(combination)
        if key not in done | skip:
            numeric = {k: v for k, v in combination.items() if k in NUMERIC}
            study.enqueue_trial(numeric, user_attrs={"grid": combination})
            return key
    return None


def _combination_key(values: Mapping[str, Any]) -> tuple:
    return tuple(sorted(values.items()))
