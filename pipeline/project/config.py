"""The project config (``labelloop.toml``): parsed once into frozen, typed objects.

Every knob of a labelloop project lives here with a default. Relative paths are relative to the
folder holding the config file. Errors name the key, what is wrong and what is valid.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from labeling.box_scores import list_box_strategies
from labeling.strategies import list_strategies
from labeling.studio.limits import TITLE_MAX, TITLE_MIN
from labeling.studio.urls import url_secret_problem
from labeling.tasks.registry import DEFAULT_TASK, list_task_types
from pipeline.project.databases import (
    DatabaseUrls,
    not_a_url_problem,
    password_problem,
    url_password,
    with_password,
)
from training.names import (
    DETECTOR_NAMES,
    MODEL_NAMES,
    PRETRAINED_NAMES,
    SAMPLER_NAMES,
    looks_like_weights_name,
)
from training.params import TrainParams

if TYPE_CHECKING:
    from training.tuning import SearchSpace

CONFIG_NAME = "labelloop.toml"


# The model zoo and the tuning module load torch (and Optuna), seconds: names are checked
# against training.names, and the tuner is imported only for a search space or grid to check.
def _model_names() -> list[str]:
    return sorted(MODEL_NAMES + DETECTOR_NAMES)


def _tuning():
    import training.tuning

    return training.tuning

class ConfigError(ValueError):
    """The config file is missing or invalid; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSection(_Section):
    name: str = Field(min_length=1)
    classes: tuple[str, ...]
    # A folder, or an S3 prefix "s3://bucket/prefix" (endpoint and credentials: boto3's own
    # chain, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ~/.aws; never this file).
    images: Path | str
    # Each round first ingests what is new or changed in `images` (pipeline/round/ingest.py),
    # so that a scheduled `labelloop run` picks up images dropped in at any time.
    ingest_each_round: bool = True
    # The kind of labeling work (labeling.tasks): what a label is, the Label Studio config,
    # pre-annotations, answers, the model. Workspaces made before it existed are classification.
    task: str = DEFAULT_TASK

    @field_validator("images", mode="before")
    @classmethod
    def _images_folder_or_prefix(cls, value):
        if not isinstance(value, str | Path):  # images = 5 was a traceback from Path(5)
            raise ValueError(f"must be a folder (text) or an s3://BUCKET/PREFIX, got "
                             f"{type(value).__name__} {value!r}")
        text = str(value)
        if not text.startswith("s3://"):
            return Path(value)
        if not text[len("s3://"):].partition("/")[0]:
            raise ValueError(f"{text!r} names no bucket; write s3://BUCKET/PREFIX")
        return text.rstrip("/")

    @field_validator("task")
    @classmethod
    def _task_known(cls, value: str) -> str:
        if value not in list_task_types():
            raise ValueError(f"unknown task type {value!r}; valid: {', '.join(list_task_types())}")
        return value

    @field_validator("classes")
    @classmethod
    def _classes_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return validate_classes(value, minimum=1)

    @model_validator(mode="after")
    def _enough_classes(self) -> ProjectSection:
        # One class is a detection project's most common case ("find the people"); an image
        # classifier needs two to choose between.
        validate_classes(self.classes, minimum=1 if self.task == "detection" else 2)
        return self


def _no_password(section: str, *, database: bool = False):
    """A validator refusing a URL that holds a password, or (``database``) that is not a
    database URL (pipeline/project/databases.py)."""

    def check(cls, value: str) -> str:
        if problem := password_problem(value, section):
            raise ValueError(problem)
        if database and (problem := not_a_url_problem(value, section)):
            raise ValueError(problem)
        return value

    return check


class StoreSection(_Section):
    # Empty: a SQLite file in the workspace. Otherwise any SQLAlchemy URL, e.g.
    # postgresql+psycopg://labelloop@db.example/labels, without its password: that comes from
    # password_file (a file holding it alone) or LABELLOOP_STORE_PASSWORD.
    url: str = ""
    password_file: Path | None = None

    # A plain path is a SQLite file (Config.store_url), so only a password is checked.
    _url_has_no_password = field_validator("url")(classmethod(_no_password("store")))


class RegistrySection(_Section):
    # Empty: MLflow on a SQLite file in the workspace. Otherwise an MLflow tracking URI (a
    # database URL like [store] url, its password from password_file or
    # LABELLOOP_REGISTRY_PASSWORD; or a tracking server).
    tracking_uri: str = ""
    password_file: Path | None = None

    # Not only databases: an MLflow tracking server's http(s) URI, or a folder, work too.
    _uri_has_no_password = field_validator("tracking_uri")(
        classmethod(_no_password("registry")))


class StudioSection(_Section):
    # Empty: the embedded local server that `labelloop studio start` runs.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _url_has_no_password(cls, value: str) -> str:
        # It would be written in labelloop.toml and shown in every message naming the server.
        if url_password(value) is not None:
            raise ValueError("[studio] url holds a password; remove the user and password from "
                             "it: labelloop signs in to Label Studio with an API key ([studio] "
                             "api_key_file, or LABEL_STUDIO_API_KEY in the environment)")
        if value and (problem := url_secret_problem(value)):  # a user alone, a ?token=
            raise ValueError(f"[studio] url: {problem}")
        return value

    # A file holding the API key (legacy token or personal access token). Without it the key
    # comes from LABEL_STUDIO_API_KEY, or from the embedded server's token file.
    api_key_file: Path | None = None
    port: int = Field(default=8080, ge=1024, le=65535)
    # A server you run yourself that serves the images as local files: its
    # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT. Unset: the parent of [project] images (what the
    # embedded server uses).
    local_files_root: Path | None = None
    # The label-studio executable, in its own virtual environment (it pins many packages).
    # Unset: `label-studio` on PATH, else the .venv-studio that labelloop's set-up script made.
    executable: Path | None = None
    username: str = "admin@labelloop.local"
    project_title: str = ""
    timeout_s: float = Field(default=120.0, gt=0)
    # Annotator accounts the quickstart makes on the embedded server (ann1, ann2, ...); its
    # simulated crowd answers through them. 0: one simulated annotator, the admin.
    annotators: int = Field(default=0, ge=0, le=50)
    # Where `labelloop serve` (the model backend for Label Studio's "Connect model") listens
    # on 127.0.0.1, and so the URL `labelloop studio connect` registers.
    backend_port: int = Field(default=9090, ge=1024, le=65535)
    # Images in S3 reach Label Studio as presigned GET URLs, valid this long from the push
    # that made the task (S3 allows 7 days at most; a pending task older than that is
    # re-signed by the next round's push).
    s3_url_expiry_s: int = Field(default=7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    # The embedded server's own database. Empty: its SQLite file in the workspace. Otherwise
    # a PostgreSQL URL without its password (postgresql://labelstudio@db.example/studio):
    # that comes from database_password_file or LABELLOOP_STUDIO_DB_PASSWORD.
    database: str = ""
    database_password_file: Path | None = None

    # Not a URL at all: the PostgreSQL check below says what is wanted.
    _database_has_no_password = field_validator("database")(
        classmethod(_no_password("studio")))

    @field_validator("database")
    @classmethod
    def _database_is_postgres(cls, value: str) -> str:
        if value and not value.split("://", 1)[0].startswith("postgresql"):
            raise ValueError("[studio] database: Label Studio runs on PostgreSQL or its own "
                             "SQLite file (leave it empty); give a postgresql:// URL")
        return value


class TrainingSection(_Section):
    # Defaults are training.TrainParams' own, so there is one place that sets them.
    model: str = TrainParams.model
    # None: random init; "imagenet": torchvision's ImageNet weights from torch's hub cache
    # (scripts/setup_weights.py puts MobileNetV2's there offline); or a state-dict file.
    weights: str | None = None
    # finetune: the whole network on images. probe: the backbone frozen, a logistic-regression
    # head on its L2-normalised embeddings, cached in the workspace once per item and backbone
    # (training/probe.py; epochs, lr and weight_decay are fine-tuning's, the probe has none).
    mode: Literal["finetune", "probe"] = "finetune"
    # probe only: fine-tune instead once this many training labels exist (0: never).
    finetune_after: int = Field(default=0, ge=0)
    image_size: int | None = Field(default=None, ge=8, le=1024)
    epochs: int = Field(default=TrainParams.epochs, ge=1)
    batch_size: int = Field(default=TrainParams.batch_size, ge=2)
    lr: float = Field(default=TrainParams.lr, gt=0)
    weight_decay: float = Field(default=TrainParams.weight_decay, ge=0)
    augment: float = Field(default=TrainParams.augment, ge=0, le=1)
    val_fraction: float = Field(default=TrainParams.val_fraction, ge=0, lt=1)
    patience: int = Field(default=TrainParams.patience, ge=1)
    min_steps: int = Field(default=TrainParams.min_steps, ge=0)
    # Detection: each challenger starts from the champion's weights (same model, image size
    # and classes; pipeline/round/detection/start.py) instead of from ImageNet, so training
    # accumulates over rounds at one round's cost. On the mnist-detection canvases, 300 steps
    # on 304 images from a 237-image champion left 18.9% of the other images not right,
    # against 22.5% from ImageNet and 17.6% for 600 steps from ImageNet (one seed,
    # docs/benchmarks.md).
    # Promotion still judges it on held-out images.
    warm_start: bool = False
    seed: int = 0

    @field_validator("weights")
    @classmethod
    def _empty_weights_is_none(cls, value: str | None) -> str | None:
        return None if value is not None and not value.strip() else value

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        if value not in _model_names():
            raise ValueError(f"unknown model {value!r}; valid: {', '.join(_model_names())}")
        return value

    @model_validator(mode="after")
    def _weights_fit_model(self) -> TrainingSection:
        # "imagenet": the model's ImageNet weights, from torch's hub cache; a path: a file.
        pretrained = PRETRAINED_NAMES + DETECTOR_NAMES  # detectors: an ImageNet backbone
        if self.weights == "imagenet" and self.model not in pretrained:
            raise ValueError(f"weights = \"imagenet\" needs a model with ImageNet weights "
                             f"({', '.join(pretrained)}); {self.model!r} has none")
        return self

    def params(self, *, root: Path) -> TrainParams:
        """The training parameters, a relative weights file taken from ``root`` (the config's
        folder), as every other path in the config is. A missing file is found where a model
        is built (training says which file): commands that need no model still run."""
        values = self.model_dump(exclude={"finetune_after", "warm_start"})
        file = weights_file(self.weights)
        if file is not None:
            values["weights"] = str(root / file)
        return TrainParams(**values)


DETECTION_AUDIT_FRACTION = 0.3


def task_defaults(task: str | None) -> dict[str, dict[str, Any]]:
    """The keys whose default depends on the task, per section: empty for classification (the
    sections' own defaults), a detector's for detection. Config fills them in wherever a config
    leaves them out, so a hand-written detection config trains a detector as `init`'s would."""
    if task != "detection":
        return {}
    from training.detection.params import DetectParams  # plain dataclass: no torch

    d = DetectParams()
    return {
        "training": dict(model=d.model, weights=d.weights, epochs=d.epochs,
                         batch_size=d.batch_size, lr=d.lr, weight_decay=d.weight_decay,
                         augment=d.augment, min_steps=d.min_steps, warm_start=True),
        # 5% of accepted images not right: one wrong box spoils an image, so a per-image
        # target is looser than a per-label one at the same care. The audit share stays at
        # 0.3, where the detection loop was measured (the classification default, 0.4, was
        # not tried on boxes).
        "loop": dict(strategy="least_confident", target_precision=0.95, second_opinions=False,
                     audit_fraction=DETECTION_AUDIT_FRACTION),
    }


class LoopSection(_Section):
    # Precision that auto-accepted machine labels must meet, proven on random held-out human
    # labels with an upper confidence bound on the error at `confidence_level`.
    target_precision: float = Field(default=0.98, gt=0.5, lt=1)
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1)
    # pooled: one threshold; the bound holds for all accepted labels together (needs a few
    # hundred random human labels). per_class: a bound for each class alone (needs ~150-260
    # per class at 98%). See labeling/autoaccept.py.
    threshold_mode: Literal["pooled", "per_class"] = "pooled"
    # Fewest validation items of a class above its threshold; fewer: no auto-accept for it.
    min_validation_points: int = Field(default=10, ge=1)
    # per_class only: Bonferroni over classes, so the bound holds for all classes at once.
    split_error_budget: bool = True
    # label: every accepted machine label meets target_precision (a bound on the accepted
    # part). dataset: accept while a bound on the error of the whole delivered set (human
    # labels' residual error included) stays within dataset_error; this spends slack that a
    # per-label target wastes (labeling/dataset_accept.py).
    target: Literal["label", "dataset"] = "label"
    dataset_error: float = Field(default=0.02, gt=0, lt=0.5)
    # An upper bound on how often a person's label is wrong in the same way as the model's
    # (rho): the bound on machine labels is divided by 1 - rho, and the human labels' residual
    # error is bounded by it in the certificate. 0 assumes people are right, and the
    # certificate says so. Never an estimate subtracted from the error (see autolabel notes).
    # "measured": rho bounded on the blind-checked items (the double-checked ones when
    # references are not blind) and the human labels' error on the double-checked ones
    # (pipeline/round/reference.py), each with a quarter of the error budget.
    reference_error: float | Literal["measured"] = 0.0
    # An upper bound on how often a delivered human label is wrong (any way, not only as the
    # model errs): the certificate's and the dataset target's allowance for people. Unset:
    # reference_error's number, or the measured bound. People who err 5% at random repeat a
    # wrong model label about 0.5% of the time, so rho alone understates this (a review: a
    # certificate of 1.65% where 2.75% was honest).
    human_error: float | None = None
    # The share of the random held-out items that chooses the model (promotion, the fitted
    # temperature, tuning); the rest certifies it (the thresholds' bound). Split by a hash of
    # each item's content, so the two parts never share an item and the bound holds for the
    # model chosen (labeling/held_out.py). Set it before the first round: lowering it later
    # moves items that chose into the certifying part. 0: every held-out item does both, as
    # before 2026-12-06: the choice then lowers the bound's confidence (the README's "The
    # champion's selection").
    selection_share: float = Field(default=0.25, ge=0, lt=1)

    @field_validator("reference_error")
    @classmethod
    def _reference_error_range(cls, value):
        if value != "measured" and not 0 <= value < 0.5:
            raise ValueError(f"reference_error must be in [0, 0.5) or \"measured\", got {value}")
        return value

    @field_validator("human_error")
    @classmethod
    def _human_error_range(cls, value):
        if value is not None and not 0 <= value < 0.5:
            raise ValueError(f"human_error must be in [0, 0.5), got {value}")
        return value

    @property
    def people_error(self) -> float | str:
        """What bounds the delivered human labels' error: ``human_error``, else
        ``reference_error`` (a number, or "measured")."""
        return self.reference_error if self.human_error is None else self.human_error
    # Ask a second person about a held-out item whose first answer differs from the model, and
    # a third when those two differ (labeling/studio/opinions.py); a held-out reference that
    # goes against the model by one vote gets more, up to five (labeling/studio/settle.py).
    # Needs several annotators.
    second_opinions: bool = True
    # Held-out items picked this many rounds ago or more recently are left out of the
    # thresholds' validation sample for now: their first answers came in this round's sync,
    # and the second opinions asked where they differ from the model are not back yet. Counted
    # at once, each such item would be a disagreement (an unsettled reference counts against
    # the model); left out by the round that picked them, a rule blind to every answer, the
    # sample stays random, and the audit does the same (boxes too). 0 counts them at once.
    # "auto": 1 where a second person can answer (second_opinions on, and two or more
    # annotator accounts, [studio] annotators or made by `labelloop studio add-annotator`, or
    # a Label Studio of your own), else 0: one annotator's answers never change, and waiting
    # would only cost validation items.
    reference_wait_rounds: int | Literal["auto"] = "auto"

    @field_validator("reference_wait_rounds")
    @classmethod
    def _wait_not_negative(cls, value):
        if value != "auto" and value < 0:
            raise ValueError(f"reference_wait_rounds must be >= 0 or \"auto\", got {value}")
        return value
    # Held-out (random and audit) tasks go to people without the model's pre-annotation, so
    # that the references the thresholds are tested on cannot anchor on the model's answer:
    # anchoring is the main way people repeat a model's mistake (rho).
    blind_references: bool = True
    # Tasks whose model confidence is below this carry no pre-annotation either: a person
    # shown an uncertain guess may take it as it is (anchoring), and the uncertain items are
    # the ones people are sent. 0 shows every prediction. (scripts/bench_loop.py at 5% noise:
    # 31 of 38 wrong training labels were the wrong guess shown, from the anchoring account.)
    preannotate_min_confidence: float = Field(default=0.0, ge=0, le=1)
    # A random share of the items people answer, answered by two people whatever the first
    # said, shown the pre-annotation as usual: where the error of the delivered human labels
    # is measured (reference_error = "measured"; and rho, when references are not blind).
    double_check: float = Field(default=0.0, ge=0, le=1)
    # A random share of the items picked for training (the held-out ones are left out: the
    # model is rarely wrong on them, and only where it is wrong does a check count), answered
    # by two people and pushed without the pre-annotation: where rho of blind references is
    # measured (reference_error = "measured"; pipeline/round/blind.py). Until 2026-12-06 a
    # share of all items.
    blind_check: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _checks_fit(self) -> LoopSection:
        if self.double_check + self.blind_check > 1:
            raise ValueError(f"double_check + blind_check is at most 1 (they are disjoint "
                             f"shares of the items), got {self.double_check} + "
                             f"{self.blind_check}")
        if (self.double_check or self.blind_check) and not self.second_opinions:
            raise ValueError("double_check and blind_check need second_opinions = true: their "
                             "second person is asked as second opinions are")
        return self
    # Second opinions on the other human labels (training and delivered ones): up to this
    # share of batch_size per round, on the labels whose answer differs from the
    # out-of-sample pre-annotation, most suspect first (pipeline/round/review.py).
    review_share: float = Field(default=0.0, ge=0, le=1)
    strategy: str = "margin"

    @field_validator("strategy")
    @classmethod
    def _strategy_known(cls, value: str) -> str:
        known = sorted(set(list_strategies()) | set(list_box_strategies()))
        if value not in known:  # which of them fit the task: Config._fits_task
            raise ValueError(f"unknown strategy {value!r}; valid: {', '.join(known)}")
        return value

    # Items sent to people per round; `audit_fraction` of them are drawn at random (they
    # measure the real precision of auto-accepted labels and become evaluation data). When
    # fewer unlabeled items are left than the rest of the batch, the audits shrink with them
    # (pipeline/round/select.py: audit_count).
    # 0.4: more random held-out items certify a round or two sooner, at the cost of fewer chosen
    # training labels. scripts/bench_loop.py, perfect annotator, batch 100, seeds 0 / 1 / 2,
    # answers to label the pool as a share of it: target "dataset" 19.9 / 15.6 / 12.5% at 0.4
    # against 16.0 / 23.0 / 22.5% at 0.3; target "label" 21.5 / 16.6 / 12.8% against
    # 20.6 / 23.1 / 27.5% (docs/benchmarks.md, "the audit share"). Machine labels erred more
    # (at most 1.43% against 0.51%), within the 2% target; the bound held in every round.
    # (Target "dataset" figures from before its budget held the share wrong; since: 22.6 /
    # 15.6 / 16.7% at 0.4.)
    # A detection project's default stays 0.3 (task_defaults).
    batch_size: int = Field(default=100, ge=1)
    audit_fraction: float = Field(default=0.4, ge=0, le=1)
    # Cold start: the first batch, before any model; this share of it is held out for
    # evaluation, always drawn at random. The rest, the first training labels: random, or
    # "typical": one per cluster of the pretrained backbone's embeddings, its most typical
    # item (TypiClust, labeling/cold_start.py; needs [training] weights).
    initial_random: int = Field(default=100, ge=2)
    initial_holdout: float = Field(default=0.5, gt=0, lt=1)
    cold_start: Literal["random", "typical"] = "random"
    # Retrain only when at least this many new human labels arrived since the champion.
    min_new_labels: int = Field(default=50, ge=1)
    # Train on the accepted machine labels too. Off, and best left off: the held-out items never
    # train a model, so with this on the accepted pool items would be training items and the
    # validation items not; the accept step's bound assumes the two are alike (exchangeable),
    # and a model repeats the labels it trained on. Not yet fixed (README, "What breaks the bound").
    train_on_machine_labels: bool = False


class TuningSection(_Section):
    # `labelloop tune` and the loop's re-tuning (pipeline/tuning.py). sampler: tpe (Bayesian
    # optimisation), random, or grid (the combinations of [tuning.grid]).
    sampler: str = "tpe"
    # Trials per `labelloop tune` (grid: at most the combinations not yet tried).
    trials: int = Field(default=20, ge=1)
    # Start no new trial after this long: 30s, 30m, 2h; empty: no limit.
    timeout: str = ""
    # Architectures from the model zoo to try; empty: the [training] model only.
    models: tuple[str, ...] = ()
    # tpe and random: [low, high] per parameter (lr, weight_decay, epochs, batch_size, augment),
    # replacing the defaults in training.tuning.DEFAULT_RANGES; low = high fixes one.
    space: dict[str, Any] = Field(default_factory=dict)
    # grid: the values to try per parameter (those above, and model); the rest stay [training]'s.
    grid: dict[str, Any] = Field(default_factory=dict)
    # Re-tune at the end of every K-th round (0: never), and/or when a round detects drift.
    every_rounds: int = Field(default=0, ge=0)
    on_drift: bool = False
    # Where the Optuna study lives. Empty: a SQLite file in the workspace (optuna.db).
    # Otherwise a SQLAlchemy URL like [store] url, its password from password_file or
    # LABELLOOP_TUNING_PASSWORD.
    storage: str = ""
    password_file: Path | None = None

    # Optuna takes database URLs only: a plain path is refused here, not by Optuna mid-tune.
    _storage_has_no_password = field_validator("storage")(
        classmethod(_no_password("tuning", database=True)))

    @field_validator("sampler")
    @classmethod
    def _sampler_known(cls, value: str) -> str:
        samplers = sorted(SAMPLER_NAMES)
        if value not in samplers:
            raise ValueError(f"unknown sampler {value!r}; valid: {', '.join(samplers)}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_valid(cls, value: str) -> str:
        if value.strip():
            parse_interval(value)
        return value

    @field_validator("models")
    @classmethod
    def _models_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in _model_names()]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; valid: {', '.join(_model_names())}")
        return value

    @field_validator("space")
    @classmethod
    def _space_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:  # empty: the tuner's own default space
            _tuning().search_space(value)
        return value

    @field_validator("grid")
    @classmethod
    def _grid_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            _tuning().grid_space(value)
        return value

    @property
    def timeout_s(self) -> float | None:
        """``timeout`` in seconds; None for no limit."""
        return parse_interval(self.timeout) if self.timeout.strip() else None

    def search_space(self, sampler: str, training_model: str) -> SearchSpace:
        """The space ``sampler`` searches: ``grid`` for grid, else ``space`` over ``models``
        (default: ``training_model``). Raises ``ConfigError`` for grid without a grid."""
        if sampler == "grid":
            if not self.grid:
                raise ConfigError("sampler grid needs a grid: add [tuning.grid] to labelloop.toml "
                                  "with a list of values per parameter, e.g. lr = [0.001, 0.003]")
            return _tuning().grid_space(self.grid)
        return _tuning().search_space(self.space, models=self.models or (training_model,))


class ComputeSection(_Section):
    # Where a round's predict step runs: "local" (this process and torch's DataLoader
    # workers) or "ray" (Ray Data over an actor pool, each actor loading the champion once;
    # pip install "labelloop[ray]"). Same prediction function, same predictions file.
    engine: Literal["local", "ray"] = "local"
    # A running Ray cluster ("HOST:6379"; "auto" for the one `ray start` made here). Empty,
    # with engine = "ray": a private one-machine Ray started for the step and stopped after.
    address: str = ""
    actors: int = Field(2, ge=1)
    # Fractional, so that actors never take every CPU and starve Ray Data's read tasks (on a
    # two-core machine two whole-CPU actors leave the job waiting forever, with no error).
    cpus_per_actor: float = Field(0.5, gt=0)
    batch_size: int = Field(256, ge=1)
    # Each call to Ray, connecting included (the predict step is one; a probe's embedding of
    # the pool one per 16,384 images, each kept as it is done): past it the round stops with
    # an error and resumes at this step on the next run.
    timeout_s: float = Field(1800.0, gt=0)

    @model_validator(mode="after")
    def _address_has_a_port(self) -> ComputeSection:
        # "10.0.0.5" alone failed at the step with "invalid literal for int()". Checked only
        # where Ray is used: a leftover address must not stop a local project's config.
        value = self.address
        if self.engine != "ray" or value in ("", "auto") or value.startswith("ray://"):
            return self
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"address {value!r} is not HOST:PORT; give the head node's GCS "
                             "port (6379 unless `ray start --port` chose another; not the "
                             "dashboard's 8265), \"auto\", or a ray:// address")
        return self


class Config(_Section):
    project: ProjectSection
    store: StoreSection = StoreSection()
    registry: RegistrySection = RegistrySection()
    studio: StudioSection = StudioSection()
    training: TrainingSection = TrainingSection()
    loop: LoopSection = LoopSection()
    tuning: TuningSection = TuningSection()
    compute: ComputeSection = ComputeSection()
    workspace: Path = Path(".labelloop")
    # The folder of the config file; every relative path above is relative to it.
    root: Path = Path(".")

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data):
        # A detection project's defaults differ from a classification one's (task_defaults);
        # they fill every key its config leaves out, whether `init` wrote the file or a person
        # did. Sections come as dicts (a file) or as sections (code); a section's own keys win.
        if not isinstance(data, dict):
            return data
        project = data.get("project")
        task = project.get("task") if isinstance(project, dict) else getattr(project, "task", None)
        out = dict(data)
        for name, defaults in task_defaults(task).items():
            given = data.get(name, {})
            if isinstance(given, _Section):
                given = {k: getattr(given, k) for k in given.model_fields_set}
            if isinstance(given, dict):  # anything else: the section's validation names it
                out[name] = {**defaults, **given}
        return out

    @model_validator(mode="after")
    def _title_fits_label_studio(self) -> Config:
        # Found here, when the config is written or loaded, not a round later when Label
        # Studio refuses to create the project.
        if problem := title_problem(self.project.name, self.studio.project_title):
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _typical_needs_weights(self) -> Config:
        # Typical items of a random network's embeddings are no better than random ones.
        if self.loop.cold_start == "typical" and self.training.weights is None:
            raise ValueError('[loop] cold_start = "typical" picks from a pretrained '
                             'backbone\'s embeddings: set [training] weights (e.g. "imagenet" '
                             'with model = "mobilenet_v2")')
        return self

    @model_validator(mode="after")
    def _retuning_has_something_to_tune(self) -> Config:
        # Found here rather than each round: tuning searches fine-tuning's parameters, which
        # a probe head never uses (pipeline/tuning.py refuses such a project too).
        training, tuning = self.training, self.tuning
        if (training.mode == "probe" and not training.finetune_after
                and (tuning.every_rounds or tuning.on_drift)):
            raise ValueError('[tuning] every_rounds and on_drift re-tune fine-tuning\'s '
                             'parameters, and this project trains a probe head only '
                             '([training] mode = "probe", finetune_after = 0): set '
                             'finetune_after, or every_rounds = 0 and on_drift = false')
        return self

    @model_validator(mode="after")
    def _fits_task(self) -> Config:
        task = self.project.task
        detectors = set(DETECTOR_NAMES)
        if task == "detection":
            for problem in _detection_problems(self):
                raise ValueError(f"[project] task = \"detection\": {problem}")
        elif self.training.warm_start:
            raise ValueError("[training] warm_start is for detection projects so far; a "
                             f"{task} project trains each challenger from its start weights")
        elif self.training.model in detectors or any(m in detectors for m in self.tuning.models):
            raise ValueError(f"[training] model {self.training.model!r} is a detector; a "
                             f"{task} project needs one of {', '.join(MODEL_NAMES)}")
        elif self.loop.strategy not in list_strategies():
            raise ValueError(f"[loop] strategy {self.loop.strategy!r} is for boxes; valid for "
                             f"{task}: {', '.join(list_strategies())}")
        return self

    def path(self, p: Path) -> Path:
        """A config path made absolute against the config file's folder."""
        return p if p.is_absolute() else (self.root / p).resolve()

    @property
    def images_remote(self) -> bool:
        """Whether ``[project] images`` is an S3 prefix rather than a folder."""
        return isinstance(self.project.images, str)

    @property
    def images_location(self) -> Path | str:
        """What ingest reads: the image folder (absolute), or the ``s3://`` prefix."""
        return self.project.images if self.images_remote else self.images_dir

    @property
    def images_dir(self) -> Path:
        """The image folder, absolute. For images in S3: a folder in the workspace, which the
        embedded Label Studio is started with (it serves no S3 item) and where the images of
        hand-made tasks adopted into the pool are copied (``pipeline.round.adopt``)."""
        if self.images_remote:
            return self.workspace_dir / "local-images"
        return self.path(self.project.images)

    @property
    def workspace_dir(self) -> Path:
        return self.path(self.workspace)

    @property
    def store_url(self) -> str:
        url = self.store.url
        if url and "://" not in url:
            # A plain path is a SQLite file, relative to the config's folder like every other
            # relative path here (not to wherever the command runs).
            return f"sqlite:///{self.path(Path(url).expanduser())}"
        return url or f"sqlite:///{self.workspace_dir / 'labels.db'}"

    @property
    def registry_uri(self) -> str:
        return self.registry.tracking_uri or f"sqlite:///{self.workspace_dir / 'mlflow.db'}"

    @property
    def tuning_storage(self) -> str:
        return self.tuning.storage or f"sqlite:///{self.workspace_dir / 'optuna.db'}"

    def database_urls(self, env: Mapping[str, str]) -> DatabaseUrls:
        """The three stores' URLs with their passwords, from each section's ``password_file``
        or the environment (``env``, read at the entry point; pipeline/project/databases.py).
        Raises ``DatabaseError``."""
        def file(p: Path | None) -> Path | None:
            return None if p is None else self.path(p)

        return DatabaseUrls(
            store=with_password(self.store_url, "store", file(self.store.password_file), env),
            registry=with_password(self.registry_uri, "registry",
                                   file(self.registry.password_file), env),
            tuning=with_password(self.tuning_storage, "tuning", file(self.tuning.password_file),
                                 env),
            studio=with_password(self.studio.database, "studio",
                                 file(self.studio.database_password_file), env),
        )

    @property
    def studio_dir(self) -> Path:
        return self.workspace_dir / "studio"


def _detection_problems(cfg: Config) -> list[str]:
    """What a detection project's config asks for that boxes do not have (yet)."""
    loop, training = cfg.loop, cfg.training
    problems = []
    if training.model not in DETECTOR_NAMES:
        problems.append(f"[training] model must be a detector ({', '.join(DETECTOR_NAMES)}), "
                        f"not {training.model!r}")
    if training.mode != "finetune":
        problems.append('[training] mode must be "finetune" (no probe head for detectors)')
    if training.weights not in ("imagenet", None):
        problems.append('[training] weights must be "imagenet" or unset for a detector')
    if loop.strategy not in list_box_strategies():
        problems.append(f"[loop] strategy must be one of {', '.join(list_box_strategies())}, "
                        f"not {loop.strategy!r}")
    # blind_check > 0 already needs second_opinions (LoopSection._checks_fit).
    if loop.reference_error == "measured" and not (loop.blind_references and loop.blind_check):
        problems.append('[loop] reference_error = "measured" needs blind_references = true '
                        "and blind_check > 0 for boxes: the chance that people repeat the "
                        "model's wrong boxes is measured on blind checks only")
    if loop.target == "dataset":
        problems.append('[loop] target must be "label": the dataset-level target is built '
                        "for classes only")
    if loop.cold_start != "random":
        problems.append('[loop] cold_start must be "random" (typical picks need a '
                        "classification backbone)")
    if loop.review_share > 0:
        problems.append("[loop] review_share must be 0: reviews rank answers by class "
                        "probabilities")
    if cfg.compute.engine != "local":
        problems.append('[compute] engine must be "local": the Ray engine predicts class '
                        "probabilities")
    if cfg.tuning.every_rounds or cfg.tuning.on_drift:
        problems.append("[tuning] every_rounds and on_drift are for classification models")
    return problems


def weights_file(weights: str | None) -> Path | None:
    """``[training] weights`` as a file path, or None where it names weights ("imagenet", a
    torchvision weights name) or none."""
    if weights is None or weights == "imagenet" or looks_like_weights_name(weights):
        return None
    return Path(weights).expanduser()


def validate_classes(classes, *, minimum: int = 2) -> tuple[str, ...]:
    """At least ``minimum`` distinct, non-blank class names."""
    names = tuple(str(c).strip() for c in classes)
    if len(names) < minimum:
        raise ValueError(f"needs at least {'two classes' if minimum == 2 else 'one class'}, "
                         f"got {len(names)}")
    if any(not n for n in names):
        raise ValueError("class names must not be blank")
    # Compared composed (NFC): "café" typed on one system and on another are one name. Kept
    # as written: a project's labels and its Label Studio config hold that spelling.
    composed = [unicodedata.normalize("NFC", n) for n in names]
    duplicates = sorted({n for n, c in zip(names, composed, strict=True)
                         if composed.count(c) > 1})
    if duplicates:
        raise ValueError(f"duplicate class names: {', '.join(duplicates)}")
    for name in names:  # a newline or tab inside a name is a typo, never a class
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
            raise ValueError(f"class name {name!r} holds a control character (newline, tab)")
    return names


def load_config(path: str | Path) -> Config:
    """Read and validate ``labelloop.toml`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"no config at {path}; create one with `labelloop init`")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    raw.pop("root", None)
    try:
        return Config(**raw, root=path.parent.resolve())
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err)}") from None


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: the dotted key, then what is wrong."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)


def render_config(name: str, classes, images: Path | str, *, studio_url: str = "",
                  project_title: str = "", task: str = DEFAULT_TASK) -> str:
    """The text of a new ``labelloop.toml`` with every section's defaults spelled out (a
    detection project's: a detector, its training defaults, and what boxes support)."""
    cfg = Config(project=ProjectSection(name=name, classes=tuple(classes), images=images,
                                        task=task),
                 studio=StudioSection(url=studio_url, project_title=project_title))
    out = [f"workspace = {_toml(str(cfg.workspace))}", ""]
    for section in ("project", "store", "registry", "studio", "training", "loop", "tuning",
                    "compute"):
        out.append(f"[{section}]")
        for key, value in getattr(cfg, section).model_dump().items():
            if value is None:  # TOML has no null: named, so that every knob is in the file
                out.append(f"# {key}: unset by default")
            elif not isinstance(value, dict):  # tables: [tuning.grid]
                out.append(f"{key} = {_toml(value)}")
        out.append("")
    return "\n".join(out) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    # TOML's basic strings take no control character as it is (a newline ended the string).
    text = "".join(f"\\u{ord(ch):04x}" if ord(ch) < 32 or ord(ch) == 127 else ch
                   for ch in text)
    return f'"{text}"'


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_interval(text: str) -> float:
    """'90s', '10m', '2h' or plain seconds -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"bad interval {text!r}; use e.g. 30s, 10m or 2h")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:  # `run --every 0` retried an outage three times back to back
        raise ValueError(f"bad interval {text!r}: it must be longer than 0; use e.g. 30s")
    return seconds


def title_problem(name: str, project_title: str = "") -> str | None:
    """Why the Label Studio project title this config gives (``[studio] project_title``, else
    ``[project] name``) would be refused, or why the name would be as the model registry's
    model name (MLflow's rules), or None."""
    if problem := _model_name_problem(name):
        return problem
    title = project_title or name
    if TITLE_MIN <= len(title) <= TITLE_MAX:
        return None
    which = (f"[studio] project_title {title!r}" if project_title else
             f"the project name {title!r} (also the Label Studio project title)")
    return (f"{which} has {len(title)} characters; Label Studio project titles have "
            f"{TITLE_MIN} to {TITLE_MAX}: choose another --name, or set [studio] project_title")


def registry_safe_name(title: str) -> str:
    """A project name the model registry takes, made from a title it may not (a Label Studio
    project's, which often reads "Batch 2: cars"): '/' and ':' become '-', '"' becomes "'"
    where both quotes appear, and a title of dots alone becomes "project"."""
    name = re.sub(r"[/:]", "-", title)
    if "'" in name and '"' in name:
        name = name.replace('"', "'")
    return "project" if _model_name_problem(name) else name


def _model_name_problem(name: str) -> str | None:
    # The project name is the registry's model name too (pipeline/project/project.py):
    # MLflow refuses '/' and ':' there, and the registry's searches cannot quote both quotes.
    # Found at init and when the config loads, not when status first reads the champion.
    bad = [c for c in ("/", ":") if c in name]
    norm = posixpath.normpath(name)  # MLflow's path_not_unique, as it checks a model name
    if not bad and (norm != name or norm == "." or norm.startswith("..")):
        bad.append("a path of dots")
    if "'" in name and '"' in name:  # labelloop's registry searches cannot quote both
        bad.append("both ' and \"")
    if not bad:
        return None
    return (f"the project name {name!r} holds {' and '.join(bad)}, which the model registry "
            "refuses in a model name: choose another --name (or [project] name)")
